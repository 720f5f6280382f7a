"""The supervisor: starts one session's process, keeps its fuse alive, records its end.

It runs as its own detached process (``python -m agentledger.entrypoints.supervise``),
so it outlives the CLI that launched it and needs no daemon. It is the one
component that knows the exact exit status, because it is the process's parent.

Life of a supervisor:

1. spawn ARGV in its own session and process group, output to the session log;
2. append ``Launched`` + ``FuseSet`` (or ``Launched`` + ``Stopped(spawn-failed)``)
   and tell the waiting CLI through the handshake pipe;
3. every TTL/3 (or ``--heartbeat-every``) append a ``Heartbeat`` extending the fuse, so one late beat never
   lets a live fuse lapse (and re-arming it if the machine slept past its expiry); for an agent
   adapter, first read the agent's native storage (``adapters/observer.py``) and, when a fact
   changed or the agent was active, append ``AgentObserved`` instead (activity counts as the beat);
4. with ``--timeout``: when it passes, append ``StopRequested(cause=timeout)`` and
   SIGTERM the process group, then SIGKILL after the termination grace;
5. the moment the process ends, a thread spools its exit status (even while the
   main loop is stuck in a write to a locked store); the main loop (pidfd) then
   reaps it and appends ``FuseCancelled`` + ``Stopped`` with the exit code or signal (reason ``timeout`` after step 4); a non-zero exit
   nobody asked for gets the agent's final error message (``failure_note``) as the stop's note;
6. with ``--on-stop``: claim and run the on-stop command, record its outcome
   (``application/stop_hooks.py``), then exit.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from agentledger.application.clock import reported_offset, utc_now
from agentledger.application.exits import record_observed_exit
from agentledger.application.launching import LaunchSpec
from agentledger.domain.durations import format_duration
from agentledger.domain.errors import SessionAlreadyStopped
from agentledger.domain.evidence import Evidence, Observation
from agentledger.domain.exits import ObservedExit, signal_name
from agentledger.domain.session import Session
from agentledger.domain.vocabulary import Component, SessionStatus, StopCause, StopReason
from agentledger.infrastructure.agent_env import agent_environment
from agentledger.infrastructure.config import home_dir
from agentledger.infrastructure.host import actor, boot_id, host_name
from agentledger.infrastructure.process_groups import signal_group
from agentledger.infrastructure.processes import ExitWatcher, identity_of
from agentledger.infrastructure.session_logs import append_note
from agentledger.infrastructure.spool import Spool
from agentledger.infrastructure.store_faults import classify

if TYPE_CHECKING:
    from agentledger.application.ledger import Ledger
    from agentledger.application.ports import HookRunner

log = logging.getLogger("agentledger.supervisor")

#: How long a supervisor keeps trying to record a stop while the store refuses writes (then the daemon does).
RECORD_STOP_PATIENCE = 3600.0
#: The pauses between those tries: doubling from the first, at most the last.
RECORD_RETRY_FIRST, RECORD_RETRY_MAX = 0.25, 4.0


class Supervisor:
    def __init__(self, ledger: Ledger, spec: LaunchSpec, report: Any) -> None:
        self.ledger = ledger
        self.spec = spec
        self.session_id = UUID(spec.session_id)
        self.report = report  # called once with the handshake dict for the CLI
        self.process: subprocess.Popen[bytes] | None = None
        self.stopped_elsewhere = False
        self.observer: Any = None  # an adapters.observer.Observer for agent adapters
        self.spool = Spool(home_dir())
        self._spool_lock = threading.Lock()
        self._spooled: tuple[str | None] | None = None  # (its summary,) once the exit is spooled
        self._exited_at: datetime | None = None  # when the process was seen to end
        self.waiting_since: datetime | None = None  # since when the store refuses this supervisor's writes
        self.forwarded: str | None = None  # a termination signal it was sent and passed on to the group

    def run(self) -> int:
        if self.spec.on_create and not self._set_up():
            return 0
        process = self._spawn()
        if process is not None:
            watcher = ExitWatcher(process)
            self._forward_termination_signals(process.pid)
            threading.Thread(target=self._spool_exit_when_it_happens, args=(process.pid,), daemon=True,
                             name="exit-spooler").start()
            try:
                returncode = self._watch(watcher)
            finally:
                watcher.close()
            self._record_exit(_observed(returncode))
            if self.spec.check:
                self._run_check()
        if self.spec.on_stop:
            self._run_stop_hook()
        return 0

    # -- start -----------------------------------------------------------------

    def _set_up(self) -> bool:
        """Run the launch's ``--on-create`` command in the session's directory, before the agent exists.

        Its output's tail goes to the session's log. If it fails, the session is
        recorded as launched and stopped (``setup-failed``, with how it ended),
        the launching CLI is told, and the agent is never started: False.
        """
        from agentledger.application.stop_hooks import outcome_words
        from agentledger.bootstrap import hook_runner

        spec = self.spec
        assert spec.on_create is not None
        runner = hook_runner()
        run = runner.run(spec.on_create, cwd=spec.cwd, env=self._command_environment(runner),
                         timeout=spec.on_create_timeout)
        words = outcome_words(run._asdict())
        self._log_to_session(f"--- on-create: {spec.on_create} ({words}) ---\n{run.output_tail}")
        if run.exit_code == 0 and not run.timed_out and run.error is None:
            return True
        session = Session.launch(session_id=self.session_id, pid=None, pid_start_time=None, boot_time=None,
                                 **spec.launched_fields(host=host_name(), boot_id=boot_id(), supervisor_pid=os.getpid()))
        session.record_stop(
            reason=StopReason.SETUP_FAILED,
            decided_by=actor(Component.SUPERVISOR.value),
            evidence=Evidence(Observation.SETUP_FAILED, setup={"command": spec.on_create, **run._asdict()}).as_dict(),
            note=f"--on-create {spec.on_create!r}: {words}",
        )
        self.ledger.save_retrying(session)
        self.report({"ok": False, "kind": "setup-failed",
                     "error": f"--on-create {spec.on_create!r} failed ({words}), so the agent was not started "
                              f"(recorded as session {spec.session_id[:12]}, setup-failed; output in {spec.log_path})"})
        return False

    def _run_check(self) -> None:
        """Run the launch's ``--check`` command in the worktree now that the session has stopped; record how it
        ended (``application/checks.py``). Best effort: the stop is what matters."""
        from agentledger.application.checks import run_check
        from agentledger.bootstrap import hook_runner

        spec = self.spec
        assert spec.check is not None
        runner = hook_runner()
        try:
            run_check(self.ledger, runner, spec.session_id, command=spec.check, cwd=spec.cwd,
                      env=self._command_environment(runner), note=self._log_to_session)
        except Exception as error:  # noqa: BLE001 - the session's stop is recorded; its check is a courtesy
            log.error("check not run or not recorded: %s", error)

    def _command_environment(self, runner: HookRunner) -> dict[str, str]:
        """A command's around the agent (``--on-create``, ``--check``): the launch's environment (else what a hook
        inherits from this process) and the session's variables."""
        from agentledger.application.checks import command_environment

        spec = self.spec
        return command_environment(spec.env if spec.env is not None else runner.inherited_environment(),
                                   spec.session_id, spec.cwd)

    def _log_to_session(self, text: str) -> None:
        """Append a note of the supervisor's to the session's output log (best effort)."""
        append_note(self.spec.log_path, text)

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        spec = self.spec
        # PWD too: agents (opencode) take their project directory from it, and the inherited one is the CLI's.
        base = agent_environment(os.environ) if spec.env is None else spec.env
        env = dict(base, AGENTLEDGER_SESSION_ID=spec.session_id, PWD=spec.cwd)
        fd = os.open(spec.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        stdin_fd: int | None = None
        try:
            if spec.stdin_path is not None:
                stdin_fd = os.open(spec.stdin_path, os.O_RDONLY)
            spawned_at = time.time()  # this run's start on the agent's own clock: older native records are not ours
            process = subprocess.Popen(
                spec.argv,
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL if stdin_fd is None else stdin_fd,
                stdout=fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session and process group: stop signals the group
                env=env,
            )
        except OSError as error:
            self._record_spawn_failure(error)
            return None
        finally:
            os.close(fd)
            if stdin_fd is not None:
                os.close(stdin_fd)
        self.process = process
        identity = identity_of(process.pid)
        try:
            self.ledger.launch(
                session_id=self.session_id,
                fuse_ttl=spec.fuse_ttl,
                fuse_set_by=Component.SUPERVISOR.value,
                pid=process.pid,
                pid_start_time=identity.start_time,
                boot_time=identity.boot_time,
                **spec.launched_fields(host=host_name(), boot_id=boot_id(), supervisor_pid=os.getpid()),
            )
        except Exception as error:
            # A session we cannot record would run unwatched and unexplained: end it.
            signal_group(process.pid, signal.SIGKILL)
            process.wait()
            self.report({"ok": False, "error": f"could not record the launch: {error}", "kind": "store"})
            raise
        try:  # now, while there is space: the exit can then be spooled on a full disk
            self.spool.reserve(spec.session_id)
        except OSError as error:
            log.warning("no spool slot reserved (%s): the exit will need new space to be spooled", error)
        self.report({"ok": True, "session_id": spec.session_id, "pid": process.pid})
        self.observer = _observer_for(spec, process.pid, identity.start_time, spawned_at)
        return process

    def _record_spawn_failure(self, error: OSError) -> None:
        session = Session.launch(
            session_id=self.session_id,
            pid=None,
            pid_start_time=None,
            boot_time=None,
            **self.spec.launched_fields(host=host_name(), boot_id=boot_id(), supervisor_pid=os.getpid()),
        )
        session.record_stop(
            reason=StopReason.SPAWN_FAILED,
            decided_by=actor(Component.SUPERVISOR.value),
            evidence=Evidence(Observation.SPAWN_FAILED, error=error.strerror or str(error), errno=error.errno,
                              filename=str(error.filename)).as_dict(),
            note=str(error),
        )
        self.ledger.save_retrying(session)
        self.report({"ok": False, "kind": "spawn-failed",
                     "error": _spawn_error_text(self.spec.argv[0], error, self.spec.cwd)})

    def _forward_termination_signals(self, pgid: int) -> None:
        """A supervisor told to terminate passes it on, then still records the real exit."""

        def forward(signum: int, _frame: Any) -> None:
            self.forwarded = signal_name(signum)  # recorded with the exit: why says who ended it
            signal_group(pgid, signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    # -- watch -----------------------------------------------------------------

    def _watch(self, watcher: ExitWatcher) -> int:
        """Heartbeat, and enforce the timeout, until the process ends; return its status."""
        interval = self.spec.heartbeat_interval
        started = time.monotonic()
        next_beat = started + interval
        timeout_at = started + self.spec.timeout if self.spec.timeout else math.inf
        kill_at = math.inf
        while True:
            returncode = watcher.wait(min(next_beat, timeout_at, kill_at) - time.monotonic())
            if returncode is not None:
                return returncode
            now = time.monotonic()
            if now >= timeout_at:
                timeout_at = math.inf
                if self._terminate_for_timeout(signal.SIGTERM):
                    kill_at = now + self.spec.termination_grace
            elif now >= kill_at:
                kill_at = math.inf
                self._terminate_for_timeout(signal.SIGKILL)
            if now >= next_beat:
                if not self.stopped_elsewhere and not self._observe():
                    self._heartbeat()
                next_beat = max(next_beat + interval, time.monotonic() + interval / 2)

    def _heartbeat(self) -> None:
        try:
            self.ledger.change(self.session_id, lambda s: s.heartbeat(  # from its cache: Ledger.change says how
                source=Component.SUPERVISOR.value, now=utc_now(), clock_offset=reported_offset()))
        except SessionAlreadyStopped:
            log.warning("session was stopped by another component; supervising without heartbeats")
            self.stopped_elsewhere = True
        except Exception as error:  # whatever the store says: the next beat will try again
            self._store_refused("heartbeat", error)
        else:
            self._store_accepts()

    def _store_refused(self, what: str, error: Exception) -> None:
        """A write the store refused (locked, unreachable, full, read-only, ...): say so, and keep watching.

        The supervisor never dies of it: the agent would be left unwatched and
        its exit lost. ``why`` and ``daemon status`` read the note in the slot.
        """
        fault = classify(error)
        if self.waiting_since is None:
            self.waiting_since = utc_now()
        if fault is None:  # not the store's: a bug, worth its traceback in the log
            log.error("%s not recorded: %s", what, error, exc_info=error)
        else:
            log.warning("%s not recorded: the store is %s (%s)", what, fault.state, _first_line(error))
        with self._spool_lock:
            if self._spooled is None:
                self.spool.note(self.session_id.hex, {
                    "waiting_since": self.waiting_since.isoformat(), "fault": fault.value if fault else "error",
                    "error": _first_line(error)[:300], "supervisor_pid": os.getpid()})

    def _store_accepts(self) -> None:
        if self.waiting_since is not None:
            log.info("the store accepts writes again (refused them since %s)", self.waiting_since.isoformat())
            self.waiting_since = None
            with self._spool_lock:
                if self._spooled is None:
                    self.spool.note(self.session_id.hex, None)

    def _observe(self, *, final: bool = False) -> bool:
        """Record what the agent's own storage shows, if anything changed; True if that was the beat too.

        Fresh native activity is evidence of life, so an ``AgentObserved`` with
        it extends the fuse and replaces this interval's ``Heartbeat``; facts
        that changed without activity are recorded and the heartbeat follows.
        """
        if self.observer is None:
            return False
        observation = self.observer.poll(final=final)
        if not observation.facts and not observation.fresh_activity:
            return False

        def observe(session: Session) -> bool:
            return session.observe_agent(facts=observation.facts, heartbeat=observation.fresh_activity,
                                         source=f"adapter:{self.spec.adapter}", now=utc_now())

        try:
            recorded = self.ledger.change(self.session_id, observe)
        except SessionAlreadyStopped:
            log.warning("session was stopped by another component; supervising without heartbeats")
            self.stopped_elsewhere = True
            return True
        except Exception as error:
            self._store_refused("agent facts", error)
            return False
        self._store_accepts()
        return bool(recorded) and observation.fresh_activity

    def _terminate_for_timeout(self, signum: int) -> bool:
        """Record the timeout's stop request and signal the group; False if a user's stop came first."""
        assert self.process is not None and self.spec.timeout is not None
        name = signal_name(signum)

        def request(session: Session) -> bool:
            requests = session.stop_requests
            if session.status == SessionStatus.STOPPING.value and requests[-1].get("cause") != StopCause.TIMEOUT:
                return False
            session.request_stop(
                requested_by=Component.SUPERVISOR.value,
                signal=name,
                grace=self.spec.termination_grace if signum != signal.SIGKILL else 0.0,
                note=f"timeout {format_duration(self.spec.timeout or 0.0)} passed",
                cause=StopCause.TIMEOUT,
            )
            return True

        try:
            if not self.ledger.change(self.session_id, request):
                return False
        except SessionAlreadyStopped:
            return False
        except Exception as error:  # a timeout is a promise: keep it even if the log is unwritable
            self._store_refused("the timeout's stop request (signalling anyway)", error)
        log.info("timeout passed: %s to the process group", name)
        signal_group(self.process.pid, signum)
        return True

    # -- end -------------------------------------------------------------------

    def _record_exit(self, observed: ObservedExit) -> None:
        """Spool the exit first, then append it, retrying whatever the store says, for up to an hour.

        A supervisor that dies (or gives up) meanwhile loses nothing: the exit
        is in the spool, and the host's daemon records it. Retries back off to
        ``RECORD_RETRY_MAX``, so the stop lands within seconds of the store
        accepting writes again, with the exit time it really had.
        """
        decided_by = actor(Component.SUPERVISOR.value)
        pid = self.process.pid if self.process else None
        summary = self._spool_exit(observed)  # usually done already, by the exit spooler
        exited_at = self._exited_at
        sid = self.session_id.hex
        if self.observer is not None:  # the last facts (final tokens, cost) before the stop closes the log
            self._observe(final=True)
        deadline = time.monotonic() + RECORD_STOP_PATIENCE
        pause = RECORD_RETRY_FIRST
        while True:
            try:
                self.ledger.change(
                    self.session_id,
                    lambda s: record_observed_exit(s, observed, pid=pid, decided_by=decided_by, summary=summary,
                                                   exited_at=exited_at, forwarded=self.forwarded))
                break
            except SessionAlreadyStopped:
                break
            except Exception as error:
                self._store_refused("the exit", error)
                if time.monotonic() > deadline:
                    log.error("the exit is still not recorded after %s; it stays in the spool, where the host's "
                              "daemon will record it", format_duration(RECORD_STOP_PATIENCE))
                    return
                time.sleep(pause)
                pause = min(pause * 2, RECORD_RETRY_MAX)
        self._store_accepts()
        self.spool.take(sid)

    def _spool_exit_when_it_happens(self, pid: int) -> None:
        """A thread: the moment the process ends, spool its exit status, whatever the main loop is doing.

        The main loop can be stuck in a write to a locked store for longer than
        the fuse lasts; a supervisor killed then would take the exit it never
        collected with it. ``waitid(WNOWAIT)`` reads the status without
        reaping the process, so the main loop still reaps and records it.
        """
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:  # the main loop reaped it first: it spools the exit itself
            return
        if info is None:
            return
        returncode = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
        self._spool_exit(_observed(returncode))

    def _spool_exit(self, observed: ObservedExit) -> str | None:
        """Put the exit in the spool once (from a reconciler's view it is then recorded); its summary."""
        with self._spool_lock:
            if self._spooled is not None:
                return self._spooled[0]
            self._exited_at = utc_now()
            summary = self._exit_summary(observed)
            record = {"returncode": observed.returncode, "signal_name": observed.signal_name,
                      "pid": self.process.pid if self.process else None, "supervisor": actor(Component.SUPERVISOR.value),
                      "observed_at": self._exited_at.isoformat(), "summary": summary}
            if self.waiting_since is not None:
                record["store_refused_since"] = self.waiting_since.isoformat()
            try:
                self.spool.put(self.session_id.hex, record)
            except OSError as error:  # the append is what matters; the spool is the fallback
                log.error("exit not spooled (%s)", error)
            self._spooled = (summary,)
            return summary

    def _exit_summary(self, observed: ObservedExit) -> str | None:
        """The agent's final error message from its output (a login failure, say), for a failed run."""
        from agentledger.bootstrap import agents

        try:
            return agents().for_session(self.spec.adapter).exit_summary(self.spec.log_path, observed.exit_code)
        except Exception as error:  # the stop matters; its summary is a courtesy
            log.warning("no exit summary: %s", error)
            return None

    def _run_stop_hook(self) -> None:
        """Whoever recorded the stop, the supervisor is on the session's host and runs its hook first."""
        from agentledger.application.stop_hooks import outcome_words, run_stop_hook
        from agentledger.bootstrap import hook_runner, this_machine

        try:
            hook = run_stop_hook(self.ledger, self.session_id, claimed_by=actor(Component.SUPERVISOR.value),
                                 machine=this_machine(), runner=hook_runner())
        except Exception as error:  # the daemon runs a hook nobody claimed; a claimed one is not run twice
            log.error("on-stop hook not run or not recorded: %s", error)
            return
        if hook is not None and hook.outcome is not None:
            log.info("on-stop hook ran: %s", outcome_words(hook.outcome))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _observed(returncode: int) -> ObservedExit:
    """A Popen-style return code (-N: killed by signal N) as the exit a supervisor saw."""
    return ObservedExit(returncode, signal_name(-returncode) if returncode < 0 else None)


def _observer_for(spec: LaunchSpec, pid: int, start_time: float | None, spawned_at: float) -> Any:
    """An observer of the agent's native storage, or None for an adapter that has none (``command``)."""
    from agentledger.bootstrap import agents
    from agentledger.domain.vocabulary import NativeIdSource

    known = agents()
    adapter = known.for_session(spec.adapter)
    if adapter.binary is None:  # a plain command keeps no storage of its own
        return None
    source = NativeIdSource.RESUMED if spec.resumed_from else NativeIdSource.PINNED
    return known.observer(adapter, cwd=spec.cwd, started_at=start_time or spawned_at, pid=pid,
                          hint=spec.native_session_id, hint_source=source.value, output_path=spec.log_path,
                          argv=spec.argv, run_started_at=spawned_at)


def _spawn_error_text(binary: str, error: OSError, cwd: str | None = None) -> str:
    if os.path.isdir(os.path.join(cwd or "", binary)) and os.sep in binary:  # exec says EACCES for a directory
        return f"cannot launch {binary!r}: it is a directory"
    if isinstance(error, FileNotFoundError):
        return f"cannot launch {binary!r}: no such file or command"
    if isinstance(error, PermissionError):
        return f"cannot launch {binary!r}: permission denied (not executable?)"
    return f"cannot launch {binary!r}: {error.strerror or error}"
