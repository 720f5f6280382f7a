"""Directory locks as facts in the log: the rule, the aggregate, and the CLI with real sessions.

The rule (``domain/locks.py: lock_held``) is walked row by row in memory. The
rest runs the real CLI against a real store (a SQLite file, and PostgreSQL):
a second launch into a locked directory is refused; ``--force`` runs both,
and neither loses its fuse or is stopped before its process ends (the seed's
bug, as agentctl's forced launches brought it back); a holder killed with
``kill -9`` keeps its lock until the reconciler stops it, not a moment less;
and of two launches racing for a free directory exactly one gets it.
"""

from __future__ import annotations

import os
import signal
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import running, wait_for

from agentledger.domain.liveness import Liveness, PidProbe
from agentledger.domain.locks import (
    LAUNCH_DIED,
    LAUNCHING,
    DirectoryLock,
    LockNotHeld,
    Tenure,
    lock_held,
    lock_id,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)


def tenure(**fields: Any) -> Tenure:
    base: dict[str, Any] = dict(directory="/repo", holder_session="a" * 32, taker={"pid": 1, "host": "h"}, by="alice",
                                reason=None, manual=False, forced=False, displaced=None, taken_at=NOW, version=2)
    return Tenure(**{**base, **fields})


def probe(liveness: Liveness) -> PidProbe:
    return PidProbe(1, 1.0, 1.0 if liveness is Liveness.ALIVE else None, "h", "b", liveness)


# -- the rule, in memory --------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(("case", "status", "taker", "held"), [
    (tenure(), "running", None, True),
    (tenure(), "unwatched", None, True),  # nobody watches it, but it is not stopped: only its Stopped frees it
    (tenure(), "stopping", None, True),
    (tenure(), "host-silent", None, True),
    (tenure(), "stopped", None, False),
    (tenure(), None, probe(Liveness.ALIVE), True),  # launch in progress
    (tenure(), None, probe(Liveness.UNKNOWN), True),  # the look failed: nobody can tell, so held
    (tenure(), None, None, True),  # the taker is on another host: held, conservatively
    (tenure(), None, probe(Liveness.NO_SUCH_PROCESS), False),  # the launch died before recording anything
    (tenure(), None, probe(Liveness.PID_REUSED), False),
    (tenure(), None, probe(Liveness.REBOOTED), False),
    (tenure(), None, probe(Liveness.ZOMBIE), False),
    (tenure(holder_session=None, manual=True), None, None, True),
    (tenure(holder_session=None, manual=True, released={"by": "bob", "reason": "x", "at": NOW}), None, None, False),
    (tenure(released={"by": "bob", "reason": "launch failed", "at": NOW}), None, probe(Liveness.ALIVE), False),
    (None, None, None, False),
])
def test_the_rule(case: Tenure | None, status: str | None, taker: PidProbe | None, held: bool) -> None:
    assert lock_held(case, holder_status=status, taker_probe=taker).held is held


@pytest.mark.unit
def test_the_rule_says_why() -> None:
    assert lock_held(tenure(), holder_status=None, taker_probe=probe(Liveness.ALIVE)).why == LAUNCHING
    assert lock_held(tenure(), holder_status=None, taker_probe=probe(Liveness.NO_SUCH_PROCESS)).why == LAUNCH_DIED


@pytest.mark.unit
def test_the_aggregate_records_claims_and_releases() -> None:
    lock = DirectoryLock(directory="/repo")
    assert lock.id == lock_id("/repo") != lock_id("/repo/")
    lock.take(holder_session="a" * 32, taker={"pid": 1}, by="alice", reason=None, displaced=None, forced=False)
    assert lock.tenure is not None and (lock.tenure.holder_session, lock.tenure.manual) == ("a" * 32, False)
    lock.take(holder_session="b" * 32, taker={"pid": 2}, by="bob", reason=None, displaced="a" * 32, forced=True)
    assert (lock.tenure.forced, lock.tenure.displaced, lock.tenure.version) == (True, "a" * 32, 3)
    lock.release(by="bob", reason="launch failed: boom")
    assert lock.tenure.released is not None and lock.tenure.released["reason"] == "launch failed: boom"
    with pytest.raises(LockNotHeld):
        lock.release(by="bob", reason="again")
    events = lock.collect_events()
    assert [type(e).__name__ for e in events] == ["Opened", "Taken", "Taken", "Released"]
    assert events[-1].taken_version == 3 and events[1].directory == "/repo"


@pytest.mark.unit
def test_two_claims_on_one_version_cannot_both_land() -> None:
    from eventsourcing.persistence import IntegrityError

    from agentledger.application.ledger import Ledger

    ledger = Ledger()
    first, second = DirectoryLock(directory="/repo"), DirectoryLock(directory="/repo")
    for lock, who in ((first, "a"), (second, "b")):
        lock.take(holder_session=who * 32, taker={}, by=who, reason=None, displaced=None, forced=False)
    ledger.save(first)
    with pytest.raises(IntegrityError):
        ledger.save(second)
    found = ledger.directory_lock("/repo")
    assert found is not None and found.tenure is not None and found.tenure.holder_session == "a" * 32


# -- with real sessions, on a real store ----------------------------------------------


@pytest.fixture
def locking(cli: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The CLI with auto_lock on (the default; the test suite turns it off for the other tests)."""
    monkeypatch.setenv("AGENTLEDGER_AUTO_LOCK", "1")
    return cli


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def waiting(go: Path, ended: Path) -> list[str]:
    """A process that runs until ``go`` exists, then writes the time it exits to ``ended``."""
    return ["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done; date +%s.%N > {ended}; exit 0"]


def test_a_second_launch_is_refused_and_force_runs_both_each_with_its_own_fuse(locking, tmp_path):
    cli = locking
    repo = tmp_path / "repo"
    repo.mkdir()
    go1, go2, end1, end2 = (tmp_path / n for n in ("go1", "go2", "end1", "end2"))
    first = cli("launch", "--cwd", str(repo), "--name", "first", "--fuse-ttl", "1s", "--", *waiting(go1, end1)
                ).stdout.strip()

    refused = cli("launch", "--cwd", str(repo), "--", "sleep", "600", check=False)
    assert refused.returncode == 1 and refused.stdout == ""
    [line] = [x for x in refused.stderr.splitlines() if "locked" in x]
    assert refused.stderr.count("\n") <= 2  # the refusal (and, at most, the word about no daemon)
    assert first[:12] in line and "(first)" in line and "agent command" in line and "--force to launch anyway" in line
    assert len(cli.json_lines("list")) == 1  # nothing was launched

    second = cli("launch", "--cwd", str(repo) + "/.", "--force", "--fuse-ttl", "1s", "--", *waiting(go2, end2)
                 ).stdout.strip()
    [lock] = cli.json_lines("locks")
    assert (lock["directory"], lock["holder_session"], lock["forced"], lock["displaced"]) == (
        str(repo.resolve()), second, True, first)
    assert lock["held"] and lock["holder_status"] == "running" and lock["taken_by"]

    # Both run, each heartbeating its own fuse, through several TTLs and reconcile passes.
    before = cli.json("status", first)["heartbeat_count"]
    wait_for(lambda: cli.json("status", first)["heartbeat_count"] >= before + 4, timeout=60)
    for _ in range(3):
        cli("reconcile")
    for sid in (first, second):
        status = cli.json("status", sid)
        assert status["status"] == "running" and status["fuse"]["live"], status
    assert [f["set_by"] for f in cli.json_lines("fuses", "--all") if f["session_id"] == first] == ["supervisor"]

    go2.touch()  # the second ends first: the first runs on, untouched
    stopped2 = wait_for(lambda: (s := cli.json("status", second))["status"] == "stopped" and s, timeout=60)
    assert cli.json("status", first)["status"] == "running"
    assert cli.json_lines("locks") == []  # the holder stopped: its Stopped freed the lock
    go1.touch()
    stopped1 = wait_for(lambda: (s := cli.json("status", first))["status"] == "stopped" and s, timeout=60)
    for stopped, ended in ((stopped1, end1), (stopped2, end2)):
        assert (stopped["stop_reason"], stopped["stopped_by"], stopped["exit_code"]) == ("exited", "supervisor", 0)
        assert ts(stopped["stopped_at"]) >= float(ended.read_text())  # recorded after the real exit, never before
    assert [f["state"] for f in cli.json_lines("fuses", "--all") if f["session_id"] == first] == ["cancelled"]

    history = cli.json_lines("history", first)
    marks = [r["summary"] for r in history if r.get("marker") == "lock"]
    assert marks[0] == f"took the lock on {repo.resolve()}"
    assert any(f"displaced from the lock on {repo.resolve()} by session {second[:12]}" in m for m in marks)
    why = cli.json("why", second)
    assert [f["kind"] for f in why["locks"]] == ["forced", "freed"] and why["locks"][0]["displaced"] == first
    assert f"forced the lock on {repo.resolve()} from session {first[:12]}" in cli("why", second).stdout
    assert cli.json("verify")["ok"]


def test_a_holder_killed_with_kill_9_keeps_its_lock_until_the_reconciler_stops_it(locking, tmp_path):
    cli = locking
    repo = tmp_path / "repo"
    repo.mkdir()
    sid = cli("launch", "--cwd", str(repo), "--fuse-ttl", "1s", "--", "sleep", "600").stdout.strip()
    status = cli.json("status", sid)
    os.kill(status["supervisor_pid"], signal.SIGKILL)
    os.kill(status["pid"], signal.SIGKILL)
    wait_for(lambda: not running(status["pid"]) and not running(status["supervisor_pid"]))
    wait_for(lambda: not cli.json("status", sid)["fuse"]["live"], timeout=60)

    # Dead, unwatched, but not stopped: the lock is still held, and a launch is still refused.
    [lock] = cli.json_lines("locks")
    assert lock["holder_session"] == sid and lock["held"] and lock["holder_status"] == "unwatched"
    refused = cli("launch", "--cwd", str(repo), "--", "true", check=False)
    assert refused.returncode == 1 and sid[:12] in refused.stderr

    def reconciled() -> bool:
        stopped = cli.json("status", sid)["status"] == "stopped"
        held = bool(cli.json_lines("locks"))
        assert held is not stopped  # held exactly until the stop: never freed before it, always right after
        if not stopped:
            cli("reconcile")
        return stopped

    wait_for(reconciled, timeout=30)
    assert cli.json("status", sid)["stop_reason"] == "reconciled"
    [free] = cli.json_lines("locks", "--all")
    assert not free["held"] and free["why"] == "its session stopped"
    cli("launch", "--cwd", str(repo), "--", "true")



def test_of_two_racing_launches_exactly_one_gets_the_lock(locking, tmp_path):
    cli = locking
    for attempt in range(20):
        repo = tmp_path / f"repo{attempt}"
        repo.mkdir()
        barrier = threading.Barrier(2)
        results: list[Any] = [None, None]

        def launch(index: int, repo: Path = repo, barrier: threading.Barrier = barrier,
                   results: list[Any] = results) -> None:
            barrier.wait()
            results[index] = cli("launch", "--cwd", str(repo), "--", "sleep", "600", check=False)

        threads = [threading.Thread(target=launch, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        codes = sorted(r.returncode for r in results)
        assert codes == [0, 1], [(r.returncode, r.stderr) for r in results]
        winner = next(r for r in results if r.returncode == 0).stdout.strip()
        loser = next(r for r in results if r.returncode == 1)
        assert f"locked by session {winner[:12]}" in loser.stderr
        cli("stop", winner, "--force")
    assert len(cli.json_lines("list", "--all")) == 20


def test_racing_claims_on_the_real_store_one_wins(locking, tmp_path):
    """The use case itself, from many threads at once, each with its own connection to the store."""
    from agentledger.application.locking import DirectoryLocks, LockHeld
    from agentledger.bootstrap import open_store, this_machine

    stores = [open_store() for _ in range(6)]
    try:
        for attempt in range(5):
            directory = str(tmp_path / f"d{attempt}")
            barrier = threading.Barrier(len(stores))
            outcomes: list[str] = []

            def claim(store: Any, index: int, directory: str = directory, barrier: threading.Barrier = barrier,
                      outcomes: list[str] = outcomes) -> None:
                locks = DirectoryLocks(lambda: store, this_machine())
                barrier.wait()
                try:
                    locks.take_for_launch(directory, session_id=f"{index:032x}", force=False)
                    outcomes.append("took")
                except LockHeld:
                    outcomes.append("refused")

            threads = [threading.Thread(target=claim, args=(s, i)) for i, s in enumerate(stores)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sorted(outcomes) == ["refused"] * (len(stores) - 1) + ["took"]
    finally:
        for store in stores:
            store.close()


def test_manual_lock_and_unlock(locking, tmp_path):
    cli = locking
    repo = tmp_path / "repo"
    repo.mkdir()
    assert "locked" in cli("lock", str(repo), "--reason", "release freeze").stdout
    again = cli("lock", str(repo), check=False)
    assert again.returncode == 1 and "locked by hand" in again.stderr and "--force" in again.stderr
    refused = cli("launch", "--cwd", str(repo), "--", "true", check=False)
    assert refused.returncode == 1 and "release freeze" in refused.stderr and "--force to launch anyway" in refused.stderr
    [lock] = cli.json_lines("locks")
    assert (lock["manual"], lock["holder_session"], lock["reason"], lock["held"]) == (True, None, "release freeze", True)
    assert "unlocked" in cli("unlock", str(repo)).stdout
    again = cli("unlock", str(repo), check=False)
    assert again.returncode == 1 and "is not locked" in again.stderr

    sid = cli("launch", "--cwd", str(repo), "--", "sleep", "600").stdout.strip()
    held = cli("unlock", str(repo), check=False)
    assert held.returncode == 1 and sid[:12] in held.stderr and "--force" in held.stderr
    assert "keeps running" in cli("unlock", str(repo), "--force").stdout
    assert cli.json("status", sid)["status"] == "running" and cli.json_lines("locks") == []
    [free] = cli.json_lines("locks", "--all")
    assert free["released_by"] and "--force" in free["release_reason"]
    cli("launch", "--cwd", str(repo), "--no-lock", "--", "true")  # --no-lock takes nothing
    other = cli("launch", "--cwd", str(repo), "--", "sleep", "600").stdout.strip()  # the lock was free again
    cli("stop", sid, "--force")
    cli("stop", other, "--force")

    table = cli("locks", "--all").stdout
    assert "DIRECTORY" in table and str(repo.resolve()) in table
    before = cli.json_lines("locks", "--all")
    cli("db", "rebuild")
    assert cli.json_lines("locks", "--all") == before
    assert cli.json("verify")["ok"]


@pytest.mark.parametrize("args", [("lock", "/no/such/dir"), ("lock", ""), ("unlock",), ("locks", "--bogus")])
def test_bad_input_is_one_line_and_exit_2(locking, args):
    result = locking(*args, check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_a_launch_its_supervisor_never_recorded_gives_the_lock_back(locking, tmp_path):
    cli = locking
    repo = tmp_path / "repo"
    repo.mkdir()
    failed = cli("launch", "--cwd", str(repo), "--", "/no/such/binary", check=False)
    assert failed.returncode == 2  # spawn-failed is recorded, with its Stopped: that frees the lock
    assert cli.json_lines("locks") == []

    from agentledger.application.errors import LedgerError
    from agentledger.application.launching import LaunchDefaults, Launching, RunOptions
    from agentledger.application.locking import DirectoryLocks
    from agentledger.bootstrap import agents, open_store, this_machine
    from agentledger.infrastructure.launch_host import LocalLaunchHost

    class RefusingHost(LocalLaunchHost):  # the supervisor answers that it recorded nothing
        def start_supervisor(self, spec: Any) -> dict[str, Any]:
            return {"ok": False, "error": "the store refused the launch"}

    store = open_store()
    try:
        locks = DirectoryLocks(lambda: store, this_machine())
        host = RefusingHost(Path(os.environ["AGENTLEDGER_HOME"]), lambda: store, lambda: None,  # type: ignore[arg-type]
                            autostart_daemon=False, reconcile_interval=5.0)
        launching = Launching(agents(), host, LaunchDefaults(fuse_ttl=30.0, on_stop=None, on_stop_timeout=60.0),
                              locks=locks)
        with pytest.raises(LedgerError, match="refused the launch"):
            launching.command(["true"], cwd=str(repo), run=RunOptions(), adapter="command")
        view = locks.view(str(repo.resolve()))
        assert not view.holding.held and view.tenure is not None and view.tenure.released is not None
        assert view.tenure.released["reason"] == "launch failed: the store refused the launch"
    finally:
        store.close()
    cli("launch", "--cwd", str(repo), "--", "true")


def test_auto_lock_off_in_the_configuration(cli, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.setenv("AGENTLEDGER_AUTO_LOCK", "0")
    for _ in range(2):
        cli("launch", "--cwd", str(repo), "--", "true")
    assert cli.json_lines("locks", "--all") == []
    assert "auto_lock" in cli("config", "show").stdout
