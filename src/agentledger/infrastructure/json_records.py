"""Small JSON records this code writes itself beside the store, read back: a dict, or None.

The daemon's lock and status files, the exit spool, the home's store ids and
a lease's holder are each one JSON object. A record that is missing, empty,
cut short by a writer that died mid-write, or not an object reads as None,
never as an error: every reader takes None for "nothing recorded".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson


def json_object(data: bytes | str | None) -> dict[str, Any] | None:
    """``data`` parsed, if it is a JSON object; else None."""
    if data is None:
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in the file at ``path``; None if it cannot be read or holds none."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return json_object(data)
