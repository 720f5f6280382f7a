"""Process identity and liveness, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time

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


def _process_with_pid(pid: int) -> subprocess.Popen | None:
    """A new group leader given ``pid`` (ns_last_pid, as root), or None where that cannot be done."""
    try:
        with open("/proc/sys/kernel/ns_last_pid", "w") as handle:
            handle.write(str(pid - 1))
    except OSError:
        return None
    process = subprocess.Popen(["sleep", "30"], start_new_session=True)
    if process.pid != pid:  # something else took it first
        process.kill()
        process.wait()
        return None
    return process


def test_a_stop_never_signals_the_group_of_a_process_that_took_the_sessions_pid():
    """The session's leader ended and was reaped; a newcomer got its PID and leads a group of that number."""
    leader = subprocess.Popen(["sleep", "30"], start_new_session=True)
    identity = processes.identity_of(leader.pid)
    assert processes.session_group_exists(identity)
    leader.kill()
    leader.wait()
    time.sleep(0.05)  # start times tick in 10 ms: the newcomer must start in a later tick to be told apart
    newcomer = _process_with_pid(identity.pid)
    if newcomer is None:
        pytest.skip("cannot hand a PID to a new process here (needs root and /proc/sys/kernel/ns_last_pid)")
    try:
        assert os.getpgid(newcomer.pid) == identity.pid  # killpg(pid) would reach it
        assert not processes.session_group_exists(identity)
        assert processes.signal_session_group(identity, signal.SIGKILL) is False
        assert newcomer.poll() is None
    finally:
        newcomer.kill()
        newcomer.wait()


def test_the_group_of_an_unreaped_leader_is_still_the_sessions():
    """A zombie leader still holds its PID: its group's remaining members are the session's to signal."""
    leader = subprocess.Popen(["sh", "-c", "sleep 30 & exit 0"], start_new_session=True)
    identity = processes.identity_of(leader.pid)
    os.waitid(os.P_PID, leader.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped
    try:
        assert processes.session_group_exists(identity)  # the background sleep is in the group
        assert processes.signal_session_group(identity, signal.SIGKILL) is True
    finally:
        leader.wait()


def test_a_group_whose_members_all_ended_unreaped_has_none_running(sleeper):
    """Ended, not yet reaped (an orphan waits for init to reap it): the group still answers ``killpg`` but no
    member runs, so ``stop`` does not wait for init."""
    identity = processes.identity_of(sleeper.pid)
    assert processes.session_group_exists(identity)
    sleeper.send_signal(signal.SIGKILL)
    os.waitid(os.P_PID, sleeper.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped
    assert processes.group_exists(sleeper.pid)  # the kernel still counts the zombie in its group
    assert not processes.session_group_exists(identity)


def test_a_process_named_with_spaces_and_parentheses_is_read_right(tmp_path):
    """``/proc/PID/stat`` is read directly: its COMM field ("a) b (c") must not shift the fields after it."""
    import psutil

    odd = tmp_path / "a) b (c"
    odd.symlink_to("/bin/sleep")
    process = subprocess.Popen([str(odd), "30"])
    try:
        identity = processes.identity_of(process.pid)
        assert psutil.Process(process.pid).name() == "a) b (c"
        found, error = processes._look(process.pid)
        assert error is None and found is not None and not found.zombie
        assert abs(found.start_time - psutil.Process(process.pid).create_time()) < 1e-6
        assert processes.probe(identity).alive
        watch = processes.ProcessWatch()
        watch.start_pass()
        assert watch.probe(identity).alive
        watch.close()
    finally:
        process.kill()
        process.wait()
    assert not processes.probe(identity).alive
