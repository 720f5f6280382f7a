"""The closed sets the log speaks in: stop reasons, session statuses, fuse states."""

from __future__ import annotations

from enum import StrEnum


class StopReason(StrEnum):
    """Why a session stopped. Closed: a stop with any other reason is refused."""

    EXITED = "exited"  # the process ended by itself with an exit code
    SIGNALLED = "signalled"  # killed by a signal nobody here sent (or its supervisor was sent and passed on)
    USER = "user"  # a person asked (``agentledger stop``)
    SPAWN_FAILED = "spawn-failed"  # the binary could not be started at all
    SETUP_FAILED = "setup-failed"  # its --on-create command failed: the agent was never started
    RECONCILED = "reconciled"  # the reconciler found no live fuse and a dead PID
    TIMEOUT = "timeout"  # the session's master timeout passed
    HOST_LOST = "host-lost"  # an operator declared the session's host gone (``agentledger host forget``)


class SessionStatus(StrEnum):
    RUNNING = "running"  # a live fuse: someone (normally the supervisor) is watching it
    UNWATCHED = "unwatched"  # no live fuse, not stopped: only the reconciler looks after it
    STOPPING = "stopping"  # a stop was requested; the process has not ended yet
    STOPPED = "stopped"
    HOST_SILENT = "host-silent"  # not stopped, but its host's daemon went quiet: nobody can tell (derived)


class LaunchSource(StrEnum):
    """How a session came into the log (``Launched.source``)."""

    LAUNCHED = "launched"  # started by ``agentledger launch`` (or ``resume``) under a supervisor
    ADOPTED = "adopted"  # started elsewhere and recorded by ``agentledger adopt``: no supervisor, no exit code


class NativeIdSource(StrEnum):
    """How an agent's own session id was found (``AgentObserved.native_id_source``), best first."""

    PINNED = "pinned"  # chosen by the launch and given to the agent (Claude Code's ``--session-id``)
    RESUMED = "resumed"  # the conversation ``resume`` continued: its id was known before the run
    STREAM = "stream"  # said by the agent itself in this session's own output stream
    STORAGE = "storage"  # matched in the agent's storage by directory and start time (no id in a stream)


class FuseState(StrEnum):
    NONE = "none"  # never set
    SET = "set"  # set; live until its expiry, which heartbeats extend
    EXPIRED = "expired"  # lapsed, and the reconciler recorded it (``FuseExpired``); a heartbeat revives it
    CANCELLED = "cancelled"  # ended on purpose; only a new ``FuseSet`` re-arms it


class Component(StrEnum):
    """Who appended an event, for the ``decided_by`` / ``by`` fields."""

    SUPERVISOR = "supervisor"
    CLI = "cli"
    RECONCILER = "reconciler"


class StopCause(StrEnum):
    """Why a stop was requested (``StopRequested.cause``); it becomes the stop's reason."""

    USER = "user"  # ``agentledger stop``
    TIMEOUT = "timeout"  # the session's master timeout passed
