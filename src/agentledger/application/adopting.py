"""Agents started outside the ledger: finding them (``discover``) and recording them (``adopt``).

An adopted session is an ordinary session whose ``Launched`` says
``source=adopted``: its PID and start time are recorded as for any launch, so
the reconciler tracks it like any other, but no supervisor watches it. Nobody
sees its exit status: the reconciler stops it (reason ``reconciled``) at the
first pass that finds its PID dead. A fuse is set only when asked for, and
then whoever asked must heartbeat.

A process is *known* to the ledger when it, or one of its ancestors, is the
PID (with the same start time) of a session not stopped on this host, or a
supervisor of one, or when a supervisor's ``AGENTLEDGER_SESSION_ID`` in its
environment names such a session. An agent's wrapper and the agent it runs
(``node /usr/bin/codex`` and the native ``codex`` under it) are one agent:
only the outermost is listed.

The session id of an adoption is derived from the process's identity (host,
boot, PID, start time), so two ``adopt`` commands racing for one process
cannot record it twice: the second one's ``Launched`` collides at version 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import NAMESPACE_URL, UUID, uuid5

from agentledger.application.errors import LedgerError, UsageError
from agentledger.domain.fuse import check_ttl

if TYPE_CHECKING:
    from agentledger.application.ports import Agents, Machine, ReadModels, Store

#: A recorded start time and psutil's reading of the same process differ by rounding only.
SAME_START = 1.0


@dataclass(frozen=True)
class Candidate:
    """An agent process the ledger does not know, and its native session if the adapter found one."""

    pid: int
    adapter: str
    cmdline: tuple[str, ...]
    cwd: str | None
    started_at: float
    native_session_id: str | None
    native_path: str | None

    def as_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "adapter": self.adapter, "argv": list(self.cmdline), "cwd": self.cwd,
                "started_at": self.started_at, "native_session_id": self.native_session_id,
                "native_path": self.native_path}


class AlreadyTracked(LedgerError):
    """The process is already a session's (exit status 1: a refusal, not a usage error)."""


def discover(read_models: ReadModels, machine: Machine, agents: Agents, under: str | None = None) -> list[Candidate]:
    """This user's agent processes on this host that no session not yet stopped accounts for, oldest first.

    With ``under`` (an absolute directory), only those whose working directory is it or below it.
    """
    table = machine.process_table()
    known = _Known(read_models, machine)
    running = {pid: adapter for pid, process in table.items()
               if (adapter := agents.for_command(process.cmdline)) is not None}
    found = []
    for pid, adapter in running.items():
        process = table[pid]
        if running.get(process.ppid) is adapter:
            continue  # run by a wrapper of the same agent: the wrapper is the one listed
        if not machine.owned_by_me(process) or known.accounts_for(process, table):
            continue
        candidate = _candidate(process, adapter, machine, agents)
        if under is None or _is_within(candidate.cwd, under):
            found.append(candidate)
    return sorted(found, key=lambda c: (c.started_at, c.pid))


def adopt(store: Store, machine: Machine, agents: Agents, pid: int, *, adapter_name: str | None = None,
          fuse_ttl: float | None = None,
          name: str | None = None, group: str | None = None, labels: dict[str, str] | None = None,
          launched_by: str) -> tuple[str, Candidate]:
    """Record process ``pid`` as a session (``Launched``, source adopted; ``FuseSet`` only with a TTL).

    The agent's native facts found now are recorded with it (``AgentObserved``).
    Returns the new session's id and what was adopted.
    """
    from eventsourcing.persistence import IntegrityError

    if fuse_ttl is not None:
        check_ttl(fuse_ttl)
    table = machine.process_table()
    process = table.get(pid)
    if process is None:
        raise UsageError(f"no process {pid} on this host")
    if not machine.owned_by_me(process):
        raise UsageError(f"process {pid} belongs to another user ({process.user}): adopt it as that user")
    adapter = agents.named(adapter_name) if adapter_name else agents.for_command(process.cmdline)
    if adapter is None:
        raise UsageError(f"process {pid} ({agents.program_name(process.cmdline)}) is not an agent agentledger knows; "
                         "give --adapter command to adopt it anyway")
    owner = _Known(store.read_models, machine).owner_of(process, table)
    if owner is not None:
        raise AlreadyTracked(f"process {pid} is already tracked, by session {owner}")
    candidate = _candidate(process, adapter, machine, agents)
    session_id = _adoption_id(machine, candidate)
    try:
        _record(store, machine, agents, session_id, candidate, adapter, fuse_ttl=fuse_ttl, name=name, group=group,
                labels=labels or {}, launched_by=launched_by)
    except IntegrityError:
        raise AlreadyTracked(f"process {pid} is already tracked, by session {session_id.hex}") from None
    return session_id.hex, candidate


def _record(store: Store, machine: Machine, agents: Agents, session_id: UUID, candidate: Candidate, adapter: Any, *,
            fuse_ttl: float | None, name: str | None, group: str | None, labels: dict[str, str],
            launched_by: str) -> None:
    from agentledger.application.clock import utc_now
    from agentledger.domain.vocabulary import Component, LaunchSource

    identity = machine.identity_of(candidate.pid)
    store.ledger.launch(
        session_id=session_id, fuse_ttl=fuse_ttl, fuse_set_by=Component.CLI.value,
        argv=list(candidate.cmdline), cwd=candidate.cwd or "", adapter=adapter.name, name=name, model=None,
        prompt=None, group=group, labels=labels, host=identity.host, boot_id=identity.boot_id, pid=candidate.pid,
        pid_start_time=identity.start_time, boot_time=identity.boot_time, supervisor_pid=None, log_path=None,
        launched_by=launched_by, source=LaunchSource.ADOPTED.value,
    )
    facts = _native_facts(agents, adapter, candidate)
    if facts:
        store.ledger.change(session_id, lambda s: s.observe_agent(facts=facts, heartbeat=False, source="adopt",
                                                                  now=utc_now()))


def _native_facts(agents: Agents, adapter: Any, candidate: Candidate) -> dict[str, Any]:
    """The facts the adapter reads in the agent's storage now (best effort: a misread format gives none)."""
    from datetime import datetime, timezone

    from agentledger.domain.vocabulary import NativeIdSource

    if candidate.native_session_id is None or candidate.native_path is None:
        return {}
    identity = {"native_session_id": candidate.native_session_id, "native_id_source": NativeIdSource.STORAGE.value}
    try:
        facts = agents.native_facts(adapter, candidate.native_session_id, candidate.native_path, candidate.started_at)
    except Exception:  # noqa: BLE001 - observing never decides anything, adopting goes on without facts
        return identity
    facts.update(identity)
    if facts.get("last_activity_at") is not None:
        facts["last_activity_at"] = datetime.fromtimestamp(facts["last_activity_at"], timezone.utc)
    return facts


def _candidate(process: Any, adapter: Any, machine: Machine, agents: Agents) -> Candidate:
    process = machine.with_cwd(process)
    ref = None
    if process.cwd is not None:
        try:
            ref = adapter.find_native_session(process.cwd, process.started_at, process.pid)
        except Exception:  # noqa: BLE001 - a foreign format we misread: list the process without it
            ref = None
    return Candidate(pid=process.pid, adapter=adapter.name, cmdline=process.cmdline, cwd=process.cwd,
                     started_at=process.started_at, native_session_id=ref.native_session_id if ref else None,
                     native_path=ref.path if ref else None)


def _is_within(cwd: str | None, directory: str) -> bool:
    import os

    return cwd is not None and (cwd == directory or cwd.startswith(directory.rstrip(os.sep) + os.sep))


def _adoption_id(machine: Machine, candidate: Candidate) -> UUID:
    where = f"{machine.host}/{machine.boot_id}/{candidate.pid}/{candidate.started_at:.2f}"
    return uuid5(NAMESPACE_URL, f"agentledger:adopted/{where}")


class _Known:
    """The processes that sessions not stopped on this host account for."""

    def __init__(self, read_models: ReadModels, machine: Machine) -> None:
        self.machine = machine
        self.pids: dict[int, tuple[str, float | None]] = {}
        self.supervisors: dict[int, str] = {}
        for row in read_models.tracked_processes(machine.host):
            if row["pid"] is not None:
                self.pids[row["pid"]] = (row["id"], row["pid_start_time"])
            if row["supervisor_pid"] is not None:
                self.supervisors[row["supervisor_pid"]] = row["id"]
        self.sessions = {session for session, _ in self.pids.values()} | set(self.supervisors.values())

    def accounts_for(self, process: Any, table: dict[int, Any]) -> bool:
        return self.owner_of(process, table) is not None

    def owner_of(self, process: Any, table: dict[int, Any]) -> str | None:
        """The session accounting for ``process`` (itself, an ancestor, or its environment), or None."""
        seen: set[int] = set()
        current = process
        while current is not None and current.pid not in seen:
            seen.add(current.pid)
            session = self._session_of(current)
            if session is not None:
                return session
            current = table.get(current.ppid)
        variable = self.machine.session_variable(process.pid)
        return variable if variable in self.sessions else None

    def _session_of(self, process: Any) -> str | None:
        recorded = self.pids.get(process.pid)
        if recorded is not None and (recorded[1] is None or abs(recorded[1] - process.started_at) < SAME_START):
            return recorded[0]
        supervisor = self.supervisors.get(process.pid)
        if supervisor is not None and any("agentledger" in arg for arg in process.cmdline):
            return supervisor
        return None
