"""Reading a growing JSONL file from where the last read stopped.

Agents' transcripts only grow, and can reach hundreds of megabytes, so an
observer must never read one whole on every pass: it remembers a byte offset
(and the file's identity) in a small cursor and reads only what was appended.

- A partial last line (the agent is mid-write) is left for the next read: the
  offset stops after the last newline.
- A file that shrank or was replaced (another inode) is read again from its
  start (``reset`` in the result says so, so callers can drop running totals).
- A file first seen when already large is read from its last
  ``FIRST_READ_LIMIT`` bytes only, starting at a line boundary
  (``skipped`` says how many bytes were never read).
- One read takes at most ``READ_LIMIT`` bytes; the rest waits for the next.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import orjson

#: A file first seen larger than this is read from its last this-many bytes.
FIRST_READ_LIMIT = 256 * 1024
#: At most this many bytes per read; a faster writer is caught up over the next reads.
READ_LIMIT = 8 * 1024 * 1024


@dataclass
class TailResult:
    """The complete JSON lines read (undecodable ones dropped), and the new cursor."""

    records: list[Any]
    cursor: dict[str, int]
    bytes_read: int = 0
    reset: bool = False  # the file was truncated or replaced since the cursor
    skipped: int = 0  # bytes at the start of a large new file that were not read
    bad_lines: int = 0
    raw_lines: list[bytes] = field(default_factory=list)


def read_new_lines(path: str, cursor: dict[str, int] | None, *, first_read_limit: int = FIRST_READ_LIMIT,
                   read_limit: int = READ_LIMIT) -> TailResult:
    """Read the complete lines appended to ``path`` since ``cursor`` (None: never read)."""
    cursor = dict(cursor or {})
    try:
        handle = open(path, "rb")
    except OSError:
        return TailResult([], cursor)
    with handle:
        stat = os.fstat(handle.fileno())
        identity = (stat.st_dev, stat.st_ino)
        offset = cursor.get("offset", 0)
        reset = False
        skipped = 0
        if cursor and ((cursor.get("dev"), cursor.get("ino")) != identity or stat.st_size < offset):
            offset, reset = 0, True
        if not cursor and stat.st_size > first_read_limit:
            offset = skipped = stat.st_size - first_read_limit
        if offset >= stat.st_size:
            return TailResult([], {"offset": offset, "dev": identity[0], "ino": identity[1]}, reset=reset)
        handle.seek(offset)
        data = handle.read(min(stat.st_size - offset, read_limit))
    start = 0
    if skipped:  # we started mid-file: drop the (probably partial) line we landed in
        newline = data.find(b"\n")
        start = len(data) if newline < 0 else newline + 1
    end = data.rfind(b"\n") + 1  # only complete lines; a partial last line waits
    if end <= start:
        end = start
    lines = data[start:end].splitlines()
    records, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            bad += 1
    new_cursor = {"offset": offset + end, "dev": identity[0], "ino": identity[1]}
    return TailResult(records, new_cursor, bytes_read=len(data), reset=reset, skipped=skipped, bad_lines=bad,
                      raw_lines=lines)


#: How much of a transcript's end is read for its recent messages (``agentledger logs``).
TAIL_WINDOW = 2 * 1024 * 1024


def read_tail(path: str, window: int = TAIL_WINDOW) -> list[Any]:
    """The complete JSON lines in the last ``window`` bytes of ``path``: a one-off look, never the whole file."""
    return read_new_lines(path, None, first_read_limit=window, read_limit=window).records
