"""Real separate hosts on one machine: each is PID 1 of fresh PID, UTS and mount namespaces (its own ``/proc``).

For ``tests/test_separate_hosts.py`` and ``scripts/bench_hosts.py``. A host is started with
``unshare --pid --uts --mount-proc --fork``; its PID 1 sets the namespace's host name and reaps whatever is
orphaned inside (supervisors, daemons, agents whose supervisor was killed), so a dead process there is gone,
never a zombie. Commands run inside with ``nsenter`` (the agentledger CLI as ``sys.executable -m agentledger``,
so it is this interpreter's install wherever the checkout is). No ``AGENTLEDGER_HOST_ID``: the host's name in
the ledger is its UTS namespace's host name, and its processes see only its own PIDs, which start at 1 on
every host, so the same PID numbers exist on each. The boot id is the machine's on all of them.

Killing PID 1 kills everything in its namespace (the kernel's rule), so :meth:`NamespaceHost.close` leaves
nothing behind. Processes inside are signalled and looked at from outside through the host's own ``/proc``
(``/proc/<its PID 1>/root/proc/<pid>``), a pidfd for signals: nothing is ever sent to a PID of this machine's
namespace by number.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import wait_for

#: PID 1 of a host: names the host, says so, then reaps every child it is given until it is killed.
INIT = """
import os, signal, socket, sys
socket.sethostname(sys.argv[1])
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
print("ready", flush=True)
while True:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
    signal.sigwait({signal.SIGCHLD})
"""

#: Run inside a host: make sure a process has PID argv[1] there: one that has it, or a ``sleep`` put there by
#: setting ns_last_pid. Exit 3: this very process has that PID (run it again: the next one gets another).
HOLD_PID = """
import os, sys, time
pid = int(sys.argv[1])
if pid == os.getpid():
    sys.exit(3)
def holder():
    try:
        with open(f"/proc/{pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
    except OSError:
        return None
    busy = fields["State"].strip().startswith("Z") or int(fields["Tgid"]) != pid  # a zombie, or a thread
    return "busy" if busy else "process"
def last_pid(value=None):
    with open("/proc/sys/kernel/ns_last_pid", "r+") as last:
        return int(last.read()) if value is None else last.write(str(value))
natural, deadline = last_pid(), time.monotonic() + 60
while time.monotonic() < deadline:
    found = holder()
    if found == "process":
        last_pid(max(natural, pid))  # new PIDs go on from where they were: none freed here is reused
        sys.exit(0)
    if found == "busy":
        time.sleep(0.05)
        continue
    last_pid(pid - 1)
    child = os.fork()
    if child == 0:
        if os.getpid() == pid:
            os.setsid()
            for fd in (0, 1, 2):
                os.dup2(os.open(os.devnull, os.O_RDWR), fd)
            os.execvp("sleep", ["sleep", "3600"])
        os._exit(0)
    if child != pid:
        os.waitpid(child, 0)
sys.exit(1)
"""

UNSHARE = ["unshare", "--pid", "--uts", "--mount-proc", "--fork", "--kill-child"]


def namespaces_unavailable() -> str | None:
    """Why hosts cannot be made here (not Linux, not root, no util-linux, namespaces refused), or None."""
    if not sys.platform.startswith("linux"):
        return f"PID and UTS namespaces are Linux's ({sys.platform})"
    if os.geteuid() != 0:
        return "making PID and UTS namespaces needs root"
    missing = [tool for tool in ("unshare", "nsenter") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} (util-linux) not found"
    tried = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True, timeout=30)
    if tried.returncode != 0:
        return f"unshare refused: {tried.stderr.strip() or tried.returncode}"
    return None


class NamespaceHost:
    """One host: its namespaces, its own ``AGENTLEDGER_HOME``, and the environment its commands get."""

    def __init__(self, name: str, home: Path, env: dict[str, str]) -> None:
        import psutil

        self.name, self.home = name, home
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.env = {key: value for key, value in env.items() if key != "AGENTLEDGER_HOST_ID"}
        self.env["AGENTLEDGER_HOME"] = str(home)
        self.unshare = subprocess.Popen([*UNSHARE, sys.executable, "-c", INIT, name], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, text=True)
        assert self.unshare.stdout is not None
        if self.unshare.stdout.readline().strip() != "ready":
            self.unshare.kill()
            raise RuntimeError(f"host {name}: its namespace did not start (unshare exited {self.unshare.wait()})")
        self._init = psutil.Process(self.unshare.pid).children()[0]
        self.init = self._init.pid

    def run(self, *argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``argv`` inside this host, from its home directory."""
        result = subprocess.run(["nsenter", f"--target={self.init}", "--pid", "--uts", "--mount",
                                 f"--wd={self.home}", "--", *argv],
                                capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and result.returncode != 0:
            raise AssertionError(f"on {self.name}: {' '.join(argv)} exited {result.returncode}: {result.stderr}")
        return result

    def agentledger(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "agentledger", *args, check=check)

    def json(self, *args: str) -> Any:
        return json.loads(self.agentledger(*args, "--json").stdout)

    def start_daemon(self, interval: str = "200ms") -> int:
        """``agentledger daemon start`` here; its PID on this host."""
        return int(self.agentledger("daemon", "start", "--interval", interval).stdout.split("(pid ")[1].split(")")[0])

    def launch(self, *argv: str, fuse_ttl: str = "2s") -> dict[str, Any]:
        """A supervised session of ``argv`` here; its ``status --json`` (pid and supervisor_pid are this host's)."""
        session = self.agentledger("launch", "--fuse-ttl", fuse_ttl, "--", *argv).stdout.strip()
        return self.json("status", session)

    def unwatched(self, *argv: str) -> dict[str, Any]:
        """A session whose supervisor is killed at once: its process runs on, watched by no one but the reconciler."""
        status = self.launch(*argv)
        self.kill(status["supervisor_pid"])
        return status

    def proc(self, pid: int) -> Path:
        """``/proc/PID`` of this host's process ``pid``, seen from outside."""
        return Path(f"/proc/{self.init}/root/proc/{pid}")

    def alive(self, pid: int) -> bool:
        try:
            return (self.proc(pid) / "stat").read_text().rsplit(") ", 1)[1][0] != "Z"
        except (OSError, IndexError):
            return False

    def outer_pid(self, pid: int) -> int:
        """The PID this machine knows this host's process ``pid`` by (for psutil, say)."""
        import psutil

        namespace = os.readlink(f"/proc/{self.init}/ns/pid")
        for outer in psutil.pids():
            try:
                if os.readlink(f"/proc/{outer}/ns/pid") != namespace:
                    continue
                with open(f"/proc/{outer}/status") as status:
                    nspid = next(line.split()[1:] for line in status if line.startswith("NSpid:"))
            except (OSError, StopIteration):
                continue
            if nspid[-1] == str(pid):
                return outer
        raise LookupError(f"{self.name}: no process {pid}")

    def signal(self, pid: int, sig: signal.Signals) -> None:
        """Send ``sig`` to this host's process ``pid`` (through a pidfd: never to a PID of another host)."""
        fd = os.open(self.proc(pid), os.O_RDONLY | os.O_DIRECTORY)
        try:
            signal.pidfd_send_signal(fd, sig)
        finally:
            os.close(fd)

    def kill(self, pid: int) -> None:
        """SIGKILL this host's process ``pid``, and wait until it is gone (reaped by PID 1)."""
        self.signal(pid, signal.SIGKILL)
        wait_for(lambda: not self.alive(pid), timeout=60)

    def hold_pid(self, pid: int) -> None:
        """Make sure a live process has PID ``pid`` on this host (an existing one, or a ``sleep`` put there)."""
        for _ in range(3):
            if self.run(sys.executable, "-c", HOLD_PID, str(pid), check=False).returncode != 3:
                break
        assert self.alive(pid), f"{self.name}: no process could be put at PID {pid}"

    def daemon_status(self) -> dict[str, Any]:
        """The daemon's ``daemon.status.json`` (rewritten after every pass), or {} before its first."""
        try:
            return json.loads((self.home / "daemon.status.json").read_text())
        except (OSError, ValueError):
            return {}

    def passes(self) -> int:
        return int(self.daemon_status().get("passes") or 0)

    def close(self) -> None:
        """Kill PID 1, and with it every process of this host."""
        import psutil

        try:
            self._init.kill()  # psutil checks it is still that process
        except psutil.NoSuchProcess:
            pass
        self.unshare.kill()  # --kill-child: its PID 1 would die with it anyway
        self.unshare.wait(timeout=60)
        if self.unshare.stdout is not None:
            self.unshare.stdout.close()
