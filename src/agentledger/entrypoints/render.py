"""Human output: aligned tables, relative times; and the JSON writer for ``--json``."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any

from agentledger.domain.durations import format_duration


def relative(epoch: float | None, now: float) -> str:
    """'12s ago', 'in 45s', or '-' for no time."""
    if epoch is None:
        return "-"
    delta = now - epoch
    if abs(delta) < 0.05:
        return "now"
    return f"{format_duration(abs(delta))} ago" if delta > 0 else f"in {format_duration(-delta)}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], out=None) -> None:
    out = out or sys.stdout
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    out.write("\n".join(lines) + "\n")


def key_values(pairs: Sequence[tuple[str, Any]], out=None) -> None:
    out = out or sys.stdout
    width = max(len(k) for k, _ in pairs)
    out.write("".join(f"{k.ljust(width)}  {'-' if v is None else v}\n" for k, v in pairs))


def write_json(obj: Any) -> None:
    import orjson

    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")


def write_json_lines(objs: Iterable[Any]) -> None:
    import orjson

    sys.stdout.buffer.write(b"".join(orjson.dumps(o) + b"\n" for o in objs))


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
