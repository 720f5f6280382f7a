"""``db archive`` at its edges: the paths it records and refuses, its part files, its checksums, its notes, its JSON.

Each test is one finding of a walkthrough, made real: a store file (or a
PostgreSQL schema) in the test's home, the CLI run as a user runs it, and
what it said and left on disk looked at afterwards.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import dead_identity, no_real_fault, record
from test_archive import archive, events_of, one_line_error, stopped


def _later_session(store: Any, spawn: Any) -> str:
    """A running session recorded last: it holds the log's last event, so the ones before it can be archived."""
    return record(store, dead_identity(spawn), fuse_ttl=3600, lapsed=False).hex


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


# -- 1. the path recorded -------------------------------------------------------------------------------------


def test_a_relative_out_is_recorded_as_an_absolute_path(cli: Any, store: Any, spawn: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    old = stopped(store, spawn)
    _later_session(store, spawn)
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    result = cli("db", "archive", "--stopped-before", "1ms", "--out", "rel.ndjson.gz", "--json")
    absolute = str(work / "rel.ndjson.gz")
    assert json.loads(result.stdout)["path"] == absolute
    [row] = cli.json_lines("db", "archive", "list")
    assert row["archive_path"] == absolute
    monkeypatch.chdir(elsewhere)
    line = one_line_error(cli("why", old, check=False), 1)
    assert f"'agentledger db import {absolute}'" in line
    assert "imported 1 session" in cli("db", "import", absolute).stdout  # the command it gave works from anywhere


# -- 2. the default name ----------------------------------------------------------------------------------------


def test_the_default_name_never_clashes_with_one_taken(cli: Any, store: Any, spawn: Any, home: Path) -> None:
    """The time to the second names the file; a name taken (by a file or a part file) gets -2, -3, ...: two
    archives in one second never clash, and nothing is overwritten."""
    directory = home / "archive"
    directory.mkdir(parents=True, mode=0o700)
    now = datetime.now(timezone.utc)
    taken: dict[Path, str] = {}
    for second in range(-1, 15):  # every name the next seconds could take: the run must go past them
        stamp = (now + timedelta(seconds=second)).strftime("%Y%m%dT%H%M%SZ")
        taken[directory / f"sessions-{stamp}.ndjson.gz"] = f"mine {second}"
        taken[_part(directory / f"sessions-{stamp}-2.ndjson.gz")] = f"a part {second}"
    for path, text in taken.items():
        path.write_text(text)
    paths = []
    for _ in range(2):
        stopped(store, spawn)
        _later_session(store, spawn)
        paths.append(cli.json("db", "archive", "--stopped-before", "1ms")["path"])
    assert paths[0] != paths[1] and all(path.endswith(("-3.ndjson.gz", "-4.ndjson.gz")) for path in paths), paths
    assert all(cli("db", "archive", "verify", path).returncode == 0 for path in paths)
    assert {path: path.read_text() for path in taken} == taken


# -- 3. which sha256 is which ------------------------------------------------------------------------------------


def test_the_file_s_sha256_is_shown_as_sha256sum_prints_it(cli: Any, store: Any, spawn: Any,
                                                           tmp_path: Path) -> None:
    stopped(store, spawn)
    _later_session(store, spawn)
    out = tmp_path / "a.ndjson.gz"
    result = cli("db", "archive", "--stopped-before", "1ms", "--out", str(out))
    file_sha256 = hashlib.sha256(out.read_bytes()).hexdigest()
    assert f"file sha256 {file_sha256}," in result.stdout
    verified = cli.json("db", "archive", "verify", str(out))
    assert verified["file_sha256"] == file_sha256
    trailer = orjson.loads(gzip.decompress(out.read_bytes()).splitlines()[-1])
    assert verified["sha256"] == trailer["sha256"] != file_sha256  # the uncompressed lines', not the file's
    assert f"file sha256 {file_sha256};" in cli("db", "archive", "verify", str(out)).stdout
    stopped(store, spawn)
    _later_session(store, spawn)
    second = tmp_path / "b.ndjson.gz"
    answer = cli.json("db", "archive", "--stopped-before", "1ms", "--out", str(second))
    assert answer["file_sha256"] == hashlib.sha256(second.read_bytes()).hexdigest()
    assert answer["sha256"] == cli.json("db", "archive", "verify", str(second))["sha256"]


# -- 4. a part file left behind -----------------------------------------------------------------------------------


def test_a_part_file_left_by_a_dead_archive_is_replaced(cli: Any, store: Any, spawn: Any, tmp_path: Path) -> None:
    """A crash leaves ``FILE.part``, whose lock died with its writer: the next archive replaces it. Its inode is
    not written over (a part file hard-linked to an archive, by a crash between link and unlink, stays whole)."""
    stopped(store, spawn)
    _later_session(store, spawn)
    out = tmp_path / "p.ndjson.gz"
    kept = tmp_path / "kept.ndjson.gz"
    kept.write_bytes(b"an archive of before")
    os.link(kept, _part(out))
    archive(cli, out)
    assert not _part(out).exists()
    assert cli("db", "archive", "verify", str(out)).returncode == 0
    assert kept.read_bytes() == b"an archive of before"


def test_a_part_file_being_written_is_refused(cli: Any, store: Any, spawn: Any, tmp_path: Path) -> None:
    old = stopped(store, spawn)
    _later_session(store, spawn)
    out = tmp_path / "p.ndjson.gz"
    part = _part(out)
    with open(part, "wb") as writing:  # another archive, at work: its lock is held
        writing.write(b"half an archive")
        fcntl.flock(writing.fileno(), fcntl.LOCK_EX)
        line = one_line_error(archive(cli, out, check=False), 1)
    assert f"cannot write the archive {out}: {part} is being written by another" in line
    assert part.read_bytes() == b"half an archive" and not out.exists()
    assert events_of(store, old) > 0


def test_a_part_file_that_is_not_a_file_is_named(cli: Any, store: Any, spawn: Any, tmp_path: Path) -> None:
    stopped(store, spawn)
    _later_session(store, spawn)
    out = tmp_path / "p.ndjson.gz"
    _part(out).symlink_to(tmp_path / "elsewhere")
    line = one_line_error(archive(cli, out, check=False), 1)
    assert str(_part(out)) in line and "remove it" in line
    assert not (tmp_path / "elsewhere").exists() and _part(out).is_symlink()


# -- 5. a store that refuses the removal ---------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_a_read_only_store_is_refused_before_a_file_is_written(cli: Any, store: Any, spawn: Any, home: Path,
                                                               tmp_path: Path) -> None:
    import sqlite3

    old = stopped(store, spawn)
    _later_session(store, spawn)
    if os.geteuid() != 0:
        no_real_fault("a read-only mount needs root")
    cli("list", "--all")  # the read models caught up, and the WAL into the file (a read-only one is immutable)
    sqlite3.connect(home / "ledger.db").execute("PRAGMA wal_checkpoint(TRUNCATE)").connection.close()
    mounted = subprocess.run(f"mount --bind {home} {home} && mount -o remount,ro,bind {home}", shell=True,
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        no_real_fault(f"cannot mount the home read-only ({mounted.stderr.strip()})")
    out = tmp_path / "a.ndjson.gz"
    try:
        line = one_line_error(archive(cli, out, check=False), 1)
        assert "read-only" in line
        assert not out.exists() and not _part(out).exists()
    finally:
        subprocess.run(["umount", "-l", str(home)], capture_output=True)
    assert events_of(store, old) > 0
    assert "archived 1 session" in archive(cli, out).stdout  # the same --out, once the store takes writes


def test_a_removal_that_fails_deletes_the_redundant_file(store: Any, spawn: Any, tmp_path: Path) -> None:
    """The removal is one transaction: refused (here: a stream changed meanwhile), it removed nothing, so the file
    is deleted and the same --out can be used again."""
    from agentledger.application.archiving import archive as run_archive
    from agentledger.application.archiving import plan_archive
    from agentledger.application.errors import StreamsChanged
    from agentledger.infrastructure.archive_files import ArchiveFileSystem

    old = stopped(store, spawn)
    _later_session(store, spawn)

    class Racing(ArchiveFileSystem):
        def sha256(self, path: str) -> str:  # while the file is read back, someone appends to an archived stream
            from agentledger.domain.stop_hooks import StopHook

            store.ledger.save(StopHook(session_id=old, command="true", host="h", claimed_by={}))
            return super().sha256(path)

    out = tmp_path / "a.ndjson.gz"
    with pytest.raises(StreamsChanged, match=f"nothing was removed; run the archive again; the new archive {out} "
                                             r"was deleted \(the store kept every session of it\)"):
        run_archive(store, Racing(tmp_path), plan_archive(store, 1e12), path=str(out), header={}, now=0.0)
    assert not out.exists() and not _part(out).exists()
    assert events_of(store, old) > 0


def test_a_removal_that_went_through_keeps_the_file(store: Any, spawn: Any, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A removal that raised after it committed (a connection lost on COMMIT): the sessions are gone from the
    store, so the file is the only copy: kept, whatever the error says."""
    from agentledger.application.archiving import archive as run_archive
    from agentledger.application.archiving import plan_archive
    from agentledger.application.errors import StoreError
    from agentledger.infrastructure.archive_files import ArchiveFileSystem
    from agentledger.infrastructure.retention import SqlRetention

    old = stopped(store, spawn)
    _later_session(store, spawn)
    removing = SqlRetention.remove

    def committed_then_lost(self: SqlRetention, *args: Any) -> None:
        removing(self, *args)
        raise OSError(5, "Input/output error")  # the store's classifier reads EIO as its fault

    monkeypatch.setattr(SqlRetention, "remove", committed_then_lost)
    out = tmp_path / "a.ndjson.gz"
    with pytest.raises(StoreError, match=f"the archive {out} is kept: sessions of it are no longer in the store"):
        run_archive(store, ArchiveFileSystem(tmp_path), plan_archive(store, 1e12), path=str(out), header={}, now=0.0)
    assert out.exists() and events_of(store, old) == 0


# -- 6, 7. what is said, where; the dry run -----------------------------------------------------------------------


def test_nothing_to_archive_is_a_note_on_stderr(cli: Any, store: Any, spawn: Any, tmp_path: Path) -> None:
    result = archive(cli, tmp_path / "a.ndjson.gz")
    assert result.stdout == ""
    assert one_line_error(result, 0).startswith("agentledger: nothing to archive: no session stopped before ")
    held = stopped(store, spawn)  # the only one, and it holds the log's last event
    line = one_line_error(archive(cli, tmp_path / "a.ndjson.gz"), 0)
    assert "nothing to archive: the only session stopped before" in line and held[:12] in line
    assert "holds the log's last event" in line and "no session stopped" not in line
    assert not (tmp_path / "a.ndjson.gz").exists()


def test_the_dry_run_says_what_the_real_run_does(cli: Any, store: Any, spawn: Any, tmp_path: Path) -> None:
    """Its table has each session's events; the held-back session is the same note on stderr; its JSON has the
    real run's shape: ``sessions`` a list of objects, ``session_count`` their number."""
    old = [stopped(store, spawn, beats=4), stopped(store, spawn, beats=1)]
    held = stopped(store, spawn)  # holds the log's last event
    dry = cli("db", "archive", "--stopped-before", "1ms", "--dry-run")
    header, *rows = dry.stdout.splitlines()[:-1]
    assert header.split() == ["ID", "NAME", "STOPPED", "EVENTS"]
    assert {row.split()[0]: int(row.split()[-1]) for row in rows} == {sid[:12]: events_of(store, sid) for sid in old}
    assert dry.stdout.splitlines()[-1].startswith(f"would archive 2 sessions ({sum(events_of(store, s) for s in old)} events)")
    assert f"session {held[:12]} holds the log's last event" in one_line_error(dry, 0)
    counts = {sid: events_of(store, sid) for sid in old}
    planned = cli.json("db", "archive", "--stopped-before", "1ms", "--dry-run")
    done = cli.json("db", "archive", "--stopped-before", "1ms", "--out", str(tmp_path / "a.ndjson.gz"))
    for answer in (planned, done):
        assert answer["session_count"] == 2 and answer["deferred"] == [held]
        assert {s["id"]: s["events"] for s in answer["sessions"]} == counts
        assert set(answer["sessions"][0]) == {"id", "name", "stopped_at", "events"}
        assert answer["events"] == sum(s["events"] for s in answer["sessions"])
    assert planned["dry_run"] is True and done["dry_run"] is False and planned["path"] is None


# -- 8. zero ------------------------------------------------------------------------------------------------------


def test_an_age_of_zero_means_now(cli: Any, store: Any, spawn: Any, tmp_path: Path) -> None:
    stopped(store, spawn, beats=5)
    _later_session(store, spawn)
    assert cli.json("db", "archive", "--stopped-before", "0s", "--dry-run")["session_count"] == 1
    result = archive(cli, tmp_path / "a.ndjson.gz", "--coalesce-heartbeats", "0")
    assert "3 heartbeats coalesced" in result.stdout
    assert "takes a value >= 0" in one_line_error(cli("db", "archive", "--stopped-before", "-5s", check=False), 2)


# -- 9. what --out may name ---------------------------------------------------------------------------------------


def test_an_empty_out_is_a_usage_error(cli: Any) -> None:
    assert "--out needs a file name" in one_line_error(
        cli("db", "archive", "--stopped-before", "1d", "--out", "", check=False), 2)


@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_a_symbolic_link_at_out_is_never_replaced(cli: Any, store: Any, spawn: Any, tmp_path: Path,
                                                  kind: str) -> None:
    old = stopped(store, spawn)
    _later_session(store, spawn)
    out = tmp_path / "a.ndjson.gz"
    out.symlink_to(tmp_path / "nowhere" if kind == "dangling" else out)
    assert "exists already" in one_line_error(archive(cli, out, check=False), 1)
    assert out.is_symlink() and os.readlink(out) == str(tmp_path / "nowhere" if kind == "dangling" else out)
    assert events_of(store, old) > 0


def test_an_output_path_the_system_refuses_is_one_usual_line(cli: Any, store: Any, spawn: Any, home: Path,
                                                             tmp_path: Path) -> None:
    old = stopped(store, spawn)
    _later_session(store, spawn)
    long = tmp_path / ("x" * 300 + ".gz")
    line = one_line_error(archive(cli, long, check=False), 1)
    assert line.startswith(f"agentledger: cannot write the archive {long}: File name too long"), line
    (home / "archive").write_text("not a directory")
    line = one_line_error(cli("db", "archive", "--stopped-before", "1ms", check=False), 1)
    assert line.startswith(f"agentledger: cannot write the archive {home / 'archive'}/sessions-"), line
    assert line.endswith(f"{home / 'archive'} is not a directory")
    assert events_of(store, old) > 0


# -- 10. a newer format -------------------------------------------------------------------------------------------


def test_a_newer_format_is_named_not_called_damaged(cli: Any, tmp_path: Path) -> None:
    newer = tmp_path / "fmt99.ndjson.gz"
    newer.write_bytes(gzip.compress(b'{"agentledger_archive":99,"created_at":"2030-01-01T00:00:00Z"}\n'))
    for command in (("db", "archive", "verify"), ("db", "import")):
        line = one_line_error(cli(*command, str(newer), check=False), 1)
        assert line == (f"agentledger: {newer} is archive format 99, newer than this version of agentledger reads "
                        "(formats 1, 2): upgrade agentledger to read it")


# -- 11. heartbeats coalesced by an earlier archive ----------------------------------------------------------------


def test_a_re_archived_coalesced_session_says_who_coalesced(cli: Any, store: Any, spawn: Any,
                                                            tmp_path: Path) -> None:
    sid = stopped(store, spawn, beats=8)
    _later_session(store, spawn)
    first = tmp_path / "first.ndjson.gz"
    assert "6 heartbeats coalesced)" in archive(cli, first, "--coalesce-heartbeats", "1ms").stdout
    assert cli.json("db", "archive", "verify", str(first))["coalesced_heartbeats"] == 6
    cli("db", "import", str(first))
    _later_session(store, spawn)  # the imported events are the log's last
    again = tmp_path / "again.ndjson.gz"
    result = archive(cli, again)  # no --coalesce-heartbeats: the gaps are the earlier archive's
    assert f"({events_of_file(again)} events, 6 heartbeats coalesced by an earlier archive)" in result.stdout
    verified = cli.json("db", "archive", "verify", str(again))
    assert verified["coalesced_heartbeats_before"] is None and verified["coalesced_heartbeats"] == 6
    assert "6 heartbeats coalesced by an earlier archive" in cli("db", "archive", "verify", str(again)).stdout
    cli("db", "import", str(again))
    assert cli.json("status", sid)["heartbeat_count"] == 8


def events_of_file(path: Path) -> int:
    return sum(b'"stream":' in line for line in gzip.decompress(path.read_bytes()).splitlines())


# -- 12. not a regular file ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_verify_and_import_refuse_what_is_not_a_file(cli: Any, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "a.ndjson.gz"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    for command in (("db", "archive", "verify"), ("db", "import")):
        line = one_line_error(cli(*command, str(path), check=False, timeout=20), 1)
        assert line.startswith(f"agentledger: cannot read {path}: not a regular file"), line
