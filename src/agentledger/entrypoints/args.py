"""argparse, the way every ``agentledger`` command wants it: one-line usage errors, typed values."""

from __future__ import annotations

import argparse
import sys

from agentledger.domain.durations import InvalidDuration, parse_duration


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus where to get help), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from agentledger.entrypoints.render import escape

        sys.stderr.write(f"{self.prog}: error: {escape(_suggesting(message))} (see '{self.prog} --help')\n")
        raise SystemExit(2)


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


def pid(text: str) -> int:
    value = _whole_number(text, "PID")
    if value == 0:
        raise argparse.ArgumentTypeError(f"invalid PID {text!r} (a whole number > 0)")
    return value


def log_position(text: str) -> int:
    return _whole_number(text, "log position")


def _whole_number(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid {what} {text!r} (a whole number >= 0)")
    return value


def json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output (see docs/cli.md)")
