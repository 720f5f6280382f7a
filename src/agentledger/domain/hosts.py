"""A host that runs sessions: its daemon's signs of life, and an operator's word that it is gone.

One ``Host`` aggregate per host name. Its daemon records ``DaemonAlive`` when
it starts and then at a steady rate, and ``DaemonStopped`` when it stops on
purpose. A host whose daemon went quiet without saying so is *silent*: its
sessions show ``host-silent`` — never ``stopped``: silence is not death. Only
a person can declare a host gone (``Forgotten``), which stops its sessions
with reason ``host-lost``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event


class Host(Aggregate):
    class Registered(Aggregate.Created):
        name: str

    class DaemonAlive(Aggregate.Event):
        """The host's daemon runs: ``every`` seconds another one follows, unless it stops."""

        pid: int
        version: str
        boot_id: str
        every: float

        def apply(self, aggregate: Host) -> None:
            aggregate.daemon = {"pid": self.pid, "version": self.version, "boot_id": self.boot_id,
                                "every": self.every, "seen_at": self.timestamp}

    class DaemonStopped(Aggregate.Event):
        pid: int

        def apply(self, aggregate: Host) -> None:
            aggregate.daemon = None

    class Forgotten(Aggregate.Event):
        """An operator declared the host gone; ``stopped`` lists the sessions stopped for it."""

        by: dict[str, Any]
        reason: str
        stopped: list[str]

    @staticmethod
    def create_id(name: str) -> UUID:
        return host_id(name)

    @event(Registered)
    def __init__(self, *, name: str) -> None:
        self.name = name
        self.daemon: dict[str, Any] | None = None
        self.forgotten = False

    def daemon_alive(self, *, pid: int, version: str, boot_id: str, every: float) -> None:
        self.trigger_event(self.DaemonAlive, pid=pid, version=version, boot_id=boot_id, every=every)

    def daemon_stopped(self, *, pid: int) -> None:
        if self.daemon is not None and self.daemon["pid"] == pid:
            self.trigger_event(self.DaemonStopped, pid=pid)

    @event(Forgotten)
    def forget(self, *, by: dict[str, Any], reason: str, stopped: list[str]) -> None:
        self.forgotten = True
        self.daemon = None

    def silent(self, now: datetime, silent_after: float) -> bool:
        """Its daemon said it was running and has not been heard from for ``silent_after`` seconds."""
        return self.daemon is not None and (now - self.daemon["seen_at"]).total_seconds() > silent_after


def host_id(name: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"agentledger:host:{name}")
