"""Watching one running session's native storage on behalf of whoever watches the session.

The supervisor calls :meth:`Observer.poll` once per heartbeat interval (and
once more, ``final``, after the exit); the daemon does the same for adopted
sessions, which have no supervisor. It settles which native session is this
session's (once), then reads only what was appended since the last poll, and
says which facts are new and whether the agent did anything since the last
look (fresh activity counts as a heartbeat). Errors reading a foreign format
are logged and skipped: observing is best effort and never affects the
session's lifecycle.

Which native session is ours, best source first (recorded as
``native_id_source``, a :class:`NativeIdSource`):

1. the id the launch chose and gave the agent (``pinned``), or the one a
   ``resume`` continues (``resumed``);
2. the id the agent says in this session's own output stream (``stream``):
   two agents started together in one directory each say their own;
3. only when the stream cannot say it (the agent was not asked for its
   stream format, or it ended without saying it): the first native session
   begun in the directory since the process started (``storage``).

While the stream is expected to say it, nothing is guessed: a session whose
agent has not spoken yet simply has no native id yet.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from agentledger.adapters.base import Adapter, Cursor, NativeRef
from agentledger.domain.vocabulary import NativeIdSource

log = logging.getLogger("agentledger.observer")


@dataclass
class Observation:
    """Facts as the log stores them (``last_activity_at`` a datetime), and whether there was fresh activity."""

    facts: dict[str, Any]
    fresh_activity: bool


class Observer:
    def __init__(self, adapter: Adapter, *, cwd: str, started_at: float, pid: int | None,
                 hint: str | None = None, hint_source: NativeIdSource = NativeIdSource.PINNED,
                 output_path: str | None = None, argv: Sequence[str] = (),
                 run_started_at: float | None = None) -> None:
        self.adapter = adapter
        self.cwd = cwd
        self.started_at = started_at  # the process's start time (storage matching allows for its imprecision)
        self.run_started_at = started_at if run_started_at is None else run_started_at
        self.pid = pid
        self.hint = hint
        self.hint_source = hint_source
        self.output_path = output_path
        self.stream_expected = output_path is not None and adapter.streams_native_id(argv)
        self.stream_read = False  # the stream has said the id (and will not say another)
        self.native_id: str | None = None
        self.source: NativeIdSource | None = None
        self.ref: NativeRef | None = None
        self.cursor: Cursor = {}
        self.last_activity: float | None = None

    def poll(self, *, final: bool = False) -> Observation:
        """What is new since the last poll; ``final`` once the process has ended (the stream has said all)."""
        try:
            return self._poll(final)
        except Exception as error:  # a format we misread must not take the watcher down
            log.warning("%s adapter: reading native storage failed: %s: %s", self.adapter.name,
                        type(error).__name__, error)
            return Observation({}, False)

    def _poll(self, final: bool) -> Observation:
        self._identify(final)
        if self.native_id is None:
            return Observation({}, False)
        identity = {"native_session_id": self.native_id, "native_id_source": self.source.value if self.source else None}
        if self.ref is None:
            return Observation(identity, False)
        facts, self.cursor = self.adapter.read_facts(self.ref, self.cursor)
        facts.update(identity)
        activity = facts.get("last_activity_at")
        fresh = activity is not None and activity >= self.started_at - 2.0 and (
            self.last_activity is None or activity > self.last_activity)
        if activity is not None:
            self.last_activity = max(activity, self.last_activity or activity)
            facts["last_activity_at"] = datetime.fromtimestamp(activity, timezone.utc)
        return Observation(facts, fresh)

    def _identify(self, final: bool) -> None:
        """Settle the native id, best source first (module docstring), then find where it is stored."""
        if self.native_id is None and self.hint and self.hint_source is not NativeIdSource.RESUMED:
            self._settle(self.hint, self.hint_source)  # pinned, or found by whoever watched before: it stands
        if self.stream_expected and not self.stream_read and self.source in (None, NativeIdSource.RESUMED):
            said = self.adapter.native_id_from_output(self.output_path) if self.output_path else None
            if said is not None:
                self.stream_read = True
                if said != self.native_id:
                    if self.native_id is not None:  # a resume the agent turned into another conversation
                        log.info("%s adapter: the stream says %s, not %s", self.adapter.name, said, self.native_id)
                    self._settle(said, self.hint_source if said == self.hint else NativeIdSource.STREAM)
        if self.native_id is None and self.hint:
            self._settle(self.hint, self.hint_source)
        if self.native_id is None and (final or not self.stream_expected):
            ref = self.adapter.find_native_session(self.cwd, self.started_at, self.pid, None)
            if ref is not None:
                self._settle(ref.native_session_id, NativeIdSource.STORAGE)
                self._located(ref)
        if self.native_id is not None and self.ref is None:
            ref = self.adapter.find_native_session(self.cwd, self.started_at, self.pid, self.native_id)
            if ref is not None:
                self._located(ref)

    def _settle(self, native_id: str, source: NativeIdSource) -> None:
        self.native_id, self.source = native_id, source
        self.ref, self.cursor = None, {}

    def _located(self, ref: NativeRef) -> None:
        self.ref = replace(ref, output_path=self.output_path, run_since=self.run_started_at)
        log.info("%s adapter: native session %s (%s) at %s", self.adapter.name, ref.native_session_id,
                 self.source.value if self.source else "?", ref.path)
