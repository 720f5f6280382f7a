"""Process identity and liveness, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from agentledger.infrastructure import processes


@pytest.fixture
def sleeper():
    process = subprocess.Popen(["sleep", "30"], start_new_session=True)
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_a_running_process_is_alive(sleeper):
    identity = processes.identity_of(sleeper.pid)
    result = processes.probe(identity)
    assert result.alive and result.liveness == "alive"
    assert result.found_start_time == pytest.approx(identity.start_time)


def test_an_unreaped_process_is_dead(sleeper):
    identity = processes.identity_of(sleeper.pid)
    sleeper.send_signal(signal.SIGKILL)
    os.waitid(os.P_PID, sleeper.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
    assert processes.probe(identity).liveness == "zombie"
    sleeper.wait()
    assert processes.probe(identity).liveness == "no such process"


def test_a_reused_pid_is_dead(sleeper):
    # The PID is taken by a process that started at another time than the one recorded.
    identity = (found := processes.identity_of(sleeper.pid))._replace(start_time=found.start_time - 60)
    result = processes.probe(identity)
    assert not result.alive and result.liveness == "pid reused"


def test_another_boot_makes_a_pid_dead(sleeper):
    identity = processes.identity_of(sleeper.pid)._replace(boot_id="some-earlier-boot")
    assert processes.probe(identity).liveness == "rebooted"


def test_never_judges_another_host(sleeper):
    identity = processes.identity_of(sleeper.pid)._replace(host="elsewhere")
    with pytest.raises(ValueError):
        processes.probe(identity)


def test_exit_watcher_wakes_on_exit():
    process = subprocess.Popen(["sh", "-c", "sleep 0.2; exit 3"])
    watcher = processes.ExitWatcher(process)
    assert watcher.wait(0.01) is None
    assert watcher.wait(10) == 3
    watcher.close()
