"""Launching, as the service layer plans it: the ``LaunchSpec`` a supervisor runs, and the heartbeat rule.

``agentledger launch`` and ``resume`` (``entrypoints/launch_commands.py``) fill
a :class:`LaunchSpec` from the arguments, the configuration and the agent's
adapter (its argv, prompt file and environment); the supervisor
(``runtime/supervisor.py``) runs it and records ``Launched`` from
:meth:`LaunchSpec.launched_fields`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentledger.domain.durations import format_duration
from agentledger.domain.errors import UsageError
from agentledger.domain.policy import DEFAULT_TERMINATION_GRACE

#: A supervisor's heartbeats by default: three per TTL, so that one late or lost beat never lets the fuse lapse.
HEARTBEATS_PER_TTL = 3


def heartbeat_interval(fuse_ttl: float, every: float | None) -> float:
    """Seconds between a supervisor's heartbeats: ``every``, else a third of the TTL.

    More than half the TTL is refused: one late heartbeat would let the fuse lapse.
    """
    if every is not None and every > fuse_ttl / 2:
        raise UsageError(f"--heartbeat-every {format_duration(every)} is more than half the fuse TTL "
                         f"({format_duration(fuse_ttl)}): one late heartbeat would let the fuse lapse")
    return every or fuse_ttl / HEARTBEATS_PER_TTL


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a supervisor needs, passed to it as JSON by ``agentledger launch``."""

    session_id: str
    argv: list[str]
    cwd: str
    fuse_ttl: float
    log_path: str
    launched_by: str
    adapter: str = "command"
    name: str | None = None
    model: str | None = None
    prompt: str | None = None
    group: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    heartbeat_every: float | None = None  # default TTL/3
    timeout: float | None = None  # master timeout, seconds from launch
    termination_grace: float = DEFAULT_TERMINATION_GRACE  # after the timeout's SIGTERM, before SIGKILL
    on_stop: str | None = None  # shell command to run once the stop is recorded
    on_stop_timeout: float | None = None
    stdin_path: str | None = None  # fed to the process's stdin (an agent's prompt file); None: /dev/null
    native_session_id: str | None = None  # the agent's own session id, when the launch chose it (or resumes it)
    resumed_from: str | None = None  # the session (hex id) whose agent conversation this one continues
    #: The process's whole environment (``infrastructure/agent_env.py``: the user's, without agentledger's
    #: secrets); None: the supervisor's own, which holds the store URL it was given.
    env: dict[str, str] | None = None

    @property
    def heartbeat_interval(self) -> float:
        return heartbeat_interval(self.fuse_ttl, self.heartbeat_every)

    def launched_fields(self, *, host: str, boot_id: str, supervisor_pid: int) -> dict[str, Any]:
        """The ``Launched`` event's fields, on the supervisor's host and boot."""
        return {
            "argv": self.argv,
            "cwd": self.cwd,
            "adapter": self.adapter,
            "name": self.name,
            "model": self.model,
            "prompt": self.prompt,
            "group": self.group,
            "labels": self.labels,
            "host": host,
            "boot_id": boot_id,
            "log_path": self.log_path,
            "launched_by": self.launched_by,
            "supervisor_pid": supervisor_pid,
            "timeout": self.timeout,
            "on_stop": self.on_stop,
            "on_stop_timeout": self.on_stop_timeout,
            "resumed_from": self.resumed_from,
        }
