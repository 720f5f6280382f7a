"""The adapter interface: build a launch, find the agent's own session, read facts from its storage.

An adapter is a small, stateless object. Everything it must remember between
two reads (byte offsets, what it already counted) lives in a *cursor*, a
JSON-able dict the caller keeps and hands back, so the supervisor owns the
state and an adapter stays a set of pure-ish functions over the file system.

Adapters read the agent's native storage under ``HOME`` (or the agent's own
variable, e.g. ``XDG_DATA_HOME``, ``CLAUDE_CONFIG_DIR``, ``CODEX_HOME``), looked
up at call time, so tests point ``HOME`` at a fixture tree.
"""

from __future__ import annotations

import os
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Facts = dict[str, Any]
Cursor = dict[str, Any]


@dataclass(frozen=True)
class LaunchRequest:
    """What the user asked for: a prompt for an agent, or a plain command (``argv``)."""

    session_id: str  # the ledger's session id, 32 hex digits
    cwd: str
    prompt_path: str | None = None  # the prompt (with attached files) already written to a 0600 file
    model: str | None = None
    name: str | None = None  # the session's name for people, for an agent that keeps a title
    argv: list[str] = field(default_factory=list)  # the plain command adapter's ARGV


@dataclass(frozen=True)
class LaunchPlan:
    """How to start the agent: ``argv``, extra environment, and the file to feed on stdin (or None)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stdin_path: str | None = None
    native_session_id: str | None = None  # known in advance when the agent lets us choose it


@dataclass(frozen=True)
class NativeRef:
    """Where an agent keeps one session: its id and the file (or directory) holding it."""

    native_session_id: str
    path: str
    output_path: str | None = None  # the session's captured stdout/stderr (stream formats carry facts too)
    #: When this run began (epoch seconds, the watcher's clock just before the spawn): what the native
    #: session records before it belongs to earlier runs of the conversation (``resume``).
    run_since: float | None = None


@dataclass(frozen=True)
class NativeMessage:
    """One message of the agent's conversation as its own storage has it (``agentledger logs``).

    ``at`` is epoch seconds (None when the format has no time), ``role`` the
    agent's word (``user``, ``assistant``), ``text`` the message's text parts
    joined, tool calls shown as ``[tool: NAME]``; never escaped here.
    """

    at: float | None
    role: str
    text: str


class Adapter(ABC):
    """One agent. Subclasses set ``name``, ``binary`` and ``observes`` and implement the four methods."""

    #: The name users type (``agentledger launch NAME``) and the log records (``Launched.adapter``).
    name: str = ""
    #: The executable looked up on PATH; None for the plain command adapter.
    binary: str | None = None
    #: What ``read_facts`` reads, in words, for ``agentledger adapters``.
    observes: str = ""

    @abstractmethod
    def build_launch(self, request: LaunchRequest) -> LaunchPlan:
        """The agent's non-interactive command line; the prompt never goes into argv."""

    def find_native_session(self, cwd: str, started_at: float, pid: int | None,
                            hint: str | None = None) -> NativeRef | None:
        """Where the agent keeps session ``hint``; without one, the first it began in ``cwd`` since ``started_at``.

        The second form is a guess: two agents started together in one
        directory can be told apart only by what each says (``native_id_from_output``).
        """
        return None

    def streams_native_id(self, argv: Sequence[str]) -> bool:
        """Whether the agent run as ``argv`` says its session id in its output (its stream format was asked for)."""
        return False

    def native_id_from_output(self, output_path: str) -> str | None:
        """The session id the agent said in this session's captured output; None while it has not (yet)."""
        return None

    def read_facts(self, ref: NativeRef, cursor: Cursor) -> tuple[Facts, Cursor]:
        """Facts read from what was appended since ``cursor``; the facts are the current values, not deltas."""
        return {}, cursor

    def recent_messages(self, ref: NativeRef, limit: int) -> list[NativeMessage]:
        """The last ``limit`` messages of the native session, oldest first; [] when it cannot be read.

        Reads only the end of the agent's storage (a transcript's tail, the
        newest rows), so it is cheap on a session of any size.
        """
        return []

    def resume_argv(self, native_session_id: str) -> list[str]:
        """A command continuing the native session, the new message to be given on its stdin."""
        raise NotImplementedError(f"the {self.name} adapter cannot resume a session")

    def exit_summary(self, output_path: str | None, exit_code: int | None) -> str | None:
        """One line saying why the agent failed, from its captured output (see :func:`failure_note`).

        Asked for every exit: an agent whose stream reports a failed answer
        while it exits 0 (pi in json mode) says so here; by default only a
        non-zero exit code has a note.
        """
        return failure_note(output_path) if output_path and exit_code else None

    # -- shared ----------------------------------------------------------------

    def which(self) -> str | None:
        """The binary's path on PATH, or None."""
        return shutil.which(self.binary) if self.binary else None

    def agent_argv0(self) -> str:
        """The binary to run: its full path when found (so the log shows which one), else its name."""
        assert self.binary is not None
        return self.which() or self.binary


#: A native session counts as the process's if it began at most this long before the process did (clock skew).
START_SLACK = 2.0


def first_begun(directories: Iterable[Path], started_at: float,
                identify: Callable[[Any, str], tuple[float | None, str | None] | None],
                prefix: str = "") -> NativeRef | None:
    """The session file begun first at or after ``started_at`` (``START_SLACK`` allowed) in ``directories``.

    The storage guess (``find_native_session`` without a hint) for agents that
    keep one JSONL file per session: ``identify(first line's JSON, path)``
    gives ``(begun at, session id)`` if the file is a session of the wanted
    directory, else None. Files not modified since the start are not opened.
    """
    best: tuple[float, str, str] | None = None
    for directory in directories:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            if not (entry.name.startswith(prefix) and entry.name.endswith(".jsonl")):
                continue
            try:
                if entry.stat().st_mtime < started_at - START_SLACK:
                    continue  # not touched since the process started: an older session
            except OSError:
                continue
            found = identify(first_line(entry.path), entry.path)
            if found is None or found[0] is None or not found[1] or found[0] < started_at - START_SLACK:
                continue
            if best is None or found[0] < best[0]:
                best = (found[0], str(found[1]), entry.path)
    return None if best is None else NativeRef(best[1], best[2])


def whole(value: Any) -> int:
    """A count read from an agent's JSON (tokens): a number as an int, anything else (null, text, bool) 0."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def home() -> Path:
    """The user's home as the environment says now (tests set HOME)."""
    return Path(os.environ.get("HOME") or os.path.expanduser("~"))


def env_dir(variable: str, default: Path) -> Path:
    value = os.environ.get(variable)
    return Path(value) if value else default


def iso_epoch(value: Any) -> float | None:
    """An ISO 8601 time (``...Z`` too) or epoch milliseconds, as epoch seconds; None if neither."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value / 1000.0 if value > 1e11 else float(value)
    if isinstance(value, str) and value:
        from datetime import datetime, timezone

        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    return None


def read_json(path: Path | str) -> Any:
    """A small JSON file's value, or None if it is missing, half-written or not JSON."""
    import orjson

    try:
        with open(path, "rb") as handle:
            return orjson.loads(handle.read())
    except (OSError, ValueError):
        return None


def first_line(path: Path | str, limit: int = 1024 * 1024) -> Any:
    """The JSON value on a file's first line (read up to ``limit`` bytes), or None."""
    import orjson

    try:
        with open(path, "rb") as handle:
            line = handle.readline(limit)
    except OSError:
        return None
    try:
        return orjson.loads(line)
    except ValueError:
        return None


#: How much of the captured output's start is searched for the agent's own session id.
OUTPUT_HEAD = 256 * 1024


def said_in_output(path: str, pick: Callable[[dict[str, Any]], Any]) -> str | None:
    """The first non-empty ``pick(record)`` over the JSON object lines at the start of a captured output.

    Lines that are not JSON objects (the agent's stderr shares the file) are
    skipped; a partial last line is left for the next look.
    """
    import orjson

    try:
        with open(path, "rb") as handle:
            head = handle.read(OUTPUT_HEAD)
    except OSError:
        return None
    for line in head[: head.rfind(b"\n") + 1].splitlines():
        if not line.startswith(b"{"):
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        value = pick(record) if isinstance(record, dict) else None
        if isinstance(value, str) and value:
            return value
    return None


def has_flag(argv: Sequence[str], flag: str, value: str | None = None) -> bool:
    """Whether ``argv`` has ``flag`` (followed by ``value``, or as ``flag=value``, when given)."""
    argv = list(argv)
    for index, arg in enumerate(argv):
        if value is None and arg == flag:
            return True
        if value is not None and (arg == f"{flag}={value}" or (arg == flag and argv[index + 1:index + 2] == [value])):
            return True
    return False


# -- exit summaries --------------------------------------------------------------

#: How much of the end of the captured output an exit summary looks at.
SUMMARY_WINDOW = 64 * 1024
SUMMARY_WIDTH = 300
_ERRORISH = re.compile(
    r"error|fatal|fail|unauthori[sz]ed|forbidden|denied|invalid api key|api key|not logged in|log ?in|"
    r"authenticat|credential|expired|exception|traceback|panic|quota|rate limit|refused",
    re.IGNORECASE,
)


def failure_note(path: str | None) -> str | None:
    """The agent's final word on why it failed, from the last 64 KB of its captured output ``path``.

    Agents retry before they give up, and print each attempt ("Reconnecting...
    1/5", ``api_retry`` events with an error code) before the message that
    ends the run. So the *last* report wins, in this order: a final report in
    a stream format (``type: "result"`` with ``is_error``, ``turn.failed``),
    then any other JSON error report that is not a retry notice, then the last
    plain line that looks like an error, then the last line. JSON lines are
    reduced to their human text (:func:`_readable`).
    """
    data = output_end(path) if path else None
    if data is None:
        return None
    finals, reports, errorish, last = [], [], [], None
    for raw in data.decode("utf-8", "replace").splitlines():
        kind, text = _readable(raw)
        if not text:
            continue
        last = text
        if kind == "final":
            finals.append(text)
        elif kind == "report":
            reports.append(text)
        elif kind == "text" and _ERRORISH.search(text):
            errorish.append(text)
    chosen = next((found[-1] for found in (finals, reports, errorish) if found), last)
    return None if chosen is None else clip(chosen)


def output_end(path: str) -> bytes | None:
    """The complete lines among the last ``SUMMARY_WINDOW`` bytes of a captured output; None if unreadable."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - SUMMARY_WINDOW))
            data = handle.read()
    except OSError:
        return None
    return data.split(b"\n", 1)[-1] if size > SUMMARY_WINDOW else data  # a first line cut in two is dropped


def clip(text: str) -> str:
    """A note at most ``SUMMARY_WIDTH`` characters long."""
    return text if len(text) <= SUMMARY_WIDTH else text[: SUMMARY_WIDTH - 1] + "…"


def _readable(line: str) -> tuple[str, str]:
    """(kind, text) of one output line: ``final``/``report``/``retry`` for a JSON error report, ``event`` for
    any other JSON stream line (no text), ``text`` for a plain line (stripped)."""
    text = line.strip()
    if not text.startswith("{"):
        return "text", text
    try:
        import orjson

        value = orjson.loads(text)
    except ValueError:
        return "text", text
    if not isinstance(value, dict):
        return "text", text
    failed = value.get("is_error") is True or value.get("type") in ("error", "turn.failed") or bool(value.get("error"))
    if not failed:
        return "event", ""  # a stream event, not an error report
    if value.get("subtype") == "api_retry":
        kind = "retry"  # Claude Code's notice that it will try again: not its last word
    elif value.get("type") in ("result", "turn.failed"):
        kind = "final"
    else:
        kind = "report"
    # Human text before codes: Claude Code's failed assistant line has ``error: "authentication_failed"``
    # next to the text a person should read ("Not logged in · Please run /login") in its message content.
    for key in ("result", "message", "error", "msg"):
        candidate = _message_text(value.get(key))
        if candidate:
            return kind, candidate.splitlines()[0]
    return kind, text


def _message_text(value: Any) -> str:
    """The text of an error field: a string, a dict's ``message``/``data.message``, or ``content``'s text parts."""
    if isinstance(value, dict):
        data = value.get("data")
        content = value.get("content")
        texts = [part.get("text") for part in content if isinstance(part, dict) and part.get("type") == "text"] \
            if isinstance(content, list) else [content]
        for candidate in (value.get("message"), data.get("message") if isinstance(data, dict) else None, *texts):
            found = _message_text(candidate)
            if found:
                return found
        return ""
    return value.strip() if isinstance(value, str) else ""
