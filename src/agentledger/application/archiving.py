"""Retention without losing the audit: ``db archive`` moves stopped sessions' streams into a file, ``db import``
puts them back.

A session is archived whole: its own stream and every aggregate keyed by it
(its on-stop hook's ``StopHook``, its worktree's ``Workspace``), read verbatim
through the ``RawLog`` port, as ``db copy`` reads them. Only sessions whose
``Stopped`` is older than the cutoff are taken: a session not stopped is
never archived, and Stopped is final, so nothing more is appended to it.

The order is what makes it safe to interrupt anywhere:

0. the store must take writes (``Retention.check_writable``): a read-only
   store is refused before a file is written that could not be used;
1. the archive is written to a part file, ``fsync``'d and put in place
   (``ArchiveFiles.create``), its compressed bytes hashed on their way;
2. it is read back from disk and must hash the same (``ArchiveFiles.sha256``):
   the file holds, byte for byte, what was written;
3. only then, in one transaction, the streams' events and snapshots, the
   sessions' read-model rows are deleted and ``archived_sessions`` records
   where each went; the transaction first checks that no stream changed since
   it was read (else nothing is deleted: :class:`StreamsChanged`).

A crash before 3 leaves the store as it was (and perhaps a file to delete);
3 is all or nothing. If 3 fails, and the store is seen to hold every archived
stream still, the new file is redundant and is deleted, so that the same
``--out`` can be tried again; if that cannot be seen (or a stream is gone: the
commit went through after all), the file is kept. ``archived_sessions`` is not
a read model: ``db rebuild`` leaves it, so ``why`` still says where an
archived session went.

Two checksums are about: the file's (the sha256 of its compressed bytes, what
``sha256sum FILE`` prints: ``ArchiveResult.file_sha256``) and the trailer's
(the sha256 of the uncompressed lines before it, which ``verify`` checks
wherever the file is copied or recompressed: ``ArchiveResult.sha256``).
``archived_sessions.checksum`` is a third: each session's, of its own lines.

Importing checks the whole file first, then appends each session's streams
(skipping sessions whose stream is already in the store, so importing twice
is harmless), forgets their archived rows, and catches the read models up.
Re-imported events get new log positions, after everything already in the
log: session ids, versions and times are unchanged, positions are not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from agentledger.application.archive_format import (
    ArchiveDamaged,
    ArchiveReader,
    ArchiveTooNew,
    ArchiveWriter,
    ReadSession,
    SessionStreams,
    Stream,
    WrittenSession,
    coalesce_heartbeats,
)
from agentledger.application.errors import AlreadyStored, LedgerError, StoreError, StoreFault
from agentledger.application.ports import ArchivedRecord
from agentledger.domain.stop_hooks import stop_hook_id
from agentledger.domain.workspace import workspace_id

if TYPE_CHECKING:
    from agentledger.application.ports import ArchiveFiles, Row, Store

#: Events per atomic insert when importing.
IMPORT_BATCH = 2000
#: Sessions whose streams are read in one query when archiving.
READ_BATCH = 100


@dataclass
class ArchivePlan:
    """The sessions an archive takes (and those it leaves for next time, holding the log's last event)."""

    cutoff: float
    sessions: list[Row]
    deferred: list[str] = field(default_factory=list)


@dataclass
class ArchiveResult:
    """What ``db archive`` did: the file, its sessions and events, its size and checksums, the time it took."""

    path: str | None
    sessions: int
    events: int
    bytes: int = 0
    sha256: str = ""  # the trailer's: of the uncompressed lines (``verify --json``'s ``sha256``)
    seconds: float = 0.0
    deferred: list[str] = field(default_factory=list)
    dry_run: bool = False
    coalesced: int = 0  # the streams' versions the file leaves out: heartbeats coalesced, now or by an earlier archive
    coalesced_now: int = 0  # of those, the ones this archive left out (--coalesce-heartbeats)
    file_sha256: str = ""  # the file's: of its compressed bytes, as ``sha256sum FILE`` prints it
    written: list[WrittenSession] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The scalars (the entry point adds the sessions, with their times as it writes them)."""
        return {"path": self.path, "session_count": self.sessions, "events": self.events, "bytes": self.bytes,
                "file_sha256": self.file_sha256, "sha256": self.sha256, "seconds": round(self.seconds, 3),
                "deferred": self.deferred, "dry_run": self.dry_run, "coalesced_heartbeats": self.coalesced,
                "coalesced_by_this_archive": self.coalesced_now}


@dataclass
class ImportResult:
    """What ``db import`` did: sessions put back, already present, refused (a stream of theirs is in the store)."""

    path: str
    imported: int = 0
    events: int = 0
    present: int = 0
    conflicts: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "imported": self.imported, "events": self.events, "already_present": self.present,
                "conflicts": self.conflicts, "seconds": round(self.seconds, 3)}


def plan_archive(store: Store, cutoff: float) -> ArchivePlan:
    """The stopped sessions whose ``Stopped`` is before ``cutoff`` (epoch seconds), read models caught up first."""
    store.read_models.catch_up()
    retention = store.retention
    rows = retention.stopped_before(cutoff)
    owner = retention.last_event_owner()
    keep = {row["id"] for row in rows if owner in session_streams(row["id"])}
    return ArchivePlan(cutoff, [row for row in rows if row["id"] not in keep], sorted(keep))


def planned_events(store: Store, plan: ArchivePlan) -> dict[str, int]:
    """Each planned session's events in the live log, all its streams (``--dry-run``): one seek per stream."""
    keyed = {row["id"]: session_streams(row["id"]) for row in plan.sessions}
    lengths = store.retention.stream_lengths([stream for streams in keyed.values() for stream in streams])
    return {session: sum(lengths.get(stream, 0) for stream in streams) for session, streams in keyed.items()}


def session_streams(session_id: str) -> dict[str, str]:
    """Every aggregate keyed by the session (hex id -> kind), its own first."""
    return {session_id: "Session", stop_hook_id(session_id).hex: "StopHook", workspace_id(session_id).hex: "Workspace"}


def archive(store: Store, files: ArchiveFiles, plan: ArchivePlan, *, path: str | None, header: dict[str, Any],
            now: float, coalesce_before: float | None = None) -> ArchiveResult:
    """Write, check, then remove ``plan``'s sessions (see the module's docstring for the order); with
    ``coalesce_before`` (epoch seconds), the runs of heartbeats older than that are cut to their first and last
    in the file (``archive_format.coalesce_heartbeats``)."""
    started = time.perf_counter()
    if not plan.sessions:
        return ArchiveResult(None, 0, 0, deferred=plan.deferred)
    store.retention.check_writable()  # a file the store could not then let go of would only be in the way
    target = path or files.default_path()
    with files.create(target) as out:
        writer = ArchiveWriter(out, header)
        lengths, read = _write_sessions(store, writer, plan.sessions, coalesce_before)
        digest = writer.finish()
    file_digest = files.sha256(target)
    if file_digest != out.sha256:
        raise ArchiveDamaged(f"{target} does not read back as written: nothing was removed from the store")
    written = writer.written
    _remove(store, files, target, [_record(session, target, now) for session in written], lengths)
    events = _events(written)
    return ArchiveResult(target, len(written), events, _size(target), digest, time.perf_counter() - started,
                         plan.deferred, coalesced=sum(lengths.values()) - events, coalesced_now=read - events,
                         file_sha256=file_digest, written=written)


def _remove(store: Store, files: ArchiveFiles, target: str, records: list[ArchivedRecord],
            lengths: dict[str, int]) -> None:
    """Step 3; if it fails, the error says what became of the new file (``_settle_file``): deleted if the store
    is seen to hold every archived stream still, else kept. An error that is not the store's (a bug) is raised
    as it is."""
    try:
        store.retention.remove(records, lengths)
    except Exception as error:
        note = _settle_file(store, files, target, lengths)
        if isinstance(error, LedgerError):
            error.args = (f"{error}; {note}",)
            raise
        fault = _fault(store, error)
        if fault is None:
            raise
        raise StoreError(f"{fault.describe(error)}; {note}") from error


def _settle_file(store: Store, files: ArchiveFiles, target: str, lengths: dict[str, int]) -> str:
    """After a failed removal: delete the new file if the store still holds every archived stream whole (the
    removal is one transaction, so it did nothing: the file is redundant); never if one may be gone."""
    try:
        now = store.retention.stream_lengths(list(lengths))
    except Exception:  # noqa: BLE001 - the store away: keep the file, and say so
        return (f"the archive {target} is kept (whether the store still holds its sessions cannot be seen now: "
                "'agentledger db archive list' says which were archived)")
    if any(now.get(stream, 0) < length for stream, length in lengths.items()):
        return f"the archive {target} is kept: sessions of it are no longer in the store"
    try:
        files.remove(target)
    except LedgerError as error:
        return f"the store kept every session of the new archive {target}, which is redundant ({error}): delete it"
    return f"the new archive {target} was deleted (the store kept every session of it)"


def _fault(store: Store, error: Exception) -> StoreFault | None:
    """How the store's classifier reads ``error`` (full, read-only, ...), None if it is not the store's."""
    try:
        return store.ledger.classify_fault(error)
    except Exception:  # noqa: BLE001 - no ledger to ask: not a fault it can name
        return None


def _write_sessions(store: Store, writer: ArchiveWriter, sessions: Sequence[Row],
                    coalesce_before: float | None) -> tuple[dict[str, int], int]:
    """Write the sessions, ``READ_BATCH`` per query; the length (last version) of every stream keyed by them (0:
    it has none), and the events read from the log (more than written if heartbeats were coalesced now)."""
    lengths: dict[str, int] = {}
    read = 0
    for start in range(0, len(sessions), READ_BATCH):
        batch = sessions[start:start + READ_BATCH]
        keyed = {row["id"]: session_streams(row["id"]) for row in batch}
        lengths.update((stream, 0) for streams in keyed.values() for stream in streams)
        found, count = _read_sessions(store, batch, keyed, coalesce_before)
        read += count
        for session in found:
            writer.add(session)
            lengths.update((stream.id, stream.events[-1][1]) for stream in session.streams)
    return lengths, read


def _read_sessions(store: Store, rows: Sequence[Row], keyed: dict[str, dict[str, str]],
                   coalesce_before: float | None) -> tuple[list[SessionStreams], int]:
    """The sessions' whole streams (``keyed``: theirs by session), read in one query (``RawLog.streams``), each
    session's own first; its heartbeats coalesced if ``coalesce_before`` is given; and the events read."""
    found = store.raw_log.streams([stream for streams in keyed.values() for stream in streams])
    read = sum(len(events) for events in found.values())
    if coalesce_before is not None:
        found.update((row["id"], coalesce_heartbeats(found[row["id"]], coalesce_before))
                     for row in rows if row["id"] in found)
    return [SessionStreams(row["id"], row["name"], row["stopped_at"],
                           [Stream(stream, kind, found[stream]) for stream, kind in keyed[row["id"]].items()
                            if stream in found]) for row in rows], read


def _record(session: WrittenSession, path: str, now: float) -> ArchivedRecord:
    return ArchivedRecord(session.session_id, session.name, path, now, session.stopped_at, session.events,
                          session.sha256)


def _events(written: Sequence[WrittenSession]) -> int:
    return sum(session.events for session in written)


def _size(path: str) -> int:
    import os

    return os.path.getsize(path)


def _checked(files: ArchiveFiles, path: str, decode: Callable[[Any], Any] | None) -> ArchiveReader:
    """The whole file read and checked; what is wrong names the file (a newer format is not called damage)."""
    with files.lines(path) as lines:
        reader = ArchiveReader(lines, decode=decode)
        try:
            reader.check()
        except ArchiveTooNew as error:
            raise ArchiveTooNew(f"{path} is {error}") from None
        except ArchiveDamaged as error:
            raise ArchiveDamaged(f"{path} is damaged: {error}") from None
    return reader


def verify_archive(files: ArchiveFiles, path: str, decode: Callable[[Any], Any]) -> ArchiveReader:
    """``db archive verify``: the checked reader (``summary``, ``header``, ``undecodable``)."""
    return _checked(files, path, decode)


def import_archive(store: Store, files: ArchiveFiles, path: str) -> ImportResult:
    """Check the whole file, then put its sessions back (those not already in the store) and catch up."""
    started = time.perf_counter()
    _checked(files, path, None)  # a damaged file is refused before anything is written
    result = ImportResult(path)
    with files.lines(path) as lines:
        _import_sessions(store, ArchiveReader(lines).sessions(), result)
    store.read_models.catch_up()
    result.seconds = time.perf_counter() - started
    return result


def _import_sessions(store: Store, sessions: Iterable[ReadSession], result: ImportResult) -> None:
    batch: list[ReadSession] = []
    done: list[str] = []
    for session in sessions:
        present = store.retention.stream_lengths([stream_id for stream_id, _, _ in session.streams])
        if session.session_id in present:
            result.present += 1
            done.append(session.session_id)
        elif present:
            result.conflicts.append(f"session {session.session_id[:12]}: its stream {next(iter(present))[:12]} is "
                                    "in the store already (written after the archive?); not imported")
        else:
            batch.append(session)
            if sum(s.events for s in batch) >= IMPORT_BATCH:
                done += _append(store, batch, result)
                batch = []
    done += _append(store, batch, result)
    store.retention.forget(done)


def _append(store: Store, sessions: list[ReadSession], result: ImportResult) -> list[str]:
    """Append the sessions' events in one insert; if one is there already (a race), each session alone."""
    if not sessions:
        return []
    try:
        store.raw_log.append([event for session in sessions for event in _stored(session)])
    except AlreadyStored:
        if len(sessions) == 1:
            result.present += 1
            return [sessions[0].session_id]
        return [sid for session in sessions for sid in _append(store, [session], result)]
    result.imported += len(sessions)
    result.events += sum(session.events for session in sessions)
    return [session.session_id for session in sessions]


def _stored(session: ReadSession) -> list[Any]:
    from eventsourcing.persistence import StoredEvent

    return [StoredEvent(originator_id=UUID(record.stream), originator_version=record.version, topic=record.topic,
                        state=record.state) for _, _, events in session.streams for record in events]


def describe_archived(row: Row) -> str:
    """One line: which session was archived, when, into which file, and how to bring it back."""
    from datetime import datetime, timezone

    def at(epoch: float | None) -> str:
        return "?" if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")

    name = f" ({row['name']})" if row["name"] else ""
    return (f"session {row['session_id'][:12]}{name} was archived at {at(row['archived_at'])} (stopped "
            f"{at(row['stopped_at'])}) into {row['archive_path']}; 'agentledger db import {row['archive_path']}' "
            "brings it back")


__all__ = ["ArchiveDamaged", "ArchivePlan", "ArchiveResult", "ArchiveTooNew", "ImportResult", "LedgerError", "archive",
           "describe_archived", "import_archive", "plan_archive", "planned_events", "session_streams",
           "verify_archive"]
