"""How a supervisor's observed exit status becomes a stop reason."""

from __future__ import annotations

import signal
from dataclasses import dataclass

from agentledger.domain.vocabulary import StopReason


@dataclass(frozen=True)
class ObservedExit:
    """A ``waitpid`` result: ``returncode`` is negative when a signal ended the process."""

    returncode: int
    signal_name: str | None  # the name of ``-returncode``, filled in by the observer

    @property
    def exit_code(self) -> int | None:
        return self.returncode if self.returncode >= 0 else None


def reason_for_exit(observed: ObservedExit, *, stop_cause: str | None) -> StopReason:
    """A requested stop ends for its cause (``user``, ``timeout``), however the process
    ended; otherwise the exit status says."""
    if stop_cause is not None:
        return StopReason(stop_cause)
    return StopReason.SIGNALLED if observed.returncode < 0 else StopReason.EXITED


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15; ``SIG<n>`` for a number this platform has no name for."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"
