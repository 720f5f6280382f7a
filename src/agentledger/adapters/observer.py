"""Watching one running session's native storage on behalf of its supervisor.

The supervisor calls :meth:`Observer.poll` once per heartbeat interval. It
finds the agent's native session (once), then reads only what was appended
since the last poll, and says which facts are new and whether the agent did
anything since the last look (fresh activity counts as a heartbeat). Errors
reading a foreign format are logged and skipped: observing is best effort and
never affects the session's lifecycle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from agentledger.adapters.base import Adapter, Cursor, NativeRef

log = logging.getLogger("agentledger.observer")


@dataclass
class Observation:
    """Facts as the log stores them (``last_activity_at`` a datetime), and whether there was fresh activity."""

    facts: dict[str, Any]
    fresh_activity: bool


class Observer:
    def __init__(self, adapter: Adapter, *, cwd: str, started_at: float, pid: int | None,
                 hint: str | None = None, output_path: str | None = None) -> None:
        self.adapter = adapter
        self.cwd = cwd
        self.started_at = started_at
        self.pid = pid
        self.hint = hint
        self.output_path = output_path
        self.ref: NativeRef | None = None
        self.cursor: Cursor = {}
        self.last_activity: float | None = None

    def poll(self) -> Observation:
        try:
            return self._poll()
        except Exception as error:  # a format we misread must not take the supervisor down
            log.warning("%s adapter: reading native storage failed: %s: %s", self.adapter.name,
                        type(error).__name__, error)
            return Observation({}, False)

    def _poll(self) -> Observation:
        if self.ref is None:
            ref = self.adapter.find_native_session(self.cwd, self.started_at, self.pid, self.hint)
            if ref is None:
                return Observation({}, False)
            self.ref = replace(ref, output_path=self.output_path)
            log.info("%s adapter: native session %s at %s", self.adapter.name, ref.native_session_id, ref.path)
        facts, self.cursor = self.adapter.read_facts(self.ref, self.cursor)
        activity = facts.get("last_activity_at")
        fresh = activity is not None and activity >= self.started_at - 2.0 and (
            self.last_activity is None or activity > self.last_activity)
        if activity is not None:
            self.last_activity = max(activity, self.last_activity or activity)
            facts["last_activity_at"] = datetime.fromtimestamp(activity, timezone.utc)
        return Observation(facts, fresh)
