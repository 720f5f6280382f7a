"""The reconciler as a Hypothesis state machine, over a real store (SQLite and PostgreSQL) and real processes.

Each example gets its own store (a copy of a migrated SQLite file, or the
test's PostgreSQL schema emptied), a fake clock, and real
``sleep`` children. Rules launch sessions (with or without a fuse; a few whose
spawn failed, with no PID), heartbeat, set and cancel fuses, request stops, kill
processes (reaped, or left zombies), let a supervisor record an exit, move the
fake clock, and run reconcile passes. Some passes race: through the reconciler's
``before_append`` seam a *second* connection to the same file appends a
heartbeat, a fuse or a supervisor's stop to the very session being decided, or
runs a whole pass of a second reconciler, between the decision and its
compare-and-set save.

The ground truth is the test's own model, not agentledger's: which processes
really live (the test kills them) and each fuse's expiry, computed from the
fake times. Only values computed from ``now`` reach the rule here: event
timestamps (``created_on``, ``last_heartbeat_at``, ``StopRequested.at``) are
the wall clock and the model never looks at them; no session has a master
timeout (its deadline is ``created_on`` + timeout: wall clock against the
reconciler's ``clock``).

Checked after every step:

* a session has at most one ``Stopped``, and nothing after it;
* each pass appends exactly what the model says, as of the fake now:
  ``Stopped`` for every session not stopped whose process is dead and whose fuse
  is not live (reason ``user`` if a stop was requested, else ``reconciled``),
  ``FuseExpired`` (at the model's expiry) for every living process whose set
  fuse lapsed, and nothing else; a raced save always failed and the session was
  judged again;
* the aggregates agree with the model (who stopped it, fuse armed, expiry,
  lapse recorded); the read models (``sessions``, ``fuses``) agree with the
  aggregates, as of the version they have reached (nothing here catches them
  up but the reconciler: catching up for it would hide its lapses).

At the end (teardown): past every fuse, a pass stops every dead session nobody
else stopped and no living one, a second pass appends nothing, and the caught-up
read models equal the aggregates.

A smaller property covers the mass-stop guard under its default policy.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import count
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from agentledger.application.ports import Store
from agentledger.application.reconciling import Outcome, Reconciler, load_guard
from agentledger.bootstrap import this_machine
from agentledger.domain.errors import NoFuse, SessionAlreadyStopped
from agentledger.domain.liveness import ProcessIdentity
from agentledger.domain.reconciliation import Decision, ReconcilePolicy
from agentledger.domain.session import Session
from agentledger.domain.vocabulary import FuseState, StopReason
from agentledger.infrastructure.config import PostgresLocation, StoreLocation
from agentledger.infrastructure.host import boot_id, host_name
from agentledger.infrastructure.processes import identity_of
from agentledger.infrastructure.settings import store_location
from agentledger.infrastructure.store import open_store
from agentledger.projections.catchup import catch_up

MAX_SESSIONS = 5
#: Whole and half seconds only: exact in the read model's epoch floats, so the
#: boundary ``expires_at == now`` (not live) is hit exactly, from both sides.
TTLS = st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0])
STEPS = st.sampled_from([0.5, 1.0, 2.0, 3.0, 6.0])
#: A whole second, years from the real one: nothing may mix the fake clock with the wall clock.
EPOCH = datetime(2031, 3, 4, 5, 6, 7, tzinfo=timezone.utc)

SUPERVISOR = "supervisor"
RECONCILER = "reconciler"

SETTINGS = settings(
    max_examples=250,
    stateful_step_count=30,
    deadline=None,
    database=None,  # leave no .hypothesis directory in the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


#: On PostgreSQL an example costs more (a server round trip per statement): fewer of them.
POSTGRES_SETTINGS = settings(SETTINGS, max_examples=40)

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated store per module (migrations are slow-ish); every example runs on a copy."""
    path = tmp_path_factory.mktemp("template") / "ledger.db"
    with pytest.MonkeyPatch.context() as patch:  # before any test's home: never the user's (its stores.json)
        patch.setenv("AGENTLEDGER_HOME", str(path.parent / "home"))
        open_store(StoreLocation(path=path)).close()
    return path


@pytest.fixture
def template(backend: str, sqlite_template: Path, home: Path) -> Path | PostgresLocation:
    """What each example's store comes from: a SQLite file to copy, or this test's PostgreSQL schema to empty."""
    if backend == "sqlite":
        return sqlite_template
    location = store_location()
    open_store(location).close()
    return location


def copy_store(template: Path | PostgresLocation, directory: Path) -> StoreLocation | PostgresLocation:
    directory.mkdir(parents=True)
    if isinstance(template, PostgresLocation):
        return emptied(template)
    for suffix in ("", "-wal", "-shm"):
        source = template.with_name(template.name + suffix)
        if source.exists():
            shutil.copy(source, directory / ("ledger.db" + suffix))
    return StoreLocation(path=directory / "ledger.db")


def emptied(location: PostgresLocation) -> PostgresLocation:
    """The schema with every table emptied and its log positions starting again at 1."""
    from agentledger.infrastructure.postgres_store import connect

    tables = ("agentledger_events", "agentledger_snapshots", "sessions", "fuses", "hosts", "projection_tracking")
    connection = connect(location)
    try:
        connection.execute(f"TRUNCATE {', '.join(f'{location.schema}.{t}' for t in tables)} RESTART IDENTITY")
    finally:
        connection.close()
    return location


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["sleep", "600"], start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def record_session(store: Store, session_id: UUID, identity: ProcessIdentity | None, name: str,
                   fuse: tuple[float, datetime] | None) -> Session:
    """Launched (and FuseSet at the fake ``now``) in one save, as ``Ledger.launch`` would with the real clock.

    With no ``identity``, the spawn failed: no PID.
    """
    session = Session.launch(
        session_id=session_id, argv=["sleep", "600"], cwd="/", adapter="command", name=name, model=None,
        prompt=None, group=None, labels={}, host=host_name(), boot_id=boot_id(),
        pid=identity.pid if identity else None, pid_start_time=identity.start_time if identity else None,
        boot_time=identity.boot_time if identity else None, supervisor_pid=None, log_path=None, launched_by="test",
    )
    if fuse is not None:
        ttl, now = fuse
        session.set_fuse(ttl=ttl, set_by=SUPERVISOR, now=now)
    store.ledger.save_retrying(session)
    return session


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()  # reaped: the PID names nothing now (or, later, someone else)


@dataclass(eq=False)
class Sim:
    """The model of one session: the truth as the test knows it, independent of agentledger."""

    name: str
    id: UUID
    process: subprocess.Popen[bytes]
    alive: bool = True
    armed: bool = False  # a fuse was set and not cancelled (it may have lapsed, its lapse may be recorded)
    ttl: float | None = None
    expires: datetime | None = None
    expiry_recorded: bool = False  # the reconciler recorded this fuse's lapse (FuseExpired) since it was armed
    stop_requested: bool = False
    impostor: bool = False  # ``process`` is not the session's: it only has the PID the session's had
    stopped_by: str | None = None
    seen: int = 0  # how many of its events were accounted for

    def __repr__(self) -> str:  # how Hypothesis names it in a falsifying example
        return self.name

    def fuse_live(self, now: datetime) -> bool:
        return self.armed and self.expires is not None and self.expires > now

    # The domain's fuse rules, mirrored on the model's own times.
    def arm(self, ttl: float, now: datetime) -> None:
        self.armed, self.ttl, self.expires, self.expiry_recorded = True, ttl, now + timedelta(seconds=ttl), False

    def beat(self, now: datetime) -> None:
        """A heartbeat extends a set or lapsed fuse to now + TTL (never shortens it); a cancelled one stays so."""
        if self.armed:
            assert self.ttl is not None and self.expires is not None
            self.expires = max(self.expires, now + timedelta(seconds=self.ttl))
            self.expiry_recorded = False

    def cancel(self) -> None:
        self.armed = False

    def die(self, *, reap: bool = True) -> None:
        """SIGKILL; with ``reap`` its status is collected, else it is left a zombie (until reaped later)."""
        if self.impostor:
            return  # the session's process is long gone; the one with its PID is none of its business
        if reap:
            kill(self.process)
        elif self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOWAIT)  # it has ended; still unreaped
        self.alive = False


class ReconcileMachine(RuleBasedStateMachine):
    sessions = Bundle("sessions")

    def __init__(self, template: Path | PostgresLocation, directory: Path) -> None:
        super().__init__()
        self.dir = directory
        location = copy_store(template, directory)
        self.sims: list[Sim] = []
        self.now = EPOCH
        self.store = open_store(location)
        self.other = open_store(location)  # a second connection: another process appending meanwhile
        self.race: tuple[str, float] | None = None  # what the next before_append injects
        self.raced: list[tuple[UUID, str]] = []
        self.race_error: BaseException | None = None
        self.rival_report: Any = None  # the racing reconciler's pass, if one ran
        self.in_pass = False
        self.reconciler = Reconciler(
            self.store, machine=this_machine(),
            policy=ReconcilePolicy(mass_stop_share=1.0),  # the guard never holds a stop here
            clock=lambda: self.now,
            before_append=self._before_append,
        )

    # -- rules -------------------------------------------------------------------

    @initialize(target=sessions, ttls=st.lists(st.none() | TTLS, max_size=3))
    def launch_some(self, ttls: list[float | None]) -> Any:
        return multiple(*(self.launch(ttl) for ttl in ttls))

    @precondition(lambda self: len(self.sims) < MAX_SESSIONS)
    @rule(target=sessions, ttl=st.none() | TTLS, pid=st.sampled_from(["own", "own", "own", "none", "reused"]))
    def launch(self, ttl: float | None, pid: str = "own") -> Sim:
        """A launch. ``none``: its spawn failed (no PID) and the launcher died before recording that.
        ``reused``: its process ended long ago and another one (the test's ``sleep``) has its PID now."""
        process = sleeper()
        sim = Sim(name=f"s{len(self.sims)}", id=uuid4(), process=process)
        self.sims.append(sim)  # at once, so teardown reaps it whatever happens next
        identity = identity_of(process.pid) if pid != "none" else None
        if identity is not None and pid == "reused":
            identity = ProcessIdentity(pid=identity.pid, start_time=identity.start_time - 30,  # started 30 s later
                                       boot_time=identity.boot_time, host=identity.host, boot_id=identity.boot_id)
        session = record_session(self.store, sim.id, identity, sim.name, None if ttl is None else (ttl, self.now))
        if pid == "none":
            sim.die()  # a stand-in: no process of this session ever ran
        elif pid == "reused":
            sim.alive, sim.impostor = False, True  # the session's process is dead; the one with its PID lives on
        if ttl is not None:
            sim.arm(ttl, self.now)
        sim.seen = session.version
        return sim

    @rule(sim=sessions, other=st.booleans())
    def heartbeat(self, sim: Sim, other: bool) -> None:
        self._command(sim, lambda s: s.heartbeat(source="test", now=self.now), lambda: sim.beat(self.now),
                      self.other if other else self.store)

    @rule(sim=sessions, ttl=TTLS, other=st.booleans())
    def set_fuse(self, sim: Sim, ttl: float, other: bool) -> None:
        self._command(sim, lambda s: s.set_fuse(ttl=ttl, set_by=SUPERVISOR, now=self.now),
                      lambda: sim.arm(ttl, self.now), self.other if other else self.store)

    @rule(sim=sessions)
    def cancel_fuse(self, sim: Sim) -> None:
        # Only a set fuse can be cancelled: not one never set, cancelled, or whose lapse was recorded.
        cancellable = sim.armed and not sim.expiry_recorded
        try:
            self._command(sim, lambda s: s.cancel_fuse(by="test", reason="test"), sim.cancel)
        except NoFuse:
            assert not cancellable, f"{sim}: NoFuse, but the model has a set fuse until {sim.expires}"
        else:
            assert cancellable or sim.stopped_by, f"{sim}: cancelled a fuse the model says is not set"

    @rule(sim=sessions, signal_it=st.booleans())
    def request_stop(self, sim: Sim, signal_it: bool) -> None:
        """``agentledger stop``: StopRequested, then (maybe) the process group ends."""

        def requested() -> None:
            sim.stop_requested = True

        self._command(sim, lambda s: s.request_stop(requested_by="cli", signal="SIGTERM", grace=5.0, note=None),
                      requested)
        if signal_it:
            sim.die()

    @precondition(lambda self: any(s.alive for s in self.sims))
    @rule(sim=sessions, reap=st.booleans())
    def process_dies(self, sim: Sim, reap: bool) -> None:
        """Its process ends: reaped (gone, its PID free), or a zombie nobody has reaped yet."""
        sim.die(reap=reap)

    @precondition(lambda self: any(not s.alive for s in self.sims))
    @rule(sim=sessions)
    def supervisor_records_exit(self, sim: Sim) -> None:
        """The supervisor reaps its process and records the exit: maybe after the reconciler did."""
        if not sim.alive:
            sim.die()
            self._record_exit(self.store, sim)

    @rule(seconds=STEPS | st.just("past every fuse"))
    def advance_clock(self, seconds: float | str) -> None:
        if isinstance(seconds, str):
            self.now = self._past_every_fuse()
        else:
            self.now += timedelta(seconds=seconds)

    @rule()
    def reconcile(self) -> None:
        self._pass()

    @precondition(lambda self: any(self._due()))
    @rule(kind=st.sampled_from(["heartbeat", "fuse", "stop", "reconciler"]), ttl=TTLS)
    def reconcile_racing(self, kind: str, ttl: float) -> None:
        """A pass during which another connection appends to the session being decided.

        ``reconciler``: a whole pass of a second reconciler (another daemon, or ``agentledger
        reconcile``) on the other connection, at the same instant.
        """
        self.race = (kind, ttl)
        self._pass()

    # -- invariants --------------------------------------------------------------

    @invariant()
    def log_agrees_with_the_model(self) -> None:
        # No catch-up here: that is the reconciler's own job, and doing it for it would hide its lapses.
        self._check_log(caught_up=False)

    # -- teardown ----------------------------------------------------------------

    def teardown(self) -> None:
        try:
            if sys.exc_info()[1] is None:  # if a step failed, report that, not one of its consequences
                self._settle()
        finally:
            for sim in self.sims:
                kill(sim.process)
            self.reconciler.close()
            self.other.close()
            self.store.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------

    def _command(self, sim: Sim, command: Callable[[Session], Any], applied: Callable[[], None],
                 store: Store | None = None) -> None:
        """Apply one session command; the model predicts whether it is refused as stopped already."""
        try:
            (store or self.store).ledger.change(sim.id, command)
        except SessionAlreadyStopped:
            assert sim.stopped_by is not None, f"{sim}: SessionAlreadyStopped, but the model has it not stopped"
            return
        assert sim.stopped_by is None, f"{sim}: a command was accepted after the session stopped"
        applied()
        self._accounted(sim)

    def _record_exit(self, store: Store, sim: Sim) -> None:
        """The supervisor records the exit of the process it reaped (someone may have stopped it first)."""
        assert not sim.alive

        def record(s: Session) -> None:
            s.record_stop(reason=StopReason.EXITED, exit_code=sim.process.returncode,
                          decided_by={"component": SUPERVISOR}, evidence={})

        try:
            store.ledger.change(sim.id, record)
        except SessionAlreadyStopped:
            assert sim.stopped_by is not None, f"{sim}: SessionAlreadyStopped, but the model has it not stopped"
            return
        assert sim.stopped_by is None, f"{sim}: a second stop was accepted"
        sim.stopped_by = SUPERVISOR
        self._accounted(sim)

    def _accounted(self, sim: Sim) -> None:
        """The test's own appends need no judging; during a pass, ``_pass`` sorts them out."""
        if not self.in_pass:
            sim.seen = len(self.store.ledger.session_events(sim.id))

    def _before_append(self, session_id: UUID, decision: Decision) -> None:
        if self.race is None:
            return
        (kind, ttl), self.race = self.race, None  # once per pass: the re-judged save must be left to land
        sim = next(s for s in self.sims if s.id == session_id)
        self.raced.append((session_id, kind))
        try:
            if kind == "heartbeat":
                self._command(sim, lambda s: s.heartbeat(source="race", now=self.now), lambda: sim.beat(self.now),
                              self.other)
            elif kind == "fuse":
                self._command(sim, lambda s: s.set_fuse(ttl=ttl, set_by="race", now=self.now),
                              lambda: sim.arm(ttl, self.now), self.other)
            elif kind == "stop":  # the process ends now, and its supervisor records the exit first
                sim.die()
                self._record_exit(self.other, sim)
            else:
                rival = Reconciler(self.other, machine=this_machine(), policy=self.reconciler.policy, clock=lambda: self.now)
                try:
                    self.rival_report = rival.run_pass()
                finally:
                    rival.close()
        except BaseException as error:  # the reconciler reports a session's errors as "failed": keep ours
            self.race_error = error
            raise

    def _check_log(self, *, caught_up: bool) -> None:
        """The log, the aggregates, the model and the read model agree.

        The read model may lag the log: each row must then equal the session as of the row's version.
        With ``caught_up`` it is caught up first and must equal the latest.
        """
        if caught_up:
            catch_up(self.store)
        rows = {r["id"]: r for r in self.store.db.execute("SELECT * FROM sessions")}
        assert set(rows) <= {s.id.hex for s in self.sims}
        for sim in self.sims:
            events = self.store.ledger.session_events(sim.id)
            kinds = [type(e).__name__ for e in events]
            assert kinds.count("Stopped") <= 1, f"{sim}: {kinds}"
            assert "Stopped" not in kinds[:-1], f"{sim}: events after Stopped: {kinds}"
            session = self.store.ledger.session(sim.id)
            assert session.version == len(events)
            stopper = session.stop["decided_by"].get("component") if session.stop else None
            assert stopper == sim.stopped_by, f"{sim}: stopped by {stopper!r}, the model says {sim.stopped_by!r}"
            assert not (stopper == RECONCILER and sim.alive), f"{sim}: the reconciler stopped a living process"
            if not session.is_stopped:
                armed = session.fuse_state in (FuseState.SET.value, FuseState.EXPIRED.value)
                assert armed == sim.armed, f"{sim}: fuse {session.fuse_state}, the model has armed={sim.armed}"
                assert (session.fuse_state == FuseState.EXPIRED.value) == sim.expiry_recorded, (
                    f"{sim}: fuse {session.fuse_state}, the model has expiry_recorded={sim.expiry_recorded}")
                if sim.armed:
                    assert session.fuse_expires_at == sim.expires, f"{sim}: {session.fuse_expires_at} != {sim.expires}"
                    assert session.fuse_ttl == sim.ttl
                assert bool(session.stop_requests) == sim.stop_requested
            row = rows.get(sim.id.hex)
            if row is None:
                assert not caught_up, f"{sim}: not in the read model after a catch-up"
                continue
            if caught_up:
                assert row["version"] == session.version, f"{sim}: read model at v{row['version']} of {session.version}"
            then = session if row["version"] == session.version else self.store.ledger.repository.get(
                sim.id, version=row["version"])
            assert row["status"] == then.status, f"{sim}: read model {row['status']}, aggregate {then.status}"
            assert row["fuse_state"] == then.fuse_state, (
                f"{sim}: read model fuse {row['fuse_state']}, aggregate {then.fuse_state}")
            expires = _at(row["fuse_expires_at"])
            assert expires == then.fuse_expires_at, (
                f"{sim}: read model fuse to {expires}, aggregate {then.fuse_expires_at}")
            # The fuses read model: the session's current fuse, if set or lapsed, is its one open row.
            open_fuses = [(f["state"], _at(f["expires_at"])) for f in self.store.db.execute(
                "SELECT state, expires_at FROM fuses WHERE session_id = ? AND state IN ('set', 'expired')",
                (sim.id.hex,))]
            current = [(then.fuse_state, then.fuse_expires_at)] if then.fuse_state in (
                FuseState.SET.value, FuseState.EXPIRED.value) else []
            assert open_fuses == current, f"{sim}: open rows in fuses {open_fuses}, the session's fuse {current}"

    def _due(self) -> tuple[set[UUID], set[UUID]]:
        """What a pass must append now, per the model: the sessions to stop, and the lapses to record."""
        unwatched = [s for s in self.sims if s.stopped_by is None and not s.fuse_live(self.now)]
        return ({s.id for s in unwatched if not s.alive},
                {s.id for s in unwatched if s.alive and s.armed and not s.expiry_recorded})

    def _past_every_fuse(self) -> datetime:
        return max([self.now, *(s.expires for s in self.sims if s.armed and s.expires)]) + timedelta(seconds=1)

    def _pass(self) -> list[Any]:
        """One reconcile pass, checked against the model as of the (fake, frozen) now.

        The model predicts the pass exactly. A session raced through
        ``before_append`` may end either way (the race's append comes first);
        the invariant and the model judge what landed on it.
        """
        names = {s.id: s.name for s in self.sims}
        to_stop, to_expire = self._due()
        # When the next pass is due with no new event: the first set fuse still to lapse (no timeouts here).
        next_due = min((s.expires for s in self.sims if s.stopped_by is None and s.armed and not s.expiry_recorded
                        and s.expires is not None and s.expires > self.now), default=None)
        racing = self.race is not None
        self.raced, self.race_error, self.in_pass, self.rival_report = [], None, True, None
        try:
            report = self.reconciler.run_pass()
        finally:
            self.race, self.in_pass = None, False
        if self.race_error is not None:
            raise self.race_error
        judged = {UUID(j.decision.session_id): j for j in report.judged}
        assert len(judged) == len(report.judged)
        assert report.next_due == next_due, f"next pass due at {report.next_due}, the model says {next_due}"
        for j in report.judged:
            assert j.outcome in (Outcome.KEPT, Outcome.STOPPED, Outcome.FUSE_EXPIRED), j.as_json()

        raced = {session_id for session_id, _ in self.raced}
        # Where another writer appended first, the outcome may go either way: the invariants judge it.
        # A rival reconciler is held to the same rule as this one, so its session is predicted too.
        excused = {session_id for session_id, kind in self.raced if kind != "reconciler"}
        if self.rival_report is not None:
            for j in self.rival_report.judged:
                assert j.outcome in (Outcome.KEPT, Outcome.STOPPED, Outcome.FUSE_EXPIRED), j.as_json()
        if racing:
            assert bool(raced) == bool(to_stop | to_expire), (
                f"the race ran on {[names[i] for i in raced]}; sessions due: {[names[i] for i in to_stop | to_expire]}")
            assert raced <= to_stop | to_expire, f"an append was attempted on {[names[i] for i in raced]}, not due"
        for session_id, kind in self.raced:
            j = judged[session_id]
            assert j.attempts >= 2, (
                f"{names[session_id]}: a {kind} raced the save of {j.decision.action.value}, "
                f"yet that save landed on its first attempt: {j.as_json()}")

        appended: list[Any] = []
        for sim in self.sims:
            events = self.store.ledger.session_events(sim.id)
            new, sim.seen = events[sim.seen:], len(events)
            for e in new:
                kind = type(e).__name__
                who = e.decided_by.get("component") if kind in ("Stopped", "FuseExpired") else getattr(e, "by", None)
                if sim.id in excused and (
                    kind in ("Heartbeat", "FuseSet") or (kind in ("Stopped", "FuseCancelled") and who == SUPERVISOR)
                ):
                    continue  # the race's own append, through the other connection
                if kind == "FuseCancelled" and who == RECONCILER:
                    continue  # record_stop cancels a set fuse first, in the same save as its Stopped
                assert who == RECONCILER, f"{sim}: {kind} by {who!r} appeared during a pass"
                appended.append(e)
                if kind == "Stopped":
                    assert not sim.alive, f"{sim}: the reconciler stopped it while its process lives"
                    assert not sim.fuse_live(self.now), (
                        f"{sim}: the reconciler stopped it at {self.now:%T.%f}, "
                        f"its fuse live until {sim.expires:%T.%f}")
                    assert sim.stopped_by is None, f"{sim}: stopped twice"
                    expected = StopReason.USER if sim.stop_requested else StopReason.RECONCILED
                    assert e.reason == expected, f"{sim}: stopped for {e.reason!r}, expected {expected.value!r}"
                    assert e.evidence["pid_probe"]["alive"] is False and e.evidence["fuse"]["live"] is False
                    assert e.evidence["decided_on"]["at"] == self.now
                    sim.stopped_by = RECONCILER
                elif kind == "FuseExpired":
                    assert sim.alive, f"{sim}: FuseExpired for a dead process (it should have been stopped)"
                    assert sim.armed and not sim.expiry_recorded, f"{sim}: FuseExpired without a set fuse"
                    assert not sim.fuse_live(self.now), (
                        f"{sim}: FuseExpired at {self.now:%T.%f}, its fuse live until {sim.expires:%T.%f}")
                    assert e.expired_at == sim.expires, f"{sim}: expired_at {e.expired_at}, the model {sim.expires}"
                    sim.expiry_recorded = True
                else:
                    raise AssertionError(f"{sim}: the reconciler appended {kind} (there are no timeouts here): {e}")

        for kind, outcome, due in (
            ("Stopped", Outcome.STOPPED, to_stop), ("FuseExpired", Outcome.FUSE_EXPIRED, to_expire)
        ):
            landed = {e.originator_id for e in appended if type(e).__name__ == kind}
            assert landed - excused == due - excused, (
                f"at {self.now:%T.%f} the pass appended {kind} to {sorted(names[i] for i in landed)}; "
                f"the model says {sorted(names[i] for i in due)}")
            reported = {i for i, j in judged.items() if j.outcome == outcome}
            if self.rival_report is not None:
                rival = {UUID(j.decision.session_id) for j in self.rival_report.judged if j.outcome == outcome}
                both = sorted(names[i] for i in reported & rival)
                assert not both, f"both reconcilers report {outcome} for {both}"
                reported |= rival
            assert reported == landed, f"reported {outcome} for {sorted(names[i] for i in reported)}"
        return appended

    def _settle(self) -> None:
        """Past every fuse, reconcile until quiet: the dead are stopped, the living are not."""
        self.now = self._past_every_fuse()
        self._pass()
        again = self._pass()
        assert again == [], f"a second pass at the same instant appended {again}"
        for sim in self.sims:
            if sim.impostor:
                assert sim.process.poll() is None, f"{sim}: the process that reused its PID was killed"
            if sim.alive:
                assert sim.stopped_by is None, f"{sim}: its process lives, yet {sim.stopped_by} stopped it"
                assert not sim.armed or sim.expiry_recorded, f"{sim}: its fuse lapsed, yet no FuseExpired"
            else:
                assert sim.stopped_by is not None, f"{sim}: its process is dead, no fuse is live, nobody stopped it"
        self._check_log(caught_up=True)


def _at(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc)


def test_reconciler_state_machine(template: Path | PostgresLocation, tmp_path: Path, backend: str) -> None:
    examples = count()
    run_state_machine_as_test(
        lambda: ReconcileMachine(template, tmp_path / f"example-{next(examples)}"),
        settings=SETTINGS if backend == "sqlite" else POSTGRES_SETTINGS,
    )


# -- found by the state machine ---------------------------------------------------


def test_a_fuse_set_after_a_recorded_lapse_replaces_the_lapsed_one_in_the_fuses_read_model(
    template: Path | PostgresLocation,
) -> None:
    """The state machine's shrunk counterexample, spelled out (``agentledger fuses`` shows two fuses).

    launch with a fuse; it lapses; a pass records FuseExpired (the fuses row turns 'expired'); a new
    fuse is set: the projection replaces only a 'set' row, so the 'expired' one stays open beside
    the new one, and the next heartbeat (``state IN ('set', 'expired')``) revives it as a second live fuse.
    """
    now = EPOCH
    directory = Path(tempfile.mkdtemp(prefix="fuses-"))
    store = open_store(copy_store(template, directory / "store"))
    reconciler = Reconciler(store, machine=this_machine(), policy=ReconcilePolicy(mass_stop_share=1.0), clock=lambda: now)
    process = sleeper()
    try:
        session_id = uuid4()
        record_session(store, session_id, identity_of(process.pid), "f", (1.0, now))
        now += timedelta(seconds=2)
        assert [j.outcome for j in reconciler.run_pass().judged] == [Outcome.FUSE_EXPIRED]
        store.ledger.change(session_id, lambda s: s.set_fuse(ttl=5.0, set_by=SUPERVISOR, now=now))
        store.ledger.change(session_id, lambda s: s.heartbeat(source="test", now=now))
        catch_up(store)
        session = store.ledger.session(session_id)
        rows = [(r["set_version"], r["state"], _at(r["expires_at"])) for r in store.db.execute(
            "SELECT * FROM fuses WHERE session_id = ? ORDER BY set_version", (session_id.hex,))]
        assert rows == [(2, "replaced", EPOCH + timedelta(seconds=1)), (4, "set", session.fuse_expires_at)], rows
    finally:
        kill(process)
        reconciler.close()
        store.close()
        shutil.rmtree(directory, ignore_errors=True)


# -- the mass-stop guard -------------------------------------------------------------


@settings(max_examples=12, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # each example gets a store of its own
@given(dead=st.integers(0, 9), alive=st.integers(0, 7))
@example(dead=5, alive=0)  # 5 is not more than mass_stop_min: stopped at once
@example(dead=6, alive=0)  # held, then confirmed
@example(dead=6, alive=5)  # more than half and more than 5: held
@example(dead=6, alive=6)  # not more than half: stopped at once
def test_the_mass_stop_guard_holds_a_mass_stop_once_then_the_next_pass_confirms_it(
    template: Path, dead: int, alive: int
) -> None:
    """Default policy: more than half of the not-stopped sessions, and more than 5, dead at once are held
    for one pass (nothing stopped, the guard records them), then stopped; living ones are never touched."""
    policy = ReconcilePolicy()
    now = EPOCH
    directory = Path(tempfile.mkdtemp(prefix="guard-"))
    store = open_store(copy_store(template, directory / "store"))
    reconciler = Reconciler(store, machine=this_machine(), policy=policy, clock=lambda: now)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(dead + alive):
            processes.append(sleeper())
        ids = [uuid4() for _ in processes]
        for i, (session_id, process) in enumerate(zip(ids, processes, strict=True)):
            record_session(store, session_id, identity_of(process.pid), f"g{i}", None)
        for process in processes[:dead]:
            kill(process)
        dead_ids, alive_ids = set(ids[:dead]), set(ids[dead:])

        def stopped() -> set[UUID]:
            return {i for i in ids if store.ledger.session(i).is_stopped}

        trips = dead > max(policy.mass_stop_share * (dead + alive), policy.mass_stop_min)
        first = reconciler.run_pass()
        if trips:
            assert stopped() == set()
            assert first.counts == {Outcome.HELD: dead, **({Outcome.KEPT: alive} if alive else {})}
            guard = load_guard(store.ledger, host_name())
            assert guard is not None and set(guard.held) == {i.hex for i in dead_ids}
        else:
            assert stopped() == dead_ids
        second = reconciler.run_pass()
        assert stopped() == dead_ids, second.as_json()
        guard = load_guard(store.ledger, host_name())
        assert guard is None or guard.held == []
        assert reconciler.run_pass().counts == ({Outcome.KEPT: alive} if alive else {})
        assert all(p.poll() is None for p in processes[dead:])
        assert not stopped() & alive_ids
    finally:
        for process in processes:
            kill(process)
        reconciler.close()
        store.close()
        shutil.rmtree(directory, ignore_errors=True)
