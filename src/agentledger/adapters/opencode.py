"""opencode (https://opencode.ai): ``opencode run``, and its store under ``~/.local/share/opencode``.

Launch: ``opencode run --format json [--model PROVIDER/MODEL]`` with the
prompt on stdin (``run`` appends stdin to its message when stdin is not a
terminal, so no message argument is needed).

Storage, under ``$XDG_DATA_HOME/opencode`` (default ``~/.local/share/opencode``),
in one of two formats:

- opencode 1.x: one SQLite database, ``opencode.db`` (tables ``session``,
  ``message``, ``part``; see :mod:`agentledger.adapters.opencode_db`). When
  it exists it is the only place looked at: the session row carries running
  totals, so a pass is one short read-only query.
- older releases (the fallback when there is no ``opencode.db``): ``storage/``,
  one small JSON file per object, rewritten in place as it changes:

  - ``session/<projectID>/<sessionID>.json``: ``id``, ``directory`` (the cwd),
    ``title``, ``parentID`` (sub-agents' sessions), ``time.created``/``updated`` (ms);
  - ``message/<sessionID>/<messageID>.json``: ``role``; an assistant message has
    ``modelID``, ``providerID``, ``cost``, ``tokens.{input,output,reasoning,cache.{read,write}}``,
    ``time.created``/``completed`` (ms);
  - ``part/<messageID>/<partID>.json``: the content (text, tool calls); a facts
    pass only looks at the newest message's part directory, for its
    modification time; ``recent_messages`` reads the parts of the last few messages.

  A pass re-reads only message files whose modification time changed since
  the last pass (each is a few hundred bytes), never the parts.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentledger.adapters import opencode_db
from agentledger.adapters.base import (
    START_SLACK,
    Adapter,
    Cursor,
    Facts,
    LaunchPlan,
    LaunchRequest,
    NativeMessage,
    NativeRef,
    env_dir,
    has_flag,
    home,
    iso_epoch,
    read_json,
    said_in_output,
    whole,
)

log = logging.getLogger("agentledger.observer")


def data_dir() -> Path:
    return env_dir("XDG_DATA_HOME", home() / ".local" / "share") / "opencode"


def storage_dir() -> Path:
    """The legacy JSON tree (releases before 1.x)."""
    return data_dir() / "storage"


def databases() -> list[Path]:
    """opencode 1.x's databases that exist, where opencode itself would open one (its ``Database.path()``).

    ``OPENCODE_DB`` names it (``:memory:``: none on disk; a relative name is
    under the data directory). Otherwise releases of the ``latest``, ``beta``
    and ``prod`` channels (npm's) use ``opencode.db`` and other channels
    ``opencode-<channel>.db``, unless ``OPENCODE_DISABLE_CHANNEL_DB`` is set.
    The channel is compiled into the binary, so every channel's file is
    looked at: a session id is found in whichever holds it.
    """
    named = os.environ.get("OPENCODE_DB")
    if named:
        if named == ":memory:":
            return []
        path = Path(named) if os.path.isabs(named) else data_dir() / named
        return [path] if path.is_file() else []
    candidates = [data_dir() / "opencode.db"]
    if os.environ.get("OPENCODE_DISABLE_CHANNEL_DB") not in ("1", "true"):
        candidates += sorted(data_dir().glob("opencode-*.db"))
    return [path for path in candidates if path.is_file()]


def _in_database(ref: NativeRef) -> bool:
    return Path(ref.path).suffix == ".db"


_SAFE_ID = re.compile(r"[0-9A-Za-z_-]+")
#: The title opencode gives a session until its title call answers: a placeholder, not a title.
_PLACEHOLDER_TITLE = re.compile(r"^(New session|Child session) - \d{4}-\d\d-\d\dT")


class OpencodeAdapter(Adapter):
    name = "opencode"
    binary = "opencode"
    observes = "~/.local/share/opencode/opencode.db (or storage/ before 1.x): session title, model, tokens, " \
               "cost, last activity"

    def build_launch(self, request: LaunchRequest) -> LaunchPlan:
        argv = [self.agent_argv0(), "run", "--format", "json"]
        if request.model:
            argv += ["--model", request.model]
        return LaunchPlan(argv=argv, stdin_path=request.prompt_path)

    def resume_argv(self, native_session_id: str) -> list[str]:
        return [self.agent_argv0(), "run", "--session", native_session_id, "--format", "json"]

    def streams_native_id(self, argv: Sequence[str]) -> bool:
        return has_flag(argv, "--format", "json")

    def native_id_from_output(self, output_path: str) -> str | None:
        """``--format json``: every line (the first is ``step_start``, or ``error``) carries ``sessionID``."""
        return said_in_output(output_path, lambda r: r.get("sessionID"))

    def find_native_session(self, cwd: str, started_at: float, pid: int | None,
                            hint: str | None = None) -> NativeRef | None:
        """The hinted session, or the first top-level session in ``cwd`` created since the process started."""
        dbs = databases()
        for db in dbs:
            try:
                found = opencode_db.find_session(db, cwd, started_at - START_SLACK, hint)
            except sqlite3.Error as error:  # busy or another schema: try again at the next poll
                log.info("opencode adapter: %s: %s", db, error)
                continue
            if found is not None:
                return NativeRef(native_session_id=found, path=str(db))
        if dbs:
            return None  # opencode 1.x: the legacy tree is not looked at
        if hint:  # a known session, however old (resume): by its file name, in any project
            named = sorted((storage_dir() / "session").glob(f"*/{hint}.json")) if _SAFE_ID.fullmatch(hint) else []
            return NativeRef(native_session_id=hint, path=str(named[0])) if named else None
        best: tuple[float, str, str] | None = None
        try:
            projects = list(os.scandir(storage_dir() / "session"))
        except OSError:
            return None
        for project in projects:
            if not project.is_dir():
                continue
            try:
                entries = list(os.scandir(project.path))
            except OSError:
                continue
            for entry in entries:
                if not entry.name.endswith(".json"):
                    continue
                try:
                    if entry.stat().st_mtime < started_at - START_SLACK:
                        continue  # not touched since we started: an older session
                except OSError:
                    continue
                info = read_json(entry.path)
                if not isinstance(info, dict) or info.get("parentID") or info.get("directory") != cwd:
                    continue
                created = iso_epoch((info.get("time") or {}).get("created"))
                if created is None or created < started_at - START_SLACK or not info.get("id"):
                    continue
                if best is None or created < best[0]:
                    best = (created, info["id"], entry.path)
        return None if best is None else NativeRef(native_session_id=best[1], path=best[2])

    def read_facts(self, ref: NativeRef, cursor: Cursor) -> tuple[Facts, Cursor]:
        if _in_database(ref):  # the session row keeps the totals: nothing to remember between passes
            try:
                facts = opencode_db.session_facts(ref.path, ref.native_session_id, ref.run_since)
                if _PLACEHOLDER_TITLE.match(facts.get("title") or ""):
                    del facts["title"]
                return facts, cursor
            except sqlite3.Error as error:
                log.info("opencode adapter: no facts this pass: %s: %s", ref.path, error)
                return {}, cursor
        return self._legacy_facts(ref, cursor)

    def recent_messages(self, ref: NativeRef, limit: int) -> list[NativeMessage]:
        if _in_database(ref):
            try:
                return opencode_db.recent_messages(ref.path, ref.native_session_id, limit)
            except sqlite3.Error as error:
                log.info("opencode adapter: no messages: %s: %s", ref.path, error)
                return []
        return _legacy_messages(ref.native_session_id, limit)

    def _legacy_facts(self, ref: NativeRef, cursor: Cursor) -> tuple[Facts, Cursor]:
        cursor = {"messages": {}, **cursor}
        messages: dict[str, list[Any]] = dict(cursor["messages"])
        facts: Facts = {"native_session_id": ref.native_session_id}
        activity: list[float] = []
        try:
            session_mtime = os.stat(ref.path).st_mtime_ns
        except OSError:
            session_mtime = None
        if session_mtime is not None and session_mtime != cursor.get("session_mtime"):
            info = read_json(ref.path)
            if isinstance(info, dict):
                cursor["title"] = info.get("title")
                cursor["session_updated"] = iso_epoch((info.get("time") or {}).get("updated"))
                cursor["session_mtime"] = session_mtime
        message_dir = storage_dir() / "message" / ref.native_session_id
        try:
            entries = list(os.scandir(message_dir))
        except OSError:
            entries = []
        for entry in entries:
            if not entry.name.endswith(".json"):
                continue
            try:
                mtime = entry.stat().st_mtime_ns
            except OSError:
                continue
            known = messages.get(entry.name)
            if known is not None and known[0] == mtime:
                continue
            message = read_json(entry.path)
            if not isinstance(message, dict):
                continue  # half-written: read again next pass
            messages[entry.name] = [mtime, *_message_facts(message)]
        cursor["messages"] = messages
        conversation, run = [0, 0, 0.0], [0, 0, 0.0]  # tokens in, out, cost
        newest: list[Any] | None = None
        for values in messages.values():
            _, t_in, t_out, c, _, at, _ = values
            conversation = [conversation[0] + t_in, conversation[1] + t_out, conversation[2] + c]
            if ref.run_since is None or (at is not None and at >= ref.run_since):
                run = [run[0] + t_in, run[1] + t_out, run[2] + c]
            if at is not None:
                activity.append(at)
            if newest is None or (at or 0) >= (newest[5] or 0):
                newest = values
        if newest is not None:
            facts["model"] = next((v[4] for v in sorted(messages.values(), key=lambda v: v[5] or 0, reverse=True)
                                   if v[4]), None)
            try:  # parts being written to the newest message: activity before the message file changes
                activity.append(os.stat(storage_dir() / "part" / newest[6]).st_mtime)
            except OSError:
                pass
        if messages:
            facts.update(tokens_in=run[0], tokens_out=run[1], cost=round(run[2], 6),
                         conversation_tokens_in=conversation[0], conversation_tokens_out=conversation[1],
                         conversation_cost=round(conversation[2], 6))
        if cursor.get("title"):
            facts["title"] = cursor["title"]
        if cursor.get("session_updated"):
            activity.append(cursor["session_updated"])
        if activity:
            facts["last_activity_at"] = max(activity)
        return {k: v for k, v in facts.items() if v is not None}, cursor


def _legacy_messages(session_id: str, limit: int) -> list[NativeMessage]:
    """The last ``limit`` messages of a legacy session: its message files, and the parts of those shown."""
    if limit <= 0:
        return []
    try:
        entries = [e.path for e in os.scandir(storage_dir() / "message" / session_id) if e.name.endswith(".json")]
    except OSError:
        return []
    infos = [info for info in map(read_json, entries) if isinstance(info, dict) and info.get("id")]
    infos.sort(key=lambda info: (iso_epoch((info.get("time") or {}).get("created")) or 0, str(info["id"])))
    messages = []
    for info in reversed(infos):
        try:
            names = sorted(e.path for e in os.scandir(storage_dir() / "part" / str(info["id"]))
                           if e.name.endswith(".json"))
        except OSError:
            names = []
        text = opencode_db.message_text(info, [read_json(name) for name in names])
        if text:
            at = iso_epoch((info.get("time") or {}).get("created"))
            messages.append(NativeMessage(at, str(info.get("role") or "?"), text))
            if len(messages) == limit:
                break
    return messages[::-1]


def _message_facts(message: dict[str, Any]) -> tuple[int, int, float, str | None, float | None, str]:
    """(tokens in, tokens out, cost, model, time, message id) of one message file."""
    times = message.get("time") or {}
    at = iso_epoch(times.get("completed")) or iso_epoch(times.get("created"))
    if message.get("role") != "assistant":
        return 0, 0, 0.0, None, at, str(message.get("id", ""))
    tokens = message.get("tokens") or {}
    cache = tokens.get("cache") or {}
    tokens_in = whole(tokens.get("input")) + whole(cache.get("read")) + whole(cache.get("write"))
    tokens_out = whole(tokens.get("output")) + whole(tokens.get("reasoning"))
    model = message.get("modelID")
    if model and message.get("providerID"):
        model = f"{message['providerID']}/{model}"
    cost = message.get("cost")
    return tokens_in, tokens_out, float(cost) if isinstance(cost, (int, float)) else 0.0, model, at, str(
        message.get("id", ""))
