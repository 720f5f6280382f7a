"""What a session said, for ``logs`` and ``status``: its agent's own messages, else its captured output.

One place decides which source answers (an agent adapter's own storage
first, falling back to the captured stdout/stderr; a plain command has only
the latter), so that ``status`` shows the tail that ``logs -n N`` prints.
The last lines of a captured output are read from its end: an agent's log
can be hundreds of megabytes, and ``status`` wants ten lines of it.
"""

from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentledger.adapters.base import NativeMessage

#: How much of the end of a captured output is read at a time, looking for its last lines.
_CHUNK = 64 * 1024


def agent_messages(row: Any, limit: int | None) -> tuple[list[NativeMessage] | None, str | None]:
    """The agent's own last ``limit`` messages (default: ``adapters.DEFAULT_MESSAGES``), or (None, why not).

    None says: show the captured output instead. ``why not`` is None for a
    plain command, which has nothing but its output (nothing to explain).
    """
    from agentledger.adapters import registry

    if registry.for_session(row["adapter"]).binary is None:
        return None, None
    from agentledger.adapters import DEFAULT_MESSAGES, messages

    found, why_not = messages.native_messages(row, DEFAULT_MESSAGES if limit is None else limit)
    return (None, why_not) if why_not is not None else (found, None)


def message_records(found: list[NativeMessage]) -> list[dict[str, Any]]:
    """The ``--json`` records of agent messages."""
    from agentledger.adapters import messages

    return [messages.as_json(m) for m in found]


def output_record(line: bytes) -> dict[str, Any]:
    """A captured line as the same record as a message: role ``output``, no time."""
    return {"at": None, "role": "output", "text": line.decode("utf-8", "replace").rstrip("\r\n")}


def open_output(row: Any) -> IO[bytes]:
    """The session's captured output, opened for reading bytes; a one-line error if there is none."""
    from agentledger.application.errors import LedgerError

    path = row["log_path"]
    try:
        return open(path, "rb")
    except (OSError, TypeError):
        raise LedgerError(f"no output captured for session {row['id'][:12]} ({path})") from None


def last_lines(handle: IO[bytes], count: int) -> list[bytes]:
    """``list(deque(handle, maxlen=count))``, reading only the end of the file; leaves ``handle`` at its end.

    Lines keep their ``\\n``; a last line without one counts as a line. The
    end is where the file ended when this began: ``logs --follow`` reads on
    from there.
    """
    end = handle.seek(0, os.SEEK_END)
    if count <= 0:
        return []
    position, data = end, b""
    while position > 0 and data.count(b"\n") <= count:  # count + 1 newlines hold the last count lines whole
        start = max(0, position - _CHUNK)
        handle.seek(start)
        data = handle.read(position - start) + data
        position = start
    handle.seek(end)
    parts = data.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    return lines[-count:]
