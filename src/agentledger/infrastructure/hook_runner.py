"""Running an on-stop command (``application/ports.py: HookRunner``): ``/bin/sh -c``, its own process group.

A command that outlives its timeout gets SIGTERM, then SIGKILL, on its whole
group; its output's tail is kept (from a file, not a pipe, so that a
lingering grandchild cannot block the runner).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time

from agentledger.application.stop_hooks import HookRun
from agentledger.domain.exits import signal_name
from agentledger.domain.stop_hooks import OUTPUT_TAIL_BYTES
from agentledger.infrastructure import processes
from agentledger.infrastructure.agent_env import agent_environment

#: After the timeout's SIGTERM, how long the group has before SIGKILL.
KILL_GRACE = 5.0
_POLL = 0.02


class ProcessHookRunner:
    """Runs hooks as child processes of this one (the supervisor, or the daemon)."""

    def run(self, command: str, *, cwd: str, env: dict[str, str], timeout: float) -> HookRun:
        return execute(command, cwd=cwd, env=env, timeout=timeout)

    def inherited_environment(self) -> dict[str, str]:
        """This process's environment as an agent gets it: the supervisor's and the daemon's hold the store's URL
        with its password, which a hook must not see (``agent_env.py``)."""
        return {k: v for k, v in agent_environment(os.environ).items() if k != "AGENTLEDGER_SIGNAL"}


def execute(command: str, *, cwd: str, env: dict[str, str], timeout: float) -> HookRun:
    """Run ``command`` with ``/bin/sh -c`` in its own process group, at most ``timeout`` seconds."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as output:  # a file, not a pipe: a lingering grandchild cannot block us
        try:
            process = subprocess.Popen(
                ["/bin/sh", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as error:
            return HookRun(None, None, False, time.monotonic() - started, "",
                           f"cannot start in {cwd}: {error.strerror or error}")
        try:
            returncode = process.wait(timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            returncode = _end_group(process)
            timed_out = True
        duration = time.monotonic() - started
        output.seek(0, os.SEEK_END)
        output.seek(max(0, output.tell() - OUTPUT_TAIL_BYTES))
        tail = output.read().decode("utf-8", errors="replace")
    return HookRun(
        exit_code=returncode if returncode >= 0 else None,
        signal=signal_name(-returncode) if returncode < 0 else None,
        timed_out=timed_out,
        duration_seconds=round(duration, 3),
        output_tail=tail,
    )


def _end_group(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM to the group; SIGKILL to what is left of it once the leader ended or the grace passed.

    The leader's end is the cue, not the group's: an orphaned member that died
    stays in the group as a zombie until init reaps it, which may be late. The
    leader is reaped only after the SIGKILL, so the group id cannot have been reused.
    """
    processes.signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE
    while time.monotonic() < deadline and not _ended(process.pid):
        time.sleep(_POLL)
    processes.signal_group(process.pid, signal.SIGKILL)
    return process.wait()


def _ended(pid: int) -> bool:
    """Has this child ended? (without reaping it)"""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
