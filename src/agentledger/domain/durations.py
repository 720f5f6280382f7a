"""Durations as people write them: ``500ms``, ``30s``, ``10m``, ``2h``, ``1h30m``.

A bare number means seconds. Used for TTLs, grace periods and timeouts, and to
print them back the same way.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

from agentledger.domain.errors import UsageError

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", re.ASCII)
_BARE = re.compile(r"\d+(?:\.\d+)?", re.ASCII)
#: The longest duration accepted (100 years): longer ones cannot be added to a date.
MAX_SECONDS = 36500 * 86400.0


class InvalidDuration(UsageError, ValueError):
    """The text is not a duration this tool understands."""


def parse_duration(text: str) -> float:
    """Return the number of seconds ``text`` stands for; must be positive."""
    cleaned = text.strip().lower()
    if _BARE.fullmatch(cleaned):
        seconds = float(cleaned)
    else:
        parts = list(_PART.finditer(cleaned))
        if not parts or "".join(p.group(0) for p in parts) != cleaned:
            raise InvalidDuration(
                f"invalid duration {text!r} (use e.g. 500ms, 30s, 10m, 2h, 1h30m)"
            )
        seconds = sum(float(p.group(1)) * _UNIT_SECONDS[p.group(2)] for p in parts)
    if seconds <= 0:
        raise InvalidDuration(f"invalid duration {text!r}: must be greater than zero")
    if not seconds <= MAX_SECONDS:  # also inf, from a number too long for a float
        raise InvalidDuration(f"invalid duration {text!r}: must be at most 36500d")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds compactly: 0.25 -> '250ms', 5400 -> '1h30m', 90061 -> '1d1h1m'."""
    if not math.isfinite(seconds):
        return str(seconds)  # 'inf', 'nan': never parsed, but never a crash either
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds * 1000 < 999.5:  # rounds to under 1000ms (and no round() of a huge float)
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        text = f"{seconds:.1f}".rstrip("0").rstrip(".")
        return f"{text}s"
    whole = int(round(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days or hours:  # seconds are noise at that scale
        secs = 0
    return (f"{days}d" if days else "") + (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") \
        + (f"{secs}s" if secs else "")


def format_clock(at: datetime) -> str:
    """Time of day to the millisecond, in ``at``'s zone (UTC here): enough to line events up by eye."""
    return at.isoformat(timespec="milliseconds")[11:23]
