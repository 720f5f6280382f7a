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


#: ``wait``'s status for a stop whose exit nobody saw (the reconciler's, a host written off): unknown.
UNKNOWN_EXIT_STATUS = 255
#: ... for a command that could not be started (as a shell says for a command not found).
NOT_STARTED_STATUS = 127


def shell_status(reason: str, exit_code: int | None, signal_text: str | None) -> int:
    """A stop as the exit status a shell would give: the exit code; 128 + N for signal N; 127 for a command
    never started (``spawn-failed``, ``setup-failed``); 255 when nobody saw the process end."""
    if exit_code is not None:
        return exit_code
    if signal_text is not None:
        try:
            return 128 + int(_signals()[signal_text])
        except KeyError:
            return UNKNOWN_EXIT_STATUS
    if reason in (StopReason.SPAWN_FAILED.value, StopReason.SETUP_FAILED.value):
        return NOT_STARTED_STATUS
    return UNKNOWN_EXIT_STATUS


def _signals() -> dict[str, int]:
    return {s.name: s.value for s in signal.Signals}
