"""``agentledger daemon run``: the scheduled reconciler, one per host and store.

An APScheduler ``BackgroundScheduler`` runs the reconcile pass every interval
on a single worker thread with ``max_instances=1`` and ``coalesce``, so a pass
never overlaps itself and a late pass is not run twice. After each pass, if a
fuse, a timeout or a termination grace period runs out before the next regular
pass, the job is brought forward to that moment: a dead session is stopped
within milliseconds of its fuse expiring rather than up to an interval later.

SIGTERM and SIGINT set a flag that the pass checks between two sessions (never
between a decision and its append); the daemon then waits for that pass to end
before it closes the store: no decision is left half made. Logs go to stderr.

It also records that its host is alive (``Host.DaemonAlive``, every
``host_heartbeat`` in the configuration; ``DaemonStopped`` on a clean stop), and on a
PostgreSQL ledger (not reached through a transaction pooler) a
:class:`~agentledger.runtime.follower.LogFollower` thread keeps the read
models current from LISTEN/NOTIFY between passes.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from agentledger import __version__
from agentledger.application import clock
from agentledger.application.hosting import record_daemon_alive, record_daemon_stopped
from agentledger.application.reconciling import Outcome, PassReport, Reconciler
from agentledger.application.watching import AgentWatch
from agentledger.domain.durations import format_duration
from agentledger.domain.policy import ReconcilePolicy
from agentledger.infrastructure.config import PostgresLocation
from agentledger.infrastructure.daemon_files import DEFAULT_LEASE_SECONDS, DaemonAlreadyRunning, DaemonFiles
from agentledger.infrastructure.host import boot_id, host_name
from agentledger.infrastructure.launcher import Handshake
from agentledger.infrastructure.metrics_server import Check, LoopWatch, thread_alive
from agentledger.infrastructure.settings import Settings
from agentledger.infrastructure.spool import Spool
from agentledger.runtime.after_stop_worker import AfterStopWork

if TYPE_CHECKING:
    from agentledger.application.ports import Store

log = logging.getLogger("agentledger.daemon")

JOB_ID = "reconcile"
HOST_JOB_ID = "host-heartbeat"
#: Bringing a pass forward to a fuse's expiry: land just after it, not just before.
WAKE_MARGIN = timedelta(milliseconds=5)


class Daemon:
    def __init__(self, store: Store, files: DaemonFiles, *, interval: float, policy: ReconcilePolicy,
                 settings: Settings, reopen: Callable[[], Store], lock: Any = None,
                 console: ConsoleStarter | None = None) -> None:
        self.store = store
        self.console = console  # starts the web console beside the passes (``console_addr``), given by the entry point
        self.console_stop: Callable[[], None] | None = None
        self.console_error: str | None = None
        self.reopen = reopen  # opens the store again: the webhook threads each have their own
        self.lock = lock  # the store's daemon lock (a server's goes with its connection: checked each beat)
        self.settings = settings
        self.host_heartbeat = settings.host_heartbeat
        self.files = files
        self.interval = interval
        self.policy = policy
        from agentledger.bootstrap import agents, hook_runner, this_machine

        machine = this_machine()
        self.reconciler = Reconciler(store, machine=machine, policy=policy, spool=Spool(files.home))
        self.after_stop = AfterStopWork(store, machine, hook_runner())  # checks and hooks of stops others recorded
        self.agents = AgentWatch(store, machine, agents())  # facts of agent sessions no supervisor watches
        self.started_at = datetime.now(timezone.utc)
        self.passes = 0
        self.last_pass: dict[str, Any] | None = None
        self.guard: dict[str, Any] | None = None
        self.scheduler: Any = None
        self.shutdown = threading.Event()
        self.in_pass = threading.Lock()  # held by the pass in flight
        self.pass_watch = LoopWatch(interval)
        self.beat_watch = LoopWatch(self.host_heartbeat)
        #: /healthz asks each of these whether its loop is alive and current: a thread the daemon
        #: runs adds itself with one line, ``self.loops[name] = thread_alive(thread)``.
        self.loops: dict[str, Check] = {"reconcile": self.pass_watch.check,
                                        "host-heartbeat": self.beat_watch.check}
        self.metrics: Any = None  # DaemonMetrics while /metrics is served
        self.metrics_server: Any = None
        self.metrics_error: str | None = None  # why /metrics is not served although configured
        self.webhooks: Any = None  # the webhook Dispatcher (enqueue + one thread per endpoint), if configured

    def run(self, handshake: Handshake) -> int:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self.scheduler = BackgroundScheduler(
            timezone=timezone.utc,
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.scheduler.add_job(
            self.run_pass, "interval", seconds=self.interval, id=JOB_ID, next_run_time=datetime.now(timezone.utc)
        )
        self.scheduler.add_job(self.host_alive, "interval", seconds=self.host_heartbeat, id=HOST_JOB_ID)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self.host_alive()
        follower = self._follow_the_log()
        if follower is not None:
            self.loops["log-follower"] = thread_alive(follower)
        self._start_webhooks()
        self._serve_metrics()
        self._serve_console()
        self.scheduler.start()
        log.info(
            "daemon started: pid %d, host %s, store %s, pass every %s",
            os.getpid(), host_name(), self.store.location.url, format_duration(self.interval),
        )
        handshake.send({"ok": True, "pid": os.getpid(), "log": str(self.files.log_path),
                        "metrics_error": self.metrics_error})  # the starter says it: "started" is not the whole truth
        while not self.shutdown.wait(1.0):
            pass
        # Not shutdown(wait=True): APScheduler 3 holds its job-store lock while it
        # waits, and the pass calls into the scheduler. Wait for the pass ourselves.
        self.scheduler.shutdown(wait=False)
        if follower is not None:
            follower.stop()
        if self.webhooks is not None:
            self.webhooks.stop()
        with self.in_pass:
            self.after_stop.close()
            self.reconciler.close()
            self._host_event(record_daemon_stopped, pid=os.getpid())
            self._write_status(state="stopped")
        if self.console_stop is not None:
            self.console_stop()
        if self.metrics_server is not None:
            self.metrics_server.close()
        log.info("daemon stopped after %d %s", self.passes, "pass" if self.passes == 1 else "passes")
        return 0

    def _on_signal(self, signum: int, _frame: Any) -> None:
        log.info("%s received: finishing the decision in hand, then stopping", signal.Signals(signum).name)
        self.reconciler.stopping.set()
        self.shutdown.set()

    def _follow_the_log(self) -> Any:
        """On PostgreSQL, keep the read models current from LISTEN/NOTIFY between passes.

        Not on SQLite (no notifications) nor through a transaction pooler (a ``LISTEN`` lasts in a session,
        which the pooler lends to others between transactions): there each pass catches up instead.
        """
        location = self.store.location
        if not isinstance(location, PostgresLocation) or location.pooled:
            return None
        from agentledger.runtime.follower import LogFollower

        follower = LogFollower(self.reopen)
        follower.start()
        return follower

    def _start_webhooks(self) -> None:
        """Deliver webhooks from threads of their own (``webhook_dispatch.py``): the pass never waits on them."""
        if not self.settings.webhooks:
            return
        from agentledger.infrastructure.webhook_sender import WebhookSender
        from agentledger.runtime.webhook_dispatch import Dispatcher

        self.webhooks = Dispatcher(self.settings.webhooks, self.reopen, WebhookSender)
        self.webhooks.start()
        for thread in self.webhooks.threads:
            self.loops[thread.name] = thread_alive(thread)

    def _serve_metrics(self) -> None:
        """``/metrics`` and ``/healthz`` on the configured address, unless it is ``off``.

        An address already taken does not stop the daemon: reconciling matters
        more than being watched. One error line says so, ``daemon status``
        shows it, and neither endpoint answers until the daemon is restarted.
        """
        address = self.settings.metrics_addr
        if address is None:
            log.info("metrics: off (metrics_addr = off): no /metrics or /healthz")
            return
        from prometheus_client import CollectorRegistry

        from agentledger.infrastructure.metrics_server import DaemonMetrics, MetricsServer
        from agentledger.projections.metrics import LedgerCollector

        registry = CollectorRegistry()
        try:
            self.metrics_server = MetricsServer(address, registry, self.loops)
        except OSError as error:
            self.metrics_error = f"cannot listen on {address}: {error.strerror or error}"
            log.error("metrics: %s; /metrics and /healthz are NOT served (set metrics_addr to a free HOST:PORT "
                      "or off, and restart); reconciling goes on", self.metrics_error)
            return
        collector = LedgerCollector(self.reopen, self.files.home)
        registry.register(collector)
        self.metrics_server.closing.append(collector.close)
        self.metrics = DaemonMetrics(registry, host=host_name(), started_at=self.started_at.timestamp())
        self.metrics_server.start()
        log.info("metrics: serving http://%s/metrics and /healthz", address)

    def host_alive(self) -> None:
        """This host's sign of life in the log: readers call the host silent when these stop coming."""
        with self.beat_watch.running():
            if self.lock is not None and not self.lock.still_held():
                log.error("this daemon's claim on the store was lost (its lock's connection ended, or its lease ran "
                          "out while it could not renew it) and another daemon took it: stopping, so that one "
                          "daemon serves the store")
                self.reconciler.stopping.set()
                self.shutdown.set()
                return
            if not self.shutdown.is_set():
                self._host_event(record_daemon_alive, pid=os.getpid(), version=__version__, boot_id=boot_id(),
                                 every=self.host_heartbeat)

    def _host_event(self, record: Any, **fields: Any) -> None:
        try:
            record(self.store.ledger, host_name(), **fields)
        except Exception as error:  # the store may be away for a moment; the next beat tries again
            log.error("host heartbeat not recorded: %s", error)

    def run_pass(self) -> None:
        with self.in_pass, self.pass_watch.running():
            if not self.reconciler.stopping.is_set():
                self._pass()

    def _pass(self) -> None:
        started = time.perf_counter()
        try:
            self.agents.observe()  # first: a session's last facts go in before the pass that stops it
        except Exception as error:  # observing is best effort; reconciling is not
            log.error("observing unwatched agents failed: %s", error)
        report: PassReport | None = None
        try:
            done = self.reconciler.run_pass()
        except Exception as error:  # the next pass tries again; the daemon keeps running
            log.error("reconcile pass failed: %s", error, exc_info=log.isEnabledFor(logging.DEBUG))
            self.last_pass = {"at": datetime.now(timezone.utc), "error": str(error)}
        else:
            report = done
            self._log(done)
            self.last_pass = {
                "at": done.started_at,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "sessions": len(done.judged),
                "counts": done.counts,
                "error": None,
            }
            self._bring_forward(done.next_due)
        if self.metrics is not None:
            self.metrics.record_pass(report, time.perf_counter() - started)
        self.after_stop.poke()  # runs them on a thread of its own: never delays the next pass
        self.passes += 1
        self._write_status(state="running")

    def _bring_forward(self, due: datetime | None) -> None:
        """Run the next pass when ``due`` comes, if that is before the next regular one."""
        if due is None or self.shutdown.is_set():
            return
        job = self.scheduler.get_job(JOB_ID)
        wake = due + WAKE_MARGIN
        if job is not None and job.next_run_time is not None and wake < job.next_run_time:
            job.modify(next_run_time=wake)

    def _log(self, report: PassReport) -> None:
        for sid in report.from_spool:
            log.info("stopped %s with the exit its supervisor spooled during an outage", sid[:12])
        for judged in report.judged:
            d = judged.decision
            if judged.outcome == Outcome.STOPPED:
                log.info("stopped %s (%s): %s", d.session_id[:12], d.reason, d.why)
            elif judged.outcome == Outcome.FUSE_EXPIRED:
                log.info("unwatched %s: %s", d.session_id[:12], d.why)
            elif judged.outcome == Outcome.TERMINATING:
                log.info("terminating %s: %s", d.session_id[:12], d.why)
            elif judged.outcome == Outcome.FROM_SPOOL:
                log.info("stopped %s with the exit its supervisor spooled", d.session_id[:12])
            elif judged.outcome == Outcome.FAILED:
                log.error("could not judge %s: %s", d.session_id[:12], judged.error)
        guard = report.guard
        if guard and "released" in guard:
            released = guard["released"]
            log.info("mass-stop guard released (%s): %d confirmed and stopped, %d seen alive again",
                     released["how"], len(released["confirmed"]), len(released["cleared"]))
            self.guard = None
        if guard and guard.get("tripped"):
            log.warning(
                "mass-stop guard: this pass would stop %d sessions (limit %.0f); holding %d whose only evidence "
                "is a failed PID probe until the next pass confirms them or 'agentledger reconcile --confirm'",
                guard["would_stop"], guard["limit"], len(guard["held"]),
            )
            self.guard = {"held": guard["held"], "since": report.started_at, "would_stop": guard["would_stop"]}

    def _write_status(self, *, state: str) -> None:
        job = self.scheduler.get_job(JOB_ID) if self.scheduler and state == "running" else None
        self.files.write_status({
            "state": state,
            "pid": os.getpid(),
            "version": __version__,
            "host": host_name(),
            "boot_id": boot_id(),
            "store": self.store.location.url,
            # this daemon's clock minus the store's (seconds; 0 within the tolerance): it judges on the store's
            "clock_offset": round(-clock.offset(), 1),
            "interval_seconds": self.interval,
            "policy": {
                "version": self.policy.version,
                "mass_stop_share": self.policy.mass_stop_share,
                "mass_stop_min": self.policy.mass_stop_min,
                "termination_grace_seconds": self.policy.termination_grace,
            },
            "started_at": self.started_at,
            "updated_at": datetime.now(timezone.utc),
            "passes": self.passes,
            "last_pass": self.last_pass,
            "sessions_watched": (self.last_pass or {}).get("sessions"),
            "guard": self.guard,
            "next_pass_at": job.next_run_time if job else None,
            "webhooks": self.webhooks.status() if self.webhooks is not None else None,
            "metrics": {"address": str(self.settings.metrics_addr) if self.settings.metrics_addr else None,
                        "serving": self.metrics_server is not None, "error": self.metrics_error},
            "console": {"address": str(self.settings.console_addr) if self.settings.console_addr else None,
                        "serving": self.console_stop is not None, "error": self.console_error},
        })

    def _serve_console(self) -> None:
        """The web console, read-only, on ``console_addr`` (off by default); a port in use is logged, not fatal."""
        address = self.settings.console_addr
        if address is None or self.console is None:
            return
        try:
            self.console_stop = self.console(self.store.location, address.host, address.port)
        except OSError as error:
            self.console_error = f"cannot listen on {address}: {error.strerror or error}"
            log.error("console: %s; the web console is NOT served (set console_addr to a free HOST:PORT or off, "
                      "and restart); reconciling goes on", self.console_error)
            return
        log.info("console: serving the web console (read-only) at http://%s/", address)


#: Starts the web console on (store location, host, port) on a thread; returns how to stop it; OSError if it cannot
#: listen. The entry point passes it in: the console is an entry point, above this layer.
ConsoleStarter = Callable[[Any, str, int], Callable[[], None]]


def run_daemon(*, interval: float | None, policy: ReconcilePolicy, handshake_fd: int | None,
               console: ConsoleStarter | None = None) -> int:
    """Take the store's daemon lock and reconcile until told to stop; the exit status.

    ``interval`` None: the configured ``reconcile_interval``. ``console`` serves
    the web console where ``console_addr`` says.
    """
    import psutil

    from agentledger.bootstrap import configured_location, open_store, store_opener
    from agentledger.infrastructure.config import home_dir
    from agentledger.infrastructure.settings import load_settings

    handshake = Handshake(handshake_fd)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s agentledger-daemon[%(process)d] %(levelname)s %(message)s"
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    _raise_file_limit()
    try:
        settings = load_settings()
        location = configured_location()
    except Exception as error:
        handshake.send({"ok": False, "error": str(error), "already_running": False})
        raise
    for warning in settings.warnings:
        log.warning("%s", warning)
    files = DaemonFiles.locate(location, home_dir())
    me = psutil.Process()
    try:
        store = open_store(location)
        lock = files.acquire({
            "pid": me.pid, "start_time": me.create_time(), "boot_time": psutil.boot_time(),
            "host": host_name(), "boot_id": boot_id(), "home": str(files.home),
            "started_at": datetime.now(timezone.utc).isoformat(),
        }, lease_seconds=lease_seconds(settings.host_heartbeat))
    except Exception as error:
        handshake.send({"ok": False, "error": str(error), "already_running": isinstance(error, DaemonAlreadyRunning)})
        raise
    try:
        daemon = Daemon(store, files, interval=interval or settings.reconcile_interval, policy=policy,
                        reopen=store_opener(location),
                        settings=settings, lock=lock, console=console)
        return daemon.run(handshake)
    finally:
        store.close()
        lock.release()


def lease_seconds(host_heartbeat: float) -> float:
    """How long the daemon's claim lasts through a pooler unless renewed: six host heartbeats (each renews
    it), at least :data:`DEFAULT_LEASE_SECONDS`, so that a slow pass or a short outage never loses it."""
    return max(DEFAULT_LEASE_SECONDS, 6 * host_heartbeat)


def _raise_file_limit() -> None:
    """One pidfd per unwatched session: allow as many open files as the system lets us."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
