"""This host's daemon for one store, seen from outside it: is it running, start it, stop it, keep one running.

``daemon start|stop|status|install`` ask it, and so does a launch
(:meth:`DaemonControl.ensure_running`): a session whose supervisor dies is
then still stopped once its process ends, for a user who never started a
daemon. Which daemon runs is read from its lock (``daemon_files.py``) and,
for a PostgreSQL store served from another home, from the server's lock; a
recorded holder counts only if that very process (PID and start time) still
runs.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from agentledger.application.errors import LedgerError
from agentledger.domain.durations import format_duration
from agentledger.domain.policy import DEFAULT_POLICY, ReconcilePolicy
from agentledger.infrastructure.config import PostgresLocation, StoreLocation
from agentledger.infrastructure.daemon_files import DaemonFiles, alive, server_holder
from agentledger.infrastructure.host import host_name
from agentledger.infrastructure.launcher import start_detached
from agentledger.infrastructure.store_faults import is_connection_error


class DaemonControl:
    """The daemon of the store at ``location`` on this host, as the home ``home`` finds it."""

    def __init__(self, location: StoreLocation | PostgresLocation, home: Path) -> None:
        self.location = location
        self.home = home
        self.files = DaemonFiles.locate(location, home)

    def running(self) -> dict[str, Any] | None:
        """The running daemon's holder record: the lock's, else (a server store served by a daemon of another
        home, or of another spelling) the server lock's; None when no such process still runs."""
        here = host_name()
        holder = self.files.recorded_holder()
        if alive(holder, here):
            return holder
        if not isinstance(self.location, PostgresLocation):
            return None
        try:
            holder = server_holder(self.location, here)
        except Exception as error:  # the server is away: no daemon can be found there now
            if not is_connection_error(error):
                raise
            return None
        return holder if alive(holder, here) else None

    def start(self, interval: float, policy: ReconcilePolicy) -> dict[str, Any]:
        """Start ``daemon run`` detached; its handshake: ``ok``, else ``error`` (and ``already_running``)."""
        argv = [sys.executable, "-m", "agentledger", "daemon", "run", "--interval", repr(interval),
                "--mass-stop-share", repr(policy.mass_stop_share), "--mass-stop-min", str(policy.mass_stop_min),
                "--handshake-fd"]
        env = dict(os.environ, AGENTLEDGER_HOME=str(self.home), AGENTLEDGER_DB=self.location.connect_url)
        return start_detached(argv, env, self.files.log_path, what="daemon")

    def ensure_running(self, *, autostart: bool, interval: float) -> str | None:
        """Make sure a reconciler will run for the store on this host; a notice for the user, or None.

        With ``autostart`` (the configuration's ``autostart_daemon``, on by
        default) a daemon is started when none runs; off, the notice says what
        that means. Best effort: a launch that called this has succeeded already.
        """
        if self.running() is not None:
            return None
        if not autostart:
            return ("no reconciler daemon runs for this store (autostart_daemon = false): if this session's "
                    "supervisor dies, it stays unwatched until 'agentledger daemon start' or 'agentledger reconcile'")
        try:
            answer = self.start(interval, DEFAULT_POLICY)
        except Exception as error:  # noqa: BLE001 - the session is launched: say why no daemon, and go on
            return f"could not start the reconciler daemon ({error}); run 'agentledger daemon start'"
        if not answer["ok"]:
            if answer.get("already_running"):  # another home's daemon serves the store (it holds the server's lock)
                return None
            return f"could not start the reconciler daemon ({answer['error']}); run 'agentledger daemon start'"
        return (f"started the reconciler daemon for this store (pid {answer['pid']}, log {answer['log']}); "
                "autostart_daemon = false turns this off")

    def stop(self, wait: float) -> dict[str, Any] | None:
        """SIGTERM the running daemon and wait up to ``wait`` seconds for it to exit; its holder, or None if none ran."""
        holder = self.running()
        if holder is None:
            return None
        try:
            os.kill(holder["pid"], signal.SIGTERM)
        except PermissionError:
            raise LedgerError(f"the daemon (pid {holder['pid']}) runs as another user: stop it as that user") from None
        deadline = time.monotonic() + wait
        while alive(holder, holder["host"]):
            if time.monotonic() > deadline:
                raise LedgerError(f"the daemon (pid {holder['pid']}) has not exited after {format_duration(wait)}; "
                                  f"see {self.files.log_path}")
            time.sleep(0.05)
        return holder

