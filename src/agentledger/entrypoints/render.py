"""Human output: aligned tables, relative times; and the JSON writer for ``--json``.

Text from the log (names, prompts, notes, argv: whatever an agent or a user
gave) reaches a terminal only through :func:`escape`, which ``table``,
``key_values`` and ``shorten`` apply: an ESC sequence or a carriage return in
a session's name is shown as ``\\x1b`` or ``\\r``, never obeyed by the terminal.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from agentledger.domain.durations import format_duration

#: C0 and C1 control characters, DEL, the bidirectional overrides and isolates (which reorder what
#: follows them on screen), and lone surrogates (undecodable argv bytes, which stdout cannot encode).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape(text: str) -> str:
    """``text`` with every control character written as Python writes it in a repr (``\\x1b``, ``\\n``).

    Every character ``_UNSAFE`` matches is one ``str.isprintable`` refuses (categories Cc, Cf, Cs), so printable
    text, nearly all of it, is returned by one C-speed test instead of a regular expression's search.
    """
    return text if text.isprintable() else _UNSAFE.sub(_escaped, text)


#: As ``_UNSAFE``, less newline and tab: what a program's output may keep of its layout.
_UNSAFE_IN_OUTPUT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def escape_keeping_lines(text: str) -> str:
    """As :func:`escape`, but newlines and tabs are kept: for text shown with its layout (an agent's message)."""
    return _UNSAFE_IN_OUTPUT.sub(_escaped, text)


class OutputEscaper:
    """A process's captured output made safe for a terminal, fed in chunks (``logs --follow``).

    Lines and tabs are kept; every other control character (colour codes,
    cursor moves, title changes, a carriage return overwriting a line) is
    shown escaped. Bytes that are not UTF-8 are shown as U+FFFD. A character
    split between two chunks is decoded whole.
    """

    def __init__(self) -> None:
        import codecs

        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes, final: bool = False) -> bytes:
        text = self._decoder.decode(data, final)
        return _UNSAFE_IN_OUTPUT.sub(_escaped, text).encode()


def relative(epoch: float | None, now: float) -> str:
    """'12s ago', 'in 45s', or '-' for no time."""
    if epoch is None:
        return "-"
    delta = now - epoch
    if abs(delta) < 0.05:
        return "now"
    return f"{format_duration(abs(delta))} ago" if delta > 0 else f"in {format_duration(-delta)}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], out=None,
          flexible: Sequence[str] | None = None) -> None:
    """Aligned columns, fitted to the terminal's width (``COLUMNS``, else the terminal's own) by cutting the
    ``flexible`` columns (default: the last) with an ellipsis, never the others (ids, statuses); a pipe
    without ``COLUMNS`` gets every character (for scripts)."""
    out = out or sys.stdout
    cells = [list(headers), *([("-" if v is None else escape(str(v))) for v in row] for row in rows)]
    natural = [max(map(len, column)) for column in zip(*cells)]
    cuttable = {len(headers) - 1} if flexible is None else {i for i, h in enumerate(headers) if h in flexible}
    widths = _fitted(natural, headers, _terminal_width(out), cuttable)
    for i, width in enumerate(widths):
        if width < natural[i]:  # only a cut column's cells are looked at one by one
            for row in cells:
                row[i] = _cut(row[i], width)
    line = "  ".join(f"{{:<{width}}}" for width in widths).format  # 10,000 rows: one C call each
    out.write("\n".join(line(*row).rstrip() for row in cells) + "\n")


#: A column is never cut narrower than this (or its header).
MIN_COLUMN = 8


def terminal_width(out: Any = None) -> int | None:
    """The width to fit ``out``'s lines to: ``COLUMNS``, else the terminal's; None for a pipe (nothing is cut)."""
    return _terminal_width(out or sys.stdout)


def _terminal_width(out: Any) -> int | None:
    import os

    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if hasattr(out, "isatty") and out.isatty():
        import shutil

        return shutil.get_terminal_size().columns
    return None


def _fitted(widths: list[int], headers: Sequence[str], limit: int | None, cuttable: set[int]) -> list[int]:
    """``widths`` with the ``cuttable`` columns narrowed, widest first, until a row (with its two-space gaps)
    fits in ``limit``, or they are as narrow as they may be."""
    if limit is None:
        return widths
    widths = list(widths)
    excess = sum(widths) + 2 * (len(widths) - 1) - limit
    floors = [max(MIN_COLUMN, len(h)) for h in headers]
    while excess > 0:
        shrinkable = [i for i, w in enumerate(widths) if i in cuttable and w > floors[i]]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: (widths[i], i))
        others = sorted(widths[i] for i in shrinkable if i != widest)
        step = min(excess, widths[widest] - floors[widest], max(1, widths[widest] - (others[-1] if others else 0)))
        widths[widest] -= step
        excess -= step
    return widths


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def key_values(pairs: Sequence[tuple[str, Any]], out=None) -> None:
    out = out or sys.stdout
    width = max(len(k) for k, _ in pairs)
    out.write("".join(f"{k.ljust(width)}  {'-' if v is None else escape(str(v))}\n" for k, v in pairs))


def write_json(obj: Any) -> None:
    import orjson

    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")


#: Lines written at a time by the streaming writers: few writes, and never every row held at once.
CHUNK_LINES = 1000


def write_json_lines(objs: Iterable[Any]) -> None:
    """One JSON document per line, written as ``objs`` come, ``CHUNK_LINES`` at a time."""
    import orjson

    dumps, out = orjson.dumps, sys.stdout.buffer
    for chunk in _chunks(objs):
        out.write(b"".join(dumps(o, option=orjson.OPT_APPEND_NEWLINE) for o in chunk))


def write_byte_lines(lines: Iterable[bytes]) -> None:
    """Lines already encoded (each ending in a newline), written as they come, ``CHUNK_LINES`` at a time."""
    out = sys.stdout.buffer
    for chunk in _chunks(lines):
        out.writelines(chunk)  # into the buffer one by one: no joined copy of a thousand kilobyte lines


def write_lines(lines: Iterable[str]) -> None:
    """Text lines (each ending in a newline), written as they come, ``CHUNK_LINES`` at a time."""
    for chunk in _chunks(lines):
        sys.stdout.write("".join(chunk))


def _chunks(items: Iterable[Any]) -> Iterable[list[Any]]:
    from itertools import islice

    iterator = iter(items)
    while chunk := list(islice(iterator, CHUNK_LINES)):
        yield chunk


def shorten(text: str, width: int) -> str:
    text = escape(text)
    return text if len(text) <= width else text[: width - 1] + "…"


#: ``message_lines``' columns: an ISO time to the second, then the longest role ("assistant").
TIME_WIDTH, ROLE_WIDTH = 20, 9


def message_lines(messages: Iterable[Any]) -> Iterable[str]:
    """``TIME  ROLE  text`` per agent message (``at``, ``role``, ``text``); later lines of a text indented.

    So every line either starts a message (with its time) or continues one
    (with spaces): ``grep``, ``cut`` and a reader's eye all find the messages.
    Blank lines are dropped, tabs expanded, and everything else escaped.
    """
    from datetime import datetime, timezone

    indent = " " * (TIME_WIDTH + 2 + ROLE_WIDTH + 2)
    for message in messages:
        text = message.text.replace("\r\n", "\n").expandtabs(4)
        lines = [escape(line.rstrip()) for line in text.split("\n") if line.strip()] or [""]
        at = "-" if message.at is None else datetime.fromtimestamp(message.at, timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        yield f"{at:<{TIME_WIDTH}}  {escape(message.role):<{ROLE_WIDTH}}  {lines[0]}".rstrip()
        yield from (indent + line for line in lines[1:])


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``1 session``, ``2 sessions``, ``1 pass``, ``3 passes``: a count with its noun in the right number."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
