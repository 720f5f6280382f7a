from datetime import datetime, timedelta, timezone

import pytest

from agentledger.infrastructure.transcoder import OrjsonTranscoder

pytestmark = pytest.mark.unit


def test_round_trips_nested_aware_datetimes():
    transcoder = OrjsonTranscoder()
    at = datetime(2026, 3, 13, 5, 51, 20, 123456, tzinfo=timezone.utc)
    state = {"timestamp": at, "evidence": {"fuse": {"expires_at": at + timedelta(seconds=30)}, "seen": [at]},
             "argv": ["sh", "-c", "exit 7"], "exit_code": 7, "ttl": 0.5, "note": None}
    decoded = transcoder.decode(transcoder.encode(state))
    assert decoded == state
    assert decoded["timestamp"].tzinfo is not None


def test_stays_readable_by_the_librarys_json_transcoder():
    from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder

    library = JSONTranscoder()
    library.register(DatetimeAsISO())
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert library.decode(OrjsonTranscoder().encode({"at": at})) == {"at": at}


def test_refuses_types_it_cannot_restore():
    with pytest.raises(TypeError):
        OrjsonTranscoder().encode({"x": object()})
