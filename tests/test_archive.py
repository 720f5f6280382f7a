"""``db archive`` / ``db archive verify`` / ``db import``: retention that keeps the audit, on both backends.

Sessions are recorded straight into the test's ledger (a real SQLite file, or
a PostgreSQL schema), then everything else goes through the CLI as a user
runs it: archive, verify the file, see ``why``/``history``/``status`` say
where the session went, rebuild, import it back, verify the store.
"""

from __future__ import annotations

import gzip
import os
import re
import stat
import subprocess
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from conftest import dead_identity, no_real_fault, record


def stopped(store: Any, spawn: Any, *, beats: int = 3, hook: bool = False) -> str:
    """A session that ran, heartbeat ``beats`` times and stopped (with a finished on-stop hook if ``hook``)."""
    from agentledger.application.clock import utc_now
    from agentledger.domain.stop_hooks import StopHook

    sid = record(store, dead_identity(spawn), fuse_ttl=3600, lapsed=False)
    for _ in range(beats):
        store.ledger.change(sid, lambda s: s.heartbeat(source="test", now=utc_now()))
    store.ledger.change(sid, lambda s: s.record_stop(reason="exited", decided_by={"component": "supervisor"},
                                                     evidence={}, exit_code=0))
    if hook:
        claimed = StopHook(session_id=sid.hex, command="true", host="h", claimed_by={"pid": 1})
        claimed.finish(exit_code=0, signal=None, timed_out=False, duration_seconds=0.1, output_tail="")
        store.ledger.save(claimed)
    return sid.hex


@pytest.fixture
def ledger(store: Any, spawn: Any) -> dict[str, Any]:
    """Two stopped sessions (one with an on-stop hook) and a running one, recorded last."""
    old = [stopped(store, spawn, beats=5, hook=True), stopped(store, spawn, beats=2)]
    running = record(store, dead_identity(spawn), fuse_ttl=3600, lapsed=False).hex
    return {"old": old, "running": running}


def archive(cli: Any, out: Path, *options: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return cli("db", "archive", "--stopped-before", "1ms", "--out", str(out), *options, check=check)


def _no_positions(text: str) -> str:
    return re.sub(r"position \d+", "position N", text)


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def events_of(store: Any, session_id: str) -> int:
    from agentledger.application.archiving import session_streams

    return sum(store.retention.stream_lengths(list(session_streams(session_id))).values())


def test_archive_verify_import_round_trip(cli: Any, store: Any, ledger: dict[str, Any], tmp_path: Path) -> None:
    first, second = ledger["old"]
    before = {sid: cli("why", sid).stdout for sid in ledger["old"]}
    counts = {sid: events_of(store, sid) for sid in ledger["old"]}
    out = tmp_path / "old.ndjson.gz"
    result = archive(cli, out)
    assert "archived 2 sessions" in result.stdout and str(out) in result.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert not out.with_name(out.name + ".part").exists()

    verified = cli("db", "archive", "verify", str(out))
    assert "ok: 2 sessions, 3 streams" in verified.stdout
    assert cli.json("db", "archive", "verify", str(out))["events"] == sum(counts.values())
    # gone from the live store: events, snapshots, read-model rows; the running session untouched
    assert events_of(store, first) == 0 and events_of(store, second) == 0
    listed = {s["id"] for s in cli.json_lines("list", "--all")}
    assert listed == {ledger["running"]}
    for command in ("why", "history", "status"):
        line = one_line_error(cli(command, first[:8], check=False), 1)
        assert "archived" in line and str(out) in line and f"agentledger db import {out}" in line
    assert cli("verify").returncode == 0
    cli("db", "rebuild")  # archived_sessions is no read model: the record survives a rebuild
    assert str(out) in one_line_error(cli("why", second, check=False), 1)
    assert sorted(r["session_id"] for r in cli.json_lines("db", "archive", "list")) == sorted(ledger["old"])

    imported = cli("db", "import", str(out))
    assert "imported 2 sessions" in imported.stdout
    assert _no_positions(cli("why", first).stdout) == _no_positions(before[first])  # positions are new
    assert len(cli.json_lines("history", first)) >= 7
    assert {s["id"] for s in cli.json_lines("list", "--all")} == {ledger["running"], *ledger["old"]}
    assert {sid: events_of(store, sid) for sid in ledger["old"]} == counts  # its Session and its StopHook
    assert cli("verify").returncode == 0
    again = cli("db", "import", str(out))  # idempotent
    assert "imported 0 sessions" in again.stdout and "2 already in the store" in again.stdout
    assert cli.json_lines("db", "archive", "list") == []


def test_coalesced_heartbeats_round_trip(cli: Any, store: Any, spawn: Any, tmp_path: Path) -> None:
    """``--coalesce-heartbeats WHEN`` keeps the first and last heartbeat of each run older than WHEN; the session
    replays, verifies and counts its heartbeats as before, after an import and after a second archive."""
    import time
    from datetime import datetime, timezone

    from agentledger.application.clock import utc_now

    def beat(n: int) -> None:
        for _ in range(n):
            store.ledger.change(sid, lambda s: s.heartbeat(source="test", now=utc_now()))

    sid = record(store, dead_identity(spawn), fuse_ttl=3600, lapsed=False)
    beat(6)  # a run that extends the fuse: 4 of it coalesced
    store.ledger.change(sid, lambda s: s.cancel_fuse(by="test", reason="test"))
    beat(4)  # a run that extends nothing: 2 of it coalesced
    time.sleep(0.01)
    when = datetime.now(timezone.utc).isoformat()
    time.sleep(0.01)
    beat(3)  # newer than WHEN: kept whole, though the run goes on
    store.ledger.change(sid, lambda s: s.record_stop(reason="exited", decided_by={"component": "supervisor"},
                                                     evidence={}, exit_code=0))
    record(store, dead_identity(spawn), fuse_ttl=3600, lapsed=False)  # the log's last event is never archived
    sid_hex = sid.hex
    before = cli.json("status", sid_hex)
    why = _no_positions(cli("why", sid_hex).stdout)
    events = events_of(store, sid_hex)

    out = tmp_path / "coalesced.ndjson.gz"
    result = archive(cli, out, "--coalesce-heartbeats", when)
    assert f"({events - 6} events, 6 heartbeats coalesced)" in result.stdout, result.stdout
    assert cli.json("db", "archive", "verify", str(out))["events"] == events - 6
    cli("db", "import", str(out))
    assert cli("verify").returncode == 0
    after = cli.json("status", sid_hex)
    assert after["heartbeat_count"] == before["heartbeat_count"] == 13
    assert {k: v for k, v in after.items() if k != "position"} == {k: v for k, v in before.items() if k != "position"}
    assert _no_positions(cli("why", sid_hex).stdout) == why
    history = cli.json_lines("history", sid_hex)
    assert [h["version"] for h in history if h["type"] == "Heartbeat"] == [3, 8, 10, 13, 14, 15, 16]  # 1, 2: launch
    assert sum("the 4 before it coalesced by an archive" in h["summary"] for h in history) == 1
    assert sum("the 2 before it coalesced by an archive" in h["summary"] for h in history) == 1

    again = tmp_path / "again.ndjson.gz"  # a coalesced stream archives again, coalescing what is left
    record(store, dead_identity(spawn), fuse_ttl=3600, lapsed=False)  # the imported events are the log's last
    assert "9 heartbeats coalesced" in archive(cli, again, "--coalesce-heartbeats", "1ms").stdout  # 4, then 5
    cli("db", "import", str(again))
    assert cli("verify").returncode == 0
    assert cli.json("status", sid_hex)["heartbeat_count"] == 13
    history = cli.json_lines("history", sid_hex)
    assert [h["version"] for h in history if h["type"] == "Heartbeat"] == [3, 8, 10, 16]
    assert sum("the 5 before it coalesced by an archive" in h["summary"] for h in history) == 1


def test_a_coalesced_session_lapses_in_history_and_as_of_exactly_where_it_did(cli: Any, store: Any, spawn: Any,
                                                                            tmp_path: Path) -> None:
    """Heartbeats a third of a 1 s TTL apart keep the fuse live; a pause of 2 s lets it lapse once. After a
    coalescing archive and an import, ``history`` shows the same lapses (no made-up one between a run's two
    kept ends) and ``status --as-of`` gives the same status at moments through the runs (the machine's speed
    may add lapses: both sides have them alike)."""
    import time
    from datetime import datetime, timedelta, timezone

    from agentledger.application.clock import utc_now

    def beats(n: int) -> None:
        for _ in range(n):
            store.ledger.change(sid, lambda s: s.heartbeat(source="test", now=utc_now()))
            time.sleep(0.3)

    sid = record(store, dead_identity(spawn), fuse_ttl=1.0, lapsed=False)
    started = datetime.now(timezone.utc)
    beats(8)
    time.sleep(2)
    beats(8)
    store.ledger.change(sid, lambda s: s.record_stop(reason="exited", decided_by={"component": "supervisor"},
                                                     evidence={}, exit_code=0))
    record(store, dead_identity(spawn), fuse_ttl=3600, lapsed=False)  # the log's last event is never archived
    moments = [(started + timedelta(seconds=0.4 * n)).isoformat() for n in range(1, 16, 2)]

    def seen() -> tuple[list[Any], list[str]]:
        lapses = [h["time"] for h in cli.json_lines("history", sid.hex) if h.get("marker") == "fuse-lapsed"]
        return lapses, [cli.json("status", sid.hex, "--as-of", moment)["status"] for moment in moments]

    before = seen()
    assert before[0] and "running" in before[1] and "unwatched" in before[1]
    out = tmp_path / "c.ndjson.gz"
    assert "heartbeats coalesced" in archive(cli, out, "--coalesce-heartbeats", "1ms").stdout
    cli("db", "import", str(out))
    assert seen() == before


def test_a_reconciler_stop_explains_the_same_after_coalescing(cli: Any, store: Any, spawn: Any,
                                                              tmp_path: Path) -> None:
    """Every decision is appended right after the version it looked at, so that version ends its run of
    heartbeats and is kept: ``why`` replays the reconciler's stop to the same verdict."""
    from datetime import timedelta

    from agentledger.application.clock import utc_now

    sid = record(store, dead_identity(spawn))  # a 1 s fuse, its process gone
    for _ in range(8):
        store.ledger.change(sid, lambda s: s.heartbeat(source="test", now=utc_now() - timedelta(seconds=60)))
    cli("reconcile")
    assert cli.json("status", sid.hex)["stop_reason"] == "reconciled"
    record(store, dead_identity(spawn), fuse_ttl=3600, lapsed=False)  # the log's last event is never archived
    why = _no_positions(cli("why", sid.hex).stdout)
    assert "reconciler" in why
    out = tmp_path / "r.ndjson.gz"
    assert "6 heartbeats coalesced" in archive(cli, out, "--coalesce-heartbeats", "1ms").stdout
    cli("db", "import", str(out))
    assert _no_positions(cli("why", sid.hex).stdout) == why
    assert cli("verify").returncode == 0


def test_a_running_session_is_never_archived(cli: Any, store: Any, spawn: Any, tmp_path: Path) -> None:
    running = record(store, dead_identity(spawn), fuse_ttl=3600, lapsed=False).hex
    old = stopped(store, spawn)
    later = record(store, dead_identity(spawn), fuse_ttl=3600, lapsed=False).hex  # holds the log's last event
    dry = cli.json("db", "archive", "--stopped-before", "1ms", "--dry-run")
    assert [s["id"] for s in dry["sessions"]] == [old]
    archive(cli, tmp_path / "a.ndjson.gz")
    assert {s["id"] for s in cli.json_lines("list", "--all")} == {running, later}
    assert cli("why", running).returncode == 0


def test_the_log_s_last_event_is_kept(cli: Any, store: Any, spawn: Any, tmp_path: Path) -> None:
    """Removing the last event would hand its position to the next one (SQLite): its session waits."""
    last = stopped(store, spawn)
    result = archive(cli, tmp_path / "a.ndjson.gz")
    assert result.stdout == "" and "nothing to archive" in result.stderr and "log's last event" in result.stderr
    assert events_of(store, last) > 0


def _flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


def _altered(data: bytes) -> bytes:
    """Recompressed after changing one event's state: gzip's own CRC is right, the archive's checksums not."""
    text = gzip.decompress(data).replace(b'"exit_code":0', b'"exit_code":1', 1)
    return gzip.compress(text)


@pytest.mark.parametrize("damage", [_flip, lambda data: data[: len(data) * 2 // 3], _altered, lambda d: b"hello\n"],
                         ids=["flipped-byte", "truncated", "altered-content", "not-an-archive"])
def test_a_damaged_archive_is_refused(cli: Any, ledger: dict[str, Any], tmp_path: Path, damage: Any) -> None:
    out = tmp_path / "a.ndjson.gz"
    archive(cli, out)
    bad = tmp_path / "bad.ndjson.gz"
    bad.write_bytes(damage(out.read_bytes()))
    line = one_line_error(cli("db", "archive", "verify", str(bad), check=False), 1)
    assert str(bad) in line or "cannot" in line
    line = one_line_error(cli("db", "import", str(bad), check=False), 1)
    assert "damaged" in line or "not" in line
    assert "archived" in one_line_error(cli("why", ledger["old"][0], check=False), 1)  # nothing was imported


@pytest.mark.parametrize("args", [("--stopped-before", "yesterday"), ("--stopped-before", "-3d"), ()],
                         ids=["words", "negative", "missing"])
def test_bad_usage_is_one_line_and_exit_2(cli: Any, args: tuple[str, ...]) -> None:
    one_line_error(cli("db", "archive", *args, check=False), 2)


def test_verify_of_a_missing_file_is_one_line(cli: Any, tmp_path: Path) -> None:
    assert "cannot read" in one_line_error(cli("db", "archive", "verify", str(tmp_path / "none.gz"), check=False), 1)


def _refusing_directory(tmp_path: Path, kind: str) -> Path:
    """A directory where a new file cannot be written: read-only or full (a tmpfs as root, else permissions)."""
    where = tmp_path / kind
    where.mkdir()
    if os.geteuid() != 0:
        if kind == "full":
            no_real_fault("a full file system needs root (mount a tmpfs)")
        where.chmod(0o500)
        return where
    options = "ro,size=1m" if kind == "read-only" else "size=64k"
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        no_real_fault(f"cannot mount a tmpfs here ({mounted.stderr.strip()})")
    if kind == "full":
        subprocess.run(["dd", "if=/dev/zero", f"of={where / 'filler'}", "bs=4k"], capture_output=True)
    return where


@pytest.mark.parametrize("kind", ["read-only", "full"])
def test_an_archive_that_cannot_be_written_removes_nothing(cli: Any, store: Any, ledger: dict[str, Any],
                                                           tmp_path: Path, kind: str) -> None:
    where = _refusing_directory(tmp_path, kind)
    try:
        out = where / "a.ndjson.gz"
        line = one_line_error(archive(cli, out, check=False), 1)
        assert "cannot write the archive" in line
        assert not out.exists() and not out.with_name(out.name + ".part").exists()
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
    assert all(events_of(store, sid) > 0 for sid in ledger["old"])
    assert len(cli.json_lines("list", "--all")) == 3
    assert cli("verify").returncode == 0


def test_an_existing_out_file_is_refused(cli: Any, ledger: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "a.ndjson.gz"
    out.write_text("mine")
    assert "exists" in one_line_error(archive(cli, out, check=False), 1)
    assert out.read_text() == "mine"


def test_a_stream_that_changed_while_archiving_is_not_removed(store: Any, ledger: dict[str, Any],
                                                             tmp_path: Path) -> None:
    from agentledger.application.archiving import archive as run_archive
    from agentledger.application.archiving import plan_archive
    from agentledger.application.errors import StreamsChanged
    from agentledger.infrastructure.archive_files import ArchiveFileSystem

    class Racing(ArchiveFileSystem):
        def sha256(self, path: str) -> str:  # while the file is read back, someone appends to an archived stream
            from agentledger.domain.stop_hooks import StopHook

            sid = ledger["old"][1]
            store.ledger.save(StopHook(session_id=sid, command="true", host="h", claimed_by={}))
            return super().sha256(path)

    plan = plan_archive(store, 1e12)
    with pytest.raises(StreamsChanged):
        run_archive(store, Racing(tmp_path), plan, path=str(tmp_path / "a.gz"), header={}, now=0.0)
    assert all(events_of(store, sid) > 0 for sid in ledger["old"])


def test_an_archived_lock_holder_frees_its_lock(store: Any) -> None:
    """The lock's claim stays in the log; its holder, archived, counts as stopped (it was)."""
    from agentledger.projections.locks import current_locks

    store.db.execute("INSERT INTO archived_sessions (session_id, archive_path, archived_at, events, checksum)"
                     " VALUES (?, 'x', 0, 1, 'c')", (UUID(int=1).hex,))
    store.db.execute(
        "INSERT INTO locks (lock_id, version, directory, holder_session, manual, forced, taken_at, taken_by,"
        " position) VALUES ('l', 2, '/d', ?, 0, 0, 0, 'me', 1)", (UUID(int=1).hex,))
    [row] = current_locks(store.db, 0.0)
    assert row["holder_status"] == "stopped"


@pytest.mark.parametrize("damage", ["flip", "cut", "grow"])
def test_a_file_that_does_not_read_back_as_written_removes_nothing(store: Any, ledger: dict[str, Any],
                                                                   tmp_path: Path, damage: str) -> None:
    """The file's bytes are hashed on their way to disk and again as read back; any difference, and the store
    keeps everything."""
    from agentledger.application.archive_format import ArchiveDamaged
    from agentledger.application.archiving import archive as run_archive
    from agentledger.application.archiving import plan_archive
    from agentledger.infrastructure.archive_files import ArchiveFileSystem

    class Faulty(ArchiveFileSystem):
        def sha256(self, path: str) -> str:  # what the disk gives back is not what went to it
            data = Path(path).read_bytes()
            changed = {"flip": data[:40] + bytes([data[40] ^ 1]) + data[41:], "cut": data[:-1],
                       "grow": data + b"\0"}[damage]
            Path(path).write_bytes(changed)
            return super().sha256(path)

    counts = {sid: events_of(store, sid) for sid in ledger["old"]}
    with pytest.raises(ArchiveDamaged, match="does not read back as written: nothing was removed"):
        run_archive(store, Faulty(tmp_path), plan_archive(store, 1e12), path=str(tmp_path / "a.gz"), header={},
                    now=0.0)
    assert {sid: events_of(store, sid) for sid in ledger["old"]} == counts


def test_the_digest_of_the_bytes_written_is_the_file_s(tmp_path: Path) -> None:
    from agentledger.application.archive_format import ArchiveWriter, SessionStreams, Stream
    from agentledger.infrastructure.archive_files import ArchiveFileSystem

    files = ArchiveFileSystem(tmp_path)
    target = str(tmp_path / "a.ndjson.gz")
    with files.create(target) as out:
        writer = ArchiveWriter(out, {})
        for n in range(200):  # several of gzip's blocks
            events = [("s", version, "T", b'{"n":%d}' % (version * n)) for version in range(1, 60)]
            writer.add(SessionStreams(f"{n:032x}", None, None, [Stream(f"{n:032x}", "Session", events)]))
        writer.finish()
    import hashlib

    assert out.sha256 == files.sha256(target) == hashlib.sha256(Path(target).read_bytes()).hexdigest()
    assert gzip.decompress(Path(target).read_bytes()).count(b"\n") == 1 + 200 * (1 + 59 + 1) + 1


def test_the_compressing_thread_keeps_the_text_in_order(tmp_path: Path) -> None:
    """More text than the thread's queue holds, in writes of every size: the file is that text, in order."""
    import random

    from agentledger.infrastructure.archive_files import ArchiveFileSystem

    chance = random.Random(20)
    pieces = [chance.randbytes(chance.choice([1, 100, 70_000, 1_500_000])) for _ in range(30)]
    target = tmp_path / "a.ndjson.gz"
    with ArchiveFileSystem(tmp_path).create(str(target)) as out:
        for piece in pieces:
            assert out.write(piece) == len(piece)
    assert gzip.decompress(target.read_bytes()) == b"".join(pieces)
    assert not any(thread.name == "archive-gzip" for thread in threading.enumerate())


def test_an_error_in_the_compressing_thread_is_raised_in_the_writer() -> None:
    """A failed write of the compressed file (a full disk) is the writer's error, at its next write or at the
    close, and the thread takes what follows without blocking the writer."""
    from agentledger.infrastructure import archive_files

    class FillsUp:
        written = 0

        def write(self, data: bytes) -> int:
            self.written += len(data)
            if self.written > 2 << 20:
                raise OSError(28, "No space left on device")
            return len(data)

    compressing = archive_files._CompressingWriter(FillsUp())  # type: ignore[arg-type]  # a file-like stand-in
    for _ in range(3):  # the third block fails in the thread, after the writer handed it over
        compressing.write(b"x" * (1 << 20))
    with pytest.raises(OSError, match="No space left"):
        compressing.close()
    assert not compressing._thread.is_alive()
    with pytest.raises(OSError, match="No space left"):  # and the next block handed over says so at once
        compressing.write(b"x" * (1 << 20))


def test_a_failed_writer_leaves_no_file_and_no_thread(tmp_path: Path) -> None:
    from agentledger.infrastructure.archive_files import ArchiveFileSystem

    target = tmp_path / "a.ndjson.gz"
    with pytest.raises(RuntimeError, match="formatting failed"), ArchiveFileSystem(tmp_path).create(str(target)) as out:
        out.write(b"x" * (3 << 20))
        raise RuntimeError("formatting failed")
    assert list(tmp_path.iterdir()) == []
    assert not any(thread.name == "archive-gzip" for thread in threading.enumerate())


@pytest.mark.sqlite_only
def test_sqlite_deletes_archived_events_in_table_order(store: Any) -> None:
    """The rowids come from the primary-key index; the table is then walked in rowid order (each page once)."""
    from agentledger.infrastructure.retention import _delete_events

    plan = [row[3] for row in store.db.execute(f"EXPLAIN QUERY PLAN {_delete_events(store, '?,?')}", ("a", "b"))]
    assert any("USING INTEGER PRIMARY KEY (rowid=?)" in step for step in plan), plan
    assert any("COVERING INDEX sqlite_autoindex_stored_events_1 (originator_id=?)" in step for step in plan), plan


def test_coalescing_keeps_the_fuse_live_and_lapsed_when_it_was() -> None:
    """A run is cut to its ends, the first saying how long the left-out heartbeats kept the fuse live; a
    heartbeat that makes a lapsed fuse live again starts a new run (the lapse is kept); one that comes after
    a lapse but does not end it (its expiry already past) stays in the run, which then ends at the lapse.
    Replaying what is kept gives the fuse's liveness at every moment as the whole stream does."""
    from datetime import datetime, timedelta, timezone

    import orjson

    from agentledger.application.archive_format import HEARTBEAT_TOPIC, coalesce_heartbeats
    from agentledger.domain.session import Session, heartbeat_expiry

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def stored(moment: datetime) -> dict[str, str]:
        return {"_type_": "datetime_iso", "_data_": moment.isoformat()}

    def beat(version: int, at: float, expires: float) -> tuple[str, int, str, bytes]:
        state = {"timestamp": stored(start + timedelta(seconds=at)), "source": "t",
                 "fuse_expires_at": stored(start + timedelta(seconds=expires)), "clock_offset": None}
        return ("a" * 32, version, HEARTBEAT_TOPIC, orjson.dumps(state))

    # TTL 3: live through 1..5 (each beat before the last's expiry), lapsed at 8, made live again at 20,
    # then beats that came late with expiries already past (a sender's clock behind) until 40
    times = [(1, 4), (2, 5), (3, 6), (4, 7), (5, 8), (20, 23), (21, 24), (22, 25), (30, 26), (35, 27), (40, 28)]
    rows = [beat(version, at, expires) for version, (at, expires) in enumerate(times, start=2)]
    kept = coalesce_heartbeats(rows, before=1e12)
    assert [row[1] for row in kept] == [2, 6, 7, 12]  # 1..5 and 20..40: two runs, each cut to its ends

    def live_at(events: list[tuple[str, int, str, bytes]], moment: float) -> bool:
        expiry = None
        for row in events:
            state = orjson.loads(row[3])
            if datetime.fromisoformat(state["timestamp"]["_data_"]) > start + timedelta(seconds=moment):
                break
            event = Session.Heartbeat.__new__(Session.Heartbeat)
            event.__dict__.update(state, fuse_expires_at=datetime.fromisoformat(state["fuse_expires_at"]["_data_"]))
            if "window_expires_at" in state:
                event.__dict__["window_expires_at"] = datetime.fromisoformat(state["window_expires_at"]["_data_"])
            expiry = heartbeat_expiry(event)
        return expiry is not None and expiry > start + timedelta(seconds=moment)

    for tenth in range(10, 450):
        assert live_at(kept, tenth / 10) == live_at(rows, tenth / 10), tenth / 10


def test_only_a_gap_its_coalesced_heartbeat_announces_is_written_or_read(monkeypatch: Any) -> None:
    """The format: a stream may skip versions only where the heartbeat after them counts them. Such files are
    format 2, which a format 1 reader refuses by name (a newer format, not damage); format 1 files are still
    read."""
    import io

    import orjson

    from agentledger.application.archive_format import (
        HEARTBEAT_TOPIC,
        ArchiveDamaged,
        ArchiveReader,
        ArchiveTooNew,
        ArchiveWriter,
        SessionStreams,
        Stream,
        coalesce_heartbeats,
    )
    from agentledger.application.errors import LedgerError

    def beat(version: int, second: int) -> tuple[str, int, str, bytes]:
        state = {"timestamp": {"_type_": "datetime_iso", "_data_": f"2026-01-01T00:00:{second:02d}+00:00"},
                 "source": "t", "fuse_expires_at": None, "clock_offset": None}
        return ("a" * 32, version, HEARTBEAT_TOPIC, orjson.dumps(state))

    launched = ("a" * 32, 1, "agentledger.domain.session:Session.Launched", b"{}")
    rows = [launched, *(beat(v, v) for v in range(2, 8))]
    kept = coalesce_heartbeats(rows, before=1767225605.0)  # 2026-01-01T00:00:05Z: versions 2-4 are older
    assert [r[1] for r in kept] == [1, 2, 4, 5, 6, 7] and orjson.loads(kept[2][3])["coalesced"] == 1

    def written(stream_rows: list[Any]) -> bytes:
        out = io.BytesIO()
        writer = ArchiveWriter(out, {})
        writer.add(SessionStreams("a" * 32, None, None, [Stream("a" * 32, "Session", stream_rows)]))
        writer.finish()
        return out.getvalue()

    assert ArchiveReader(io.BytesIO(written(kept)).readlines()).check().events == 6
    with pytest.raises(LedgerError, match="version 4 where 3 was expected"):
        written([r for r in rows if r[1] != 3])  # a gap no heartbeat announces is never archived
    lying = [*kept[:2], beat(4, 4), *kept[3:]]  # version 4 without its count: the reader refuses it
    text = written(kept).replace(kept[2][3], lying[2][3])
    with pytest.raises(ArchiveDamaged, match="version 4 where 3 was expected"):
        ArchiveReader(io.BytesIO(text).readlines()).check()
    from agentledger.application import archive_format

    for version, readable in ((1, True), (3, False)):
        monkeypatch.setattr(archive_format, "FORMAT_VERSION", version)
        lines = io.BytesIO(written(rows)).readlines()
        assert lines[0].startswith(b'{"agentledger_archive":%d' % version)
        if readable:
            assert ArchiveReader(lines).check().events == 7
        else:
            with pytest.raises(ArchiveTooNew, match=r"archive format 3, newer than this version of agentledger reads "
                                                   r"\(formats 1, 2\): upgrade"):
                ArchiveReader(lines).check()


@pytest.mark.parametrize("topic", ["agentledger.domain.session:Session.Heartbeat", 'odd "topic" \\ é\u2028'])
def test_event_lines_are_the_bytes_orjson_writes(topic: str) -> None:
    """The hand-formatted lines are exactly ``orjson.dumps`` of each line's object, the state as it is."""
    import orjson

    from agentledger.application.archive_format import Stream, event_lines

    rows = [("ab" * 16, version, topic, orjson.dumps({"n": version, "s": "é\t"})) for version in (1, 2, 3)]
    expected = [orjson.dumps({"stream": "ab" * 16, "version": row[1], "topic": topic, "state": orjson.Fragment(row[3])},
                             option=orjson.OPT_APPEND_NEWLINE) for row in rows]
    assert event_lines(Stream("ab" * 16, "Session", rows)) == expected
