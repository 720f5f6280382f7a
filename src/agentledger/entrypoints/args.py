"""argparse, the way every ``agentledger`` command wants it: one-line usage errors, typed values."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agentledger.domain.durations import InvalidDuration, parse_duration

#: How to write a DURATION, said once under the options of every command that takes one.
DURATION_FORMAT = ("DURATION is a number and a unit (ms, s, m, h, d), as 500ms, 30s, 1.5h, or several, as 1h30m; "
                   "a bare number is seconds; more than zero, at most 36500d.")
#: What an ID positional takes (every command resolves it the same way: projections.queries.resolve_session_id).
SESSION_HELP = "the session: its id, a unique prefix of its id, or its name"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus where to get help), exit 2; a command taking a
    DURATION says how to write one under its options."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.type is duration and DURATION_FORMAT not in (self.epilog or ""):
            self.epilog = f"{self.epilog} {DURATION_FORMAT}" if self.epilog else DURATION_FORMAT
        return action

    def error(self, message: str) -> None:  # type: ignore[override]
        from agentledger.entrypoints.render import escape

        message = _negative_value(_suggesting(message), self)
        sys.stderr.write(f"{self.prog}: error: {escape(message)} (see '{self.prog} --help')\n")
        raise SystemExit(2)


#: The command line being parsed (``remember``), to say which value an "expected one argument" was missing.
_given: list[str] = []


def remember(argv: list[str]) -> list[str]:
    _given[:] = argv
    return argv


def _negative_value(message: str, parser: argparse.ArgumentParser) -> str:
    """``--fuse-ttl -5s``: argparse takes ``-5s`` for an option and says "expected one argument"; say what it is,
    and what the option takes (a DURATION is more than zero; counts and the like may be zero)."""
    import re

    found = re.fullmatch(r"argument (--[\w-]+)(?:/[^:]*)?: expected one argument", message) or re.fullmatch(
        r"argument [^:]*/(--[\w-]+): expected one argument", message)
    if found is None:
        return message
    option = found.group(1)
    for before, value in zip(_given, _given[1:]):
        if before == option and re.match(r"-[\d.]", value):
            action = parser._option_string_actions.get(option)  # noqa: SLF001 - argparse's own table of options
            takes = "a duration > 0" if action is not None and action.type is duration else "a value >= 0"
            return f"argument {option}: {value!r} is negative; it takes {takes}"
    return message


def _suggesting(message: str) -> str:
    """argparse's "invalid choice: 'lst' (choose from …)" as "unknown command 'lst'; did you mean 'list'?"."""
    import difflib
    import re

    found = re.fullmatch(r"argument (\S+): invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if found is None:
        return message
    what, given, listed = found.groups()
    choices = re.findall(r"'([^']*)'", listed)
    close = difflib.get_close_matches(given, choices, n=2, cutoff=0.6)
    kind = "command" if what == "COMMAND" else "choice"
    hint = ("; did you mean " + " or ".join(f"'{c}'" for c in close) + "?") if close else (
        f" (one of: {', '.join(choices)})")
    return f"unknown {kind} '{given}'{hint}"


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except InvalidDuration as error:
        raise argparse.ArgumentTypeError(str(error)) from None


#: The longest session name (or group): a name is for people to type and read, and every table sizes a column
#: to the longest one it shows.
NAME_MAX = 200


def name(text: str) -> str:
    """A session's name or group: some text that is not only blanks (a name no command could be given back),
    at most :data:`NAME_MAX` characters."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"invalid name {text!r} (it needs a character that is not a blank)")
    if len(text) > NAME_MAX:
        raise argparse.ArgumentTypeError(f"a name of {len(text)} characters is too long (at most {NAME_MAX})")
    return text


def file_name(text: str) -> str:
    """A file to write: not empty (an empty name would be the current directory, or a default the user did not
    ask for)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("a file name is needed")
    return text


def label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"invalid label {text!r} (use KEY=VALUE)")
    return key, value


def variable_name(text: str) -> str:
    """An environment variable's name (``--unset-env``)."""
    import re

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise argparse.ArgumentTypeError(f"invalid variable name {text!r} (letters, digits and _)")
    return text


def share(text: str) -> float:
    """A fraction in (0, 1]: ``0.5`` or ``50%``."""
    cleaned = text.strip()
    try:
        value = float(cleaned[:-1]) / 100 if cleaned.endswith("%") else float(cleaned)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"invalid share {text!r} (a fraction in (0, 1], e.g. 0.5 or 50%)")
    return value


def count(text: str) -> int:
    return _whole_number(text, "count")


def count_or_all(text: str) -> int | str:
    """A count, or ``"all"``: no limit (where the default has one)."""
    if text.strip().lower() == "all":
        return "all"
    try:
        return _whole_number(text, "count")
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r} (a whole number >= 0, or 'all')") from None


def delivery_id(text: str) -> int:
    """A webhook delivery's number, as ``agentledger webhooks`` lists it."""
    value = _digits(text)
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a delivery id (the numbers 'agentledger webhooks' lists)")
    return value


#: Linux's largest process id on a 64-bit machine (``PID_MAX_LIMIT``, what ``pid_max`` can be raised to).
PID_MAX = 2**22


def pid(text: str) -> int:
    value = _digits(text)
    if value is None or not 0 < value <= PID_MAX:
        raise argparse.ArgumentTypeError(f"invalid PID {text!r} (a whole number from 1 to {PID_MAX})")
    return value


def log_position(text: str) -> int:
    return _whole_number(text, "log position")


#: The largest whole number a store holds (SQLite's and PostgreSQL's 64-bit integers); a larger count or position
#: means the same as this one: every row.
LARGEST = 2**63 - 1


def _whole_number(text: str, what: str) -> int:
    value = _digits(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"invalid {what} {text!r} (a whole number >= 0)")
    return min(value, LARGEST)


def _digits(text: str) -> int | None:
    """``text`` as a whole number if it is written in ASCII digits only: ``int`` also takes ``1_0``, ``+2``,
    `` 2`` and other scripts' digits, which a count or a position written by hand never means."""
    return int(text) if text.isascii() and text.isdigit() else None


def json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output (see docs/cli.md)")


def as_of_option(parser: argparse.ArgumentParser) -> None:
    """``--as-of WHEN``, worded once for every command that can answer from the past (``list``, ``status``)."""
    parser.add_argument("--as-of", metavar="WHEN", default=None,
                        help="answer from the log as it stood at WHEN: an ISO 8601 time (local time if it has no "
                             "zone), a time ago (-15m, -1h30m), or @POSITION, a log position; replayed into a "
                             "scratch copy (default: now, from the live read models)")
