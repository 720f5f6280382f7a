"""How a supervisor's observed exit status becomes a stop reason."""

from __future__ import annotations

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


def reason_for_exit(observed: ObservedExit, *, stop_was_requested: bool) -> StopReason:
    """A requested stop is the user's, however the process ended; otherwise the status says."""
    if stop_was_requested:
        return StopReason.USER
    return StopReason.SIGNALLED if observed.returncode < 0 else StopReason.EXITED
