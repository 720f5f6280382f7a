"""This host as the service layer sees it (``application/ports.py: Machine``): ``host.py`` and ``processes.py``."""

from __future__ import annotations

from agentledger.domain.liveness import PidProbe, ProcessIdentity
from agentledger.infrastructure import host, process_groups, process_table, processes
from agentledger.infrastructure.process_table import ProcessInfo


class LocalMachine:
    """The machine this process runs on."""

    @property
    def host(self) -> str:
        return host.host_name()

    @property
    def boot_id(self) -> str:
        return host.boot_id()

    def user(self) -> str:
        return host.os_user()

    def actor(self, component: str) -> dict[str, object]:
        return host.actor(component)

    def identity_of(self, pid: int) -> ProcessIdentity:
        return processes.identity_of(pid)

    def probe(self, identity: ProcessIdentity) -> PidProbe:
        return processes.probe(identity)

    def watch(self) -> processes.ProcessWatch:
        return processes.ProcessWatch()

    def supervisor_alive(self, pid: int | None, session_id_hex: str) -> bool:
        return processes.supervisor_alive(pid, session_id_hex)

    def signal_group(self, pgid: int, signum: int) -> bool:
        return process_groups.signal_group(pgid, signum)

    def signal_session_group(self, identity: ProcessIdentity, signum: int) -> bool:
        return processes.signal_session_group(identity, signum)

    def session_group_exists(self, identity: ProcessIdentity) -> bool:
        return processes.session_group_exists(identity)

    def process_table(self) -> dict[int, ProcessInfo]:
        return process_table.scan()

    def with_cwd(self, process: ProcessInfo) -> ProcessInfo:
        return process_table.with_cwd(process)

    def owned_by_me(self, process: ProcessInfo) -> bool:
        return process_table.current_user_owns(process)

    def session_variable(self, pid: int) -> str | None:
        return process_table.session_variable(pid)
