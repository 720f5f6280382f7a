from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentledger.infrastructure.transcoder import OrjsonTranscoder, _encode_extra

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


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(timezone.utc)))
def test_a_utc_datetime_is_written_as_its_own_isoformat(at):
    """The fast path for UTC (orjson's RFC 3339 text) writes exactly what ``isoformat`` does: the log's format."""
    expected = orjson.dumps({"at": {"_type_": "datetime_iso", "_data_": at.isoformat()}})
    assert OrjsonTranscoder().encode({"at": at}) == expected


@given(st.dictionaries(st.text(max_size=8), st.one_of(
    st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20), st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                                       timezones=st.just(timezone.utc))), max_size=6))
def test_a_flat_state_is_written_as_the_general_path_writes_it(state):
    """A dict of scalars and UTC datetimes (a heartbeat's state) is written by orjson without calling back into
    Python for each datetime: the same bytes as through the tagging callback, and it reads back the same."""
    general = orjson.dumps(state, default=_encode_extra, option=orjson.OPT_PASSTHROUGH_DATETIME)
    assert OrjsonTranscoder().encode(state) == general
    assert OrjsonTranscoder().decode(general) == state


ODD_OFFSET = timezone(timedelta(hours=5, minutes=30, seconds=7))


@pytest.mark.parametrize("at", [datetime(2026, 1, 1, 12, 30, 1, 5), datetime(2026, 1, 1, 12, 30, 1, 5, ODD_OFFSET)],
                         ids=["naive", "odd-offset"])
def test_other_datetimes_keep_isoformat(at):
    transcoder = OrjsonTranscoder()
    assert at.isoformat().encode() in transcoder.encode({"at": at})
    assert transcoder.decode(transcoder.encode({"at": at})) == {"at": at}
