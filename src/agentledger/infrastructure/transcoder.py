"""An ``orjson`` transcoder for the event store.

It keeps the eventsourcing library's tagged format for the one non-JSON type
our events carry, ``datetime`` (``{"_type_": "datetime_iso", "_data_": ...}``),
so stored events stay readable by the library's own ``JSONTranscoder`` too.
Event payloads hold ids as hex strings, never ``UUID`` objects: orjson would
write those as plain strings and they would come back as ``str``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson
from eventsourcing.persistence import Transcoder

_DATETIME_TAG = "datetime_iso"


def _encode_extra(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return {"_type_": _DATETIME_TAG, "_data_": _isoformat(obj)}
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} in an event")


def _isoformat(moment: datetime) -> str:
    """``moment.isoformat()``; for a UTC ``datetime`` (every one our events carry) orjson's own RFC 3339 text,
    the same characters in a third of the time (``datetime.isoformat`` builds the offset through a
    ``timedelta`` and a format string: ~0.8 µs, two per heartbeat; ``tests/test_transcoder.py``)."""
    if type(moment) is datetime and moment.tzinfo is timezone.utc:
        return orjson.dumps(moment)[1:-1].decode()
    return moment.isoformat()


#: The types a flat state's values may have for :func:`_flat_state` (``bool`` is not an ``int`` to ``type()``).
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _flat_state(obj: Any) -> dict[str, Any] | None:
    """``obj`` with each UTC ``datetime`` in its tag, for orjson to write natively, if it is a dict of scalars and
    UTC datetimes (a heartbeat's state, most of the log); else None.

    orjson writes a UTC ``datetime`` as the text :func:`_isoformat` returns for it, so the bytes are the same as
    through ``_encode_extra``, without calling back into Python for each datetime: a heartbeat's state in 1.06
    instead of 1.37 µs (``docs/BENCHMARKS.md``). Anything else (a nested dict or list, which may hold datetimes
    that must be tagged too; another time zone) takes the general path.
    """
    if type(obj) is not dict:
        return None
    flat = {}
    for key, value in obj.items():
        kind = type(value)
        if kind is datetime:
            if value.tzinfo is not timezone.utc:
                return None
            value = {"_type_": _DATETIME_TAG, "_data_": value}
        elif kind not in _SCALARS:
            return None
        flat[key] = value
    return flat


def _decode_tags(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 2 and value.get("_type_") == _DATETIME_TAG and "_data_" in value:
            return datetime.fromisoformat(value["_data_"])
        return {k: _decode_tags(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_tags(v) for v in value]
    return value


class OrjsonTranscoder(Transcoder):
    """Encodes event state with orjson; datetimes round-trip with their timezone."""

    def encode(self, obj: Any) -> bytes:
        flat = _flat_state(obj)
        if flat is not None:
            return orjson.dumps(flat)
        return orjson.dumps(obj, default=_encode_extra, option=orjson.OPT_PASSTHROUGH_DATETIME)

    def decode(self, data: bytes) -> Any:
        return _decode_tags(orjson.loads(data))
