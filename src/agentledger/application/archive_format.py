"""The archive's format (``db archive``): NDJSON, one session's streams after another, checksummed.

Each line is one JSON object, UTF-8, ending in ``\\n`` (the file is gzip'd
around it: ``infrastructure/archive_files.py``)::

    {"agentledger_archive": 2, "created_at": ISO, "source": URL, "stopped_before": ISO, ...}
    {"session": HEX, "name": NAME, "stopped_at": EPOCH, "streams": [{"id": HEX, "kind": "Session", "events": N}, ...]}
    {"stream": HEX, "version": 1, "topic": TOPIC, "state": {...}}       one line per event: each stream's versions 1..N
    {"session_end": HEX, "events": N, "sha256": HEX}                     of this session's lines, its "session" line on
    ...                                                                  (the next session)
    {"end": {"sessions": S, "streams": T, "events": E}, "sha256": HEX}   of every byte before this line

An event's ``state`` is its stored bytes verbatim: they are JSON (the orjson
transcoder's), so the line embeds them as they are and a reader takes them
back byte for byte from between ``"state":`` and the line's closing brace; a
stored state that is not JSON on one line (a damaged row, kept as it was) is
written as ``state_b64`` instead. Nothing is decoded on the way out, so an
event this version cannot read is archived as faithfully as the others.

An archive written with ``--coalesce-heartbeats`` (its header's
``coalesced_heartbeats_before``) keeps, of each run of heartbeats older than
that, only the first and the last (:func:`coalesce_heartbeats`). A run is
consecutive ``Heartbeat`` events that extended no fuse, or that all extended
it and none made a lapsed fuse live again (that one starts a new run: a
lapse between heartbeats is kept as it was). The last one's state gains
``"coalesced": K``, the versions left out just before it
(``Session.Heartbeat.coalesced``), and the stream's versions skip them; if
the left-out ones kept the fuse live past the first one's expiry, the
first one's state gains ``"window_expires_at"``, the expiry they took it to
without a break (``Session.Heartbeat.window_expires_at``), so that what is
kept replays to the fuse live and lapsed when it was, not lapsed between
the two kept ends. Those are the only states not kept byte for byte, and
that is the only gap allowed.

A reader (:class:`ArchiveReader`) checks everything before it hands a
session on: each line parses, each session's lines match their checksum,
each stream runs 1..N (but for the gaps its coalesced heartbeats announce)
with as many events as announced, the trailer's counts and the whole file's
checksum match, nothing follows the trailer. Any failure is
:class:`ArchiveDamaged`, one line naming the line number and what is wrong;
a header of a format newer than :data:`READABLE_FORMATS` is
:class:`ArchiveTooNew` instead (a newer agentledger wrote it: no damage).
The reader counts the heartbeats the gaps announce (``coalesced``), so a
file says how many it leaves out whoever coalesced them: a re-archived
session coalesced by an earlier archive carries its gaps into a file whose
header has no ``coalesced_heartbeats_before``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

import orjson

from agentledger.application.errors import LedgerError
from agentledger.domain.session import Session, coalesced_count

#: The format's version, in the header line. 2 may hold coalesced heartbeats (a version 1 reader would call
#: their gaps damage, so it is told the format instead); 1 never does, and is read as before.
FORMAT_VERSION = 2
#: The versions a reader reads; it refuses any other, naming it.
READABLE_FORMATS = (1, 2)
_STATE = b',"state":'
#: The stored topic of a heartbeat: the one event an archive may coalesce.
HEARTBEAT_TOPIC = f"{Session.Heartbeat.__module__}:{Session.Heartbeat.__qualname__}"


class Writable(Protocol):
    """Where an :class:`ArchiveWriter` writes its lines (``ports.ArchiveOutput``, or a ``BytesIO``)."""

    def write(self, data: bytes, /) -> int: ...


class ArchiveDamaged(LedgerError):
    """The archive file is not what it says: truncated, altered, or not an archive (exit status 1)."""


class ArchiveTooNew(LedgerError):
    """An archive of a format newer than this version reads: not damage, a newer agentledger's (exit status 1)."""


class StoredRecord(NamedTuple):
    """One stored event as the archive keeps it: which stream, which version, its topic and state bytes."""

    stream: str  # the aggregate's id, hex
    version: int
    topic: str
    state: bytes


class Stream(NamedTuple):
    """One aggregate's whole stream: its id (hex), what it is (``Session``, ``StopHook``, ``Workspace``), events."""

    id: str
    kind: str
    events: Sequence[Any]  # rows of (originator_id, originator_version, topic, state), in version order


class SessionStreams(NamedTuple):
    """A session and the streams that belong to it, its own first."""

    session_id: str
    name: str | None
    stopped_at: float | None
    streams: list[Stream]

    @property
    def events(self) -> int:
        return sum(len(stream.events) for stream in self.streams)


class WrittenSession(NamedTuple):
    """What the archive holds of one session: its events and the checksum of its lines."""

    session_id: str
    name: str | None
    stopped_at: float | None
    events: int
    sha256: str
    streams: dict[str, int]  # stream id (hex) -> its events


class ArchiveWriter:
    """Writes the lines to ``out`` (a binary file), keeping the checksums; :meth:`finish` writes the trailer."""

    def __init__(self, out: Writable, header: dict[str, Any]) -> None:
        self._out = out
        self._whole = hashlib.sha256()
        self.written: list[WrittenSession] = []
        self._streams = self._events = 0
        self._write(orjson.dumps({"agentledger_archive": FORMAT_VERSION, **header}) + b"\n")

    def add(self, session: SessionStreams) -> WrittenSession:
        announced = [{"id": s.id, "kind": s.kind, "events": len(s.events)} for s in session.streams]
        lines = [orjson.dumps({"session": session.session_id, "name": session.name,
                               "stopped_at": session.stopped_at, "streams": announced}) + b"\n"]
        for stream in session.streams:
            lines.extend(event_lines(stream))
        body = b"".join(lines)
        digest = hashlib.sha256(body).hexdigest()
        self._write(body + orjson.dumps({"session_end": session.session_id, "events": session.events,
                                         "sha256": digest}) + b"\n")
        self._streams += len(session.streams)
        self._events += session.events
        written = WrittenSession(session.session_id, session.name, session.stopped_at, session.events, digest,
                                 {s.id: len(s.events) for s in session.streams})
        self.written.append(written)
        return written

    def finish(self) -> str:
        """Write the trailer; the whole file's checksum (of every line before it)."""
        digest = self._whole.hexdigest()
        self._out.write(orjson.dumps({"end": self.counts, "sha256": digest}) + b"\n")
        return digest

    @property
    def counts(self) -> dict[str, int]:
        return {"sessions": len(self.written), "streams": self._streams, "events": self._events}

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._whole.update(data)


def event_lines(stream: Stream) -> list[bytes]:
    """One line per event of ``stream``, its state embedded verbatim (``state_b64`` if it is not JSON).

    Each state is parsed once, to know it is one JSON value on one line; the
    line is then one ``bytes`` ``%`` format of the stream's id and each topic as
    orjson encodes them, the version, and the state as it is: the very bytes of
    ``orjson.dumps`` of the line's object with the state as a ``Fragment``
    (``tests/test_archive.py`` checks), about ten times faster, which was a
    tenth of ``db archive``'s time.
    """
    _check_versions(stream)
    states = [state if type(state) is bytes else bytes(state) for state in map(itemgetter(3), stream.events)]
    if _all_embeddable(states):
        head = b'{"stream":%s,"version":' % orjson.dumps(stream.id)
        return [b'%s%d,"topic":%s,"state":%s}\n' % (head, row[1], _json_text(row[2]), state)
                for row, state in zip(stream.events, states)]
    return [_line(stream.id, row[1], row[2], *_state_field(state)) for row, state in zip(stream.events, states)]


@functools.lru_cache(maxsize=256)
def _json_text(text: str) -> bytes:
    """A string as orjson writes it (a topic: a few dozen kinds, so each is encoded once)."""
    return orjson.dumps(text)


def _line(stream_id: str, version: int, topic: str, key: str, state: Any) -> bytes:
    return orjson.dumps({"stream": stream_id, "version": version, "topic": topic, key: state},
                        option=orjson.OPT_APPEND_NEWLINE)


def _check_versions(stream: Stream) -> None:
    """Never archive a stream with a gap (but those its coalesced heartbeats announce): the archive must replay."""
    versions = [row[1] for row in stream.events]
    if versions == list(range(1, len(versions) + 1)):
        return  # no gap at all: one comparison in C for the whole stream
    previous = 0
    for row in stream.events:
        if row[1] != previous + 1 and not _announced_gap(row[1], previous, row[2], row[3]):
            raise LedgerError(f"stream {stream.id[:12]} has version {row[1]} where {previous + 1} was expected: "
                              "not archived (see 'agentledger verify')")
        previous = row[1]


def _announced_gap(version: Any, previous: int, topic: Any, state: Any) -> bool:
    """Is ``version``, which is not the one after ``previous``, a heartbeat whose state says an archive
    coalesced the versions in between?"""
    return bool(topic == HEARTBEAT_TOPIC and version == previous + 1 + _coalesced(bytes(state)))


def _coalesced(state: bytes) -> int:
    """A stored heartbeat's ``coalesced`` count (``Session.Heartbeat.coalesced``): 0 if it has none."""
    if b'"coalesced"' not in state:
        return 0
    try:
        return coalesced_count(orjson.loads(state).get("coalesced"))
    except (orjson.JSONDecodeError, AttributeError):
        return 0


def coalesce_heartbeats(events: Sequence[Any], before: float) -> list[Any]:
    """The stream's rows with each run of heartbeats older than ``before`` (epoch seconds) cut to its first and
    last (:func:`_cut`). A run (the module's docstring, :func:`_continues`) is heartbeats whose fuse, over
    them, was live and then perhaps lapsed, never live again: the two kept, the first with the expiry the run
    kept the fuse live to, replay to the same."""
    kept: list[Any] = []
    run: list[tuple[Any, _Beat]] = []
    previous: _Beat | None = None
    for row in events:
        beat = _old_heartbeat(row, before)
        if run and not _continues(previous, beat):
            kept.extend(_cut(run))
            run = []
        if beat is None:
            kept.append(row)
        else:
            run.append((row, beat))
        previous = beat
    kept.extend(_cut(run))
    return kept


class _Beat(NamedTuple):
    """An old heartbeat as coalescing sees it: when it came, and where it took the fuse (None: it extended none)
    as a time and as stored (a window's expiry if an earlier archive coalesced a run after it)."""

    at: datetime
    expires: datetime | None
    stored_expiry: Any


def _old_heartbeat(row: Any, before: float) -> _Beat | None:
    """A heartbeat older than ``before``; None for any other row (or one not readable)."""
    if row[2] != HEARTBEAT_TOPIC:
        return None
    try:
        state = orjson.loads(bytes(row[3]))
        at = _stored_time(state["timestamp"])
        if at.timestamp() >= before:
            return None
        expiry, window = state["fuse_expires_at"], state.get("window_expires_at")
        if expiry is not None and window is not None and _stored_time(window) > _stored_time(expiry):
            expiry = window
        return _Beat(at, None if expiry is None else _stored_time(expiry), expiry)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _stored_time(value: Any) -> datetime:
    """A datetime as the transcoder stores it (``{"_type_": "datetime_iso", "_data_": ISO}``)."""
    return datetime.fromisoformat(value["_data_"])


def _continues(previous: _Beat | None, beat: _Beat | None) -> bool:
    """Does ``beat`` go on the run ``previous`` is in: both extended no fuse; or both did, and ``beat`` came while
    the fuse was live, or did not make it live again (its expiry already past when it came). A heartbeat that
    brings a lapsed fuse back ends the run, so that the lapse before it is kept."""
    if previous is None or beat is None:
        return False
    if previous.expires is None or beat.expires is None:
        return previous.expires is None and beat.expires is None
    return beat.at < previous.expires or beat.expires <= beat.at


def _cut(run: list[tuple[Any, _Beat]]) -> list[Any]:
    """A run of heartbeats as kept: all of it if it is short, else its first and its last, the last counting
    the versions left out; the first saying, if the left-out ones kept the fuse live past its own expiry, to
    when (``window_expires_at``)."""
    if len(run) < 3:
        return [row for row, _ in run]
    (first, opened), (last, _) = run[0], run[-1]
    state = orjson.loads(bytes(last[3]))
    state["coalesced"] = last[1] - first[1] - 1
    end = _window_end(run)
    if end is not opened:
        opening = orjson.loads(bytes(first[3]))
        opening["window_expires_at"] = end.stored_expiry
        first = (first[0], first[1], first[2], orjson.dumps(opening))
    return [first, (last[0], last[1], last[2], orjson.dumps(state))]


def _window_end(run: list[tuple[Any, _Beat]]) -> _Beat:
    """Of the run's heartbeats before its last, the one the fuse stayed live to without a break from the
    first's (the run's first itself if none came in time, or the run extended no fuse)."""
    end = run[0][1]
    for _, beat in run[1:-1]:
        if end.expires is not None and beat.expires is not None and beat.at < end.expires < beat.expires:
            end = beat
    return end


def _all_embeddable(states: list[bytes]) -> bool:
    """Can every state stand in its line as it is: one JSON value, on one line?"""
    joined = b"".join(states)
    if b"\n" in joined or b"\r" in joined:
        return False
    try:
        deque(map(orjson.loads, states), maxlen=0)  # each parsed, in C, nothing kept
    except orjson.JSONDecodeError:
        return False
    return True


def _state_field(state: bytes) -> tuple[str, Any]:
    """``("state", the bytes as they are)`` if they are JSON on one line, else ``("state_b64", base64)``."""
    if _all_embeddable([state]):
        return "state", orjson.Fragment(state)
    return "state_b64", base64.b64encode(state).decode()


# -- reading ------------------------------------------------------------------------------


class ReadSession(NamedTuple):
    """A session as read back, checked: its streams (id, kind, events in version order) and checksum."""

    session_id: str
    name: str | None
    stopped_at: float | None
    streams: list[tuple[str, str, list[StoredRecord]]]
    sha256: str

    @property
    def events(self) -> int:
        return sum(len(events) for _, _, events in self.streams)


class ArchiveSummary(NamedTuple):
    """A whole archive, checked: its header and counts, and the checksum of its lines."""

    header: dict[str, Any]
    sessions: int
    streams: int
    events: int
    sha256: str  # the trailer's: of the uncompressed lines before it (not the file's, which gzip's bytes make)
    coalesced: int = 0  # heartbeats left out by an archive's coalescing (this one's or an earlier one's)


class ArchiveReader:
    """Reads and checks an archive's lines; :meth:`sessions` yields each session once it has been checked.

    ``decode`` (optional) is tried on every event (``db archive verify``); what
    it cannot decode is counted in ``undecodable``, not refused: such an event
    was archived exactly as the live log held it.
    """

    def __init__(self, lines: Iterable[bytes], *, decode: Callable[[StoredRecord], Any] | None = None) -> None:
        self._lines = enumerate(lines, start=1)
        self._decode = decode
        self._whole = hashlib.sha256()
        self.header: dict[str, Any] = {}
        self.summary: ArchiveSummary | None = None
        self.undecodable: list[str] = []
        self.coalesced = 0  # the versions the coalesced heartbeats read so far announce (left out)
        self._number = 0

    def sessions(self) -> Iterator[ReadSession]:
        self.header = self._header()
        counts = {"sessions": 0, "streams": 0, "events": 0}
        while True:
            line, record = self._next("its trailer ('end')")
            if "end" in record:
                self._trailer(record, counts)
                return
            try:
                session = self._session(line, record)
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                raise self._damaged(f"a line lacks what it must hold ({type(error).__name__}: {error}): altered") from None
            counts["sessions"] += 1
            counts["streams"] += len(session.streams)
            counts["events"] += session.events
            yield session

    def check(self) -> ArchiveSummary:
        """Read it all: the summary, or :class:`ArchiveDamaged`."""
        for _ in self.sessions():
            pass
        assert self.summary is not None
        return self.summary

    def _header(self) -> dict[str, Any]:
        _, record = self._next("a header", hashed=True)
        found = record.get("agentledger_archive")
        if found in READABLE_FORMATS:
            return record
        formats = ", ".join(map(str, READABLE_FORMATS))
        if type(found) is int and found > max(READABLE_FORMATS):  # a newer agentledger's: sound, not readable here
            raise ArchiveTooNew(f"archive format {found}, newer than this version of agentledger reads "
                                f"(formats {formats}): upgrade agentledger to read it")
        raise self._damaged("not an agentledger archive" if found is None else
                            f"archive format {found!r}, which no version of agentledger writes (formats {formats})")

    def _session(self, line: bytes, record: dict[str, Any]) -> ReadSession:
        if "session" not in record:
            raise self._damaged("a session's first line was expected")
        digest = hashlib.sha256(line)
        self._whole.update(line)
        streams: list[tuple[str, str, list[StoredRecord]]] = []
        wanted: dict[str, int] = {}
        for announced in record.get("streams") or []:
            streams.append((announced["id"], announced["kind"], []))
            wanted[announced["id"]] = int(announced["events"])
        by_id = {stream_id: events for stream_id, _, events in streams}
        while True:
            line, event = self._next(f"the end of session {record['session'][:12]}")
            if "session_end" in event:
                break
            digest.update(line)
            self._whole.update(line)
            self._event(line, event, by_id)
        self._whole.update(line)
        self._session_end(record, event, digest.hexdigest(), wanted, by_id)
        return ReadSession(record["session"], record.get("name"), record.get("stopped_at"), streams,
                           event["sha256"])

    def _event(self, line: bytes, event: dict[str, Any], by_id: dict[str, list[StoredRecord]]) -> None:
        events = by_id.get(event.get("stream", ""))
        if events is None:
            raise self._damaged(f"an event of stream {str(event.get('stream'))[:12]}, which its session does not list")
        if "state_b64" in event:
            state = base64.b64decode(event["state_b64"])
        else:
            state = line[line.index(_STATE) + len(_STATE):-2]
        previous = events[-1].version if events else 0
        version = event.get("version")
        if version != previous + 1:
            if not _announced_gap(version, previous, event.get("topic"), state):
                raise self._damaged(f"stream {event['stream'][:12]}: version {version} where "
                                    f"{previous + 1} was expected (its versions must run 1, 2, 3, ...)")
            self.coalesced += _coalesced(state)  # the gap, as the heartbeat announces it
        stored = StoredRecord(event["stream"], event["version"], event["topic"], state)
        events.append(stored)
        if self._decode is not None:
            try:
                self._decode(stored)
            except Exception as error:  # noqa: BLE001 - recorded, as the live log's readers do
                self.undecodable.append(f"stream {stored.stream[:12]} version {stored.version}: {error}")

    def _session_end(self, record: dict[str, Any], end: dict[str, Any], digest: str, wanted: dict[str, int],
                     by_id: dict[str, list[StoredRecord]]) -> None:
        short = record["session"][:12]
        if end.get("session_end") != record["session"]:
            raise self._damaged(f"session {short} ends with another session's id")
        if digest != end.get("sha256"):
            raise self._damaged(f"session {short}: its lines do not match their checksum (altered)")
        for stream_id, count in wanted.items():
            if len(by_id[stream_id]) != count:
                raise self._damaged(f"session {short}: stream {stream_id[:12]} has {len(by_id[stream_id])} events, "
                                    f"not the {count} announced")

    def _trailer(self, record: dict[str, Any], counts: dict[str, int]) -> None:
        if record.get("sha256") != self._whole.hexdigest():
            raise self._damaged("the file's checksum does not match its lines (altered)")
        if record.get("end") != counts:
            raise self._damaged(f"the trailer counts {record.get('end')}, but the file holds {counts}")
        for number, _ in self._lines:
            self._number = number
            raise self._damaged("lines follow the trailer")
        self.summary = ArchiveSummary(self.header, counts["sessions"], counts["streams"], counts["events"],
                                      record["sha256"], self.coalesced)

    def _next(self, expected: str, *, hashed: bool = False) -> tuple[bytes, dict[str, Any]]:
        for number, line in self._lines:
            self._number = number
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise self._damaged("not a JSON line (altered or cut short)") from None
            if not isinstance(record, dict) or not line.endswith(b"\n"):
                raise self._damaged("not a whole JSON object on its line (altered or cut short)")
            if hashed:
                self._whole.update(line)
            return line, record
        raise ArchiveDamaged(f"the archive ends after line {self._number}, before {expected}: it was cut short")

    def _damaged(self, what: str) -> ArchiveDamaged:
        return ArchiveDamaged(f"line {self._number}: {what}")
