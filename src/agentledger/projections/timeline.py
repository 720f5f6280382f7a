"""One session's log as lanes on a time axis: the data ``agentledger timeline`` draws.

Pure: a session's log entries and "now" in, dated spans and marks out, so the
reading of the log (when was the fuse live, when did it lapse, did the stop
land inside a live window) is tested without drawing anything.

The fuse is read as the aggregate applies it: ``FuseSet`` arms a window;
a heartbeat moves its expiry later (an *extension*), or, when the expiry had
already passed, re-arms it after a *lapse*; a window ends at its expiry, a
``FuseCancelled``, a replacing ``FuseSet`` or the ``Stopped``. The
``FuseCancelled`` the aggregate appends just before ``Stopped`` ("session
stopped") belongs to the stop, so a stop under a live fuse is seen as one:
that is the race this view exists to show.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agentledger.application.log import LogEntry
from agentledger.domain.durations import format_clock, format_duration
from agentledger.domain.session import heartbeat_expiry
from agentledger.projections.history import summarise

RECONCILER = "reconciler"


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime
    open: bool = False  # still going: ``end`` is "now"


@dataclass
class FuseWindow:
    """A stretch during which the fuse was live."""

    start: datetime
    end: datetime
    armed_by: str  # "set by supervisor", "re-armed by a heartbeat after a lapse"
    ttl: float | None
    expires_at: datetime  # the last expiry recorded; after ``end`` when the window was cut short
    ended_by: str = "open"  # expiry | cancelled | replaced | stopped | open
    extensions: list[tuple[datetime, datetime]] = field(default_factory=list)  # (heartbeat time, new expiry)
    detail: str = ""  # who cancelled it and why


@dataclass(frozen=True)
class Lapse:
    """The fuse's expiry passed with no heartbeat: nobody watched from ``start`` to ``end``."""

    start: datetime
    end: datetime
    ended_by: str  # "heartbeat", "fuse set", "cancelled", "stopped", or "open" (still lapsed now)
    recorded_at: datetime | None = None  # when the reconciler recorded it (FuseExpired)


@dataclass(frozen=True)
class Mark:
    """One event drawn as a point: a reconciler decision or a stop request."""

    at: datetime
    kind: str  # the event type
    label: str  # a few words, drawn beside the mark
    detail: str  # hover text: what was decided, why, on what evidence


@dataclass(frozen=True)
class Stop:
    at: datetime
    reason: str
    decided_by: str  # component
    exit_code: int | None
    signal: str | None
    summary: str  # "exited, exit code 7, by supervisor"
    detail: str
    fuse_live: bool  # a fuse window was live when it was recorded
    fuse_expires_at: datetime | None  # that window's expiry
    exited_at: datetime | None = None  # when someone saw the process end (its supervisor's waitpid); None: unseen

    @property
    def race(self) -> bool:
        """Stopped by the reconciler while a fuse was live: the seed bug's race.

        A supervisor records its stop under its own live fuse as a matter of
        course (it saw the exit); the reconciler must never stop under one.
        """
        return self.fuse_live and self.decided_by == RECONCILER


@dataclass
class Timeline:
    session_id: str
    start: datetime  # the axis: from the launch ...
    end: datetime  # ... to the stop, or to now
    now: datetime
    status: str = "unknown"
    command: str = ""
    name: str | None = None
    host: str | None = None
    pid: int | None = None
    process: Span | None = None
    process_unseen: Span | None = None  # after its last sign of life, until it was found dead: its end unseen
    fuse_windows: list[FuseWindow] = field(default_factory=list)
    lapses: list[Lapse] = field(default_factory=list)
    heartbeats: list[datetime] = field(default_factory=list)
    decisions: list[Mark] = field(default_factory=list)
    stop_requests: list[Mark] = field(default_factory=list)
    stop: Stop | None = None
    unreadable: list[str] = field(default_factory=list)
    events: int = 0

    @property
    def extensions(self) -> list[tuple[datetime, datetime]]:
        return [e for w in self.fuse_windows for e in w.extensions]

    def longest_heartbeat_gap(self) -> tuple[datetime, float] | None:
        """Where the longest silence between two heartbeats began, and how long it was."""
        gaps = [(a, (b - a).total_seconds()) for a, b in zip(self.heartbeats, self.heartbeats[1:])]
        return max(gaps, key=lambda gap: gap[1]) if gaps else None


class NoReadableEvents(ValueError):
    """Nothing in the session's log could be decoded: there is no time to draw against."""


def build_timeline(session_id: str, entries: Iterable[LogEntry], now: datetime) -> Timeline:
    entries = list(entries)
    readable = [e for e in entries if e.event is not None]
    if not readable:
        raise NoReadableEvents(f"session {session_id[:12]}: none of its {len(entries)} events can be read")
    first = readable[0].event
    assert first is not None
    builder = _Builder(Timeline(session_id, start=first.timestamp, end=now, now=now))
    builder.timeline.events = len(entries)
    builder.timeline.unreadable = [e.describe_error() for e in entries if e.event is None]
    for entry, following in zip(readable, [*readable[1:], None]):
        kind = type(entry.event).__name__
        if kind == "FuseCancelled" and _is_stop_cancel(entry, following):
            continue  # part of the Stopped that follows it
        getattr(builder, f"on_{kind}", builder.on_other)(entry.event, kind)
    return builder.finish()


def _is_stop_cancel(entry: LogEntry, following: LogEntry | None) -> bool:
    return (following is not None and type(following.event).__name__ == "Stopped"
            and getattr(entry.event, "by_the_stop", False))


class _Builder:
    """Walks the events in order, keeping the fuse window (or lapse) open at the moment."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.window: FuseWindow | None = None
        self.lapse_from: datetime | None = None
        self.lapse_recorded_at: datetime | None = None
        self.ttl: float | None = None

    # -- the fuse ------------------------------------------------------------------

    def settle(self, at: datetime) -> None:
        """A window whose expiry passed before ``at`` ended then, and a lapse began."""
        if self.window is not None and self.window.expires_at <= at:
            expired_at = self.window.expires_at
            self.close_window(expired_at, "expiry")
            self.lapse_from = expired_at

    def close_window(self, at: datetime, ended_by: str, detail: str = "") -> None:
        assert self.window is not None
        self.window.end, self.window.ended_by, self.window.detail = at, ended_by, detail
        self.timeline.fuse_windows.append(self.window)
        self.window = None

    def close_lapse(self, at: datetime, ended_by: str) -> None:
        if self.lapse_from is not None:
            self.timeline.lapses.append(Lapse(self.lapse_from, max(at, self.lapse_from), ended_by,
                                              self.lapse_recorded_at))
        self.lapse_from = self.lapse_recorded_at = None

    def arm(self, at: datetime, expires_at: datetime, armed_by: str, ended_lapse_by: str) -> None:
        self.close_lapse(at, ended_lapse_by)
        self.window = FuseWindow(start=at, end=at, armed_by=armed_by, ttl=self.ttl, expires_at=expires_at)

    # -- events --------------------------------------------------------------------

    def on_Launched(self, event: Any, kind: str) -> None:  # noqa: N802 - named after the event
        t = self.timeline
        t.command = " ".join(event.argv)
        t.name, t.host, t.pid = event.name, event.host, event.pid
        t.start = event.timestamp
        t.process = Span(event.timestamp, event.timestamp)

    def on_FuseSet(self, event: Any, kind: str) -> None:  # noqa: N802
        at = event.timestamp
        self.settle(at)
        if self.window is not None:
            self.close_window(at, "replaced", f"replaced by a fuse set by {event.set_by}")
        self.ttl = event.ttl
        self.arm(at, event.expires_at, f"set by {event.set_by} (ttl {format_duration(event.ttl)})", "fuse set")

    def on_Heartbeat(self, event: Any, kind: str) -> None:  # noqa: N802
        at, expiry = event.timestamp, heartbeat_expiry(event)
        self.timeline.heartbeats.append(at)
        if expiry is None:
            return  # no fuse set, or it was cancelled: nothing to extend
        self.settle(at)
        if self.window is None:
            self.arm(at, expiry, "re-armed by a heartbeat after a lapse", "heartbeat")
        elif expiry > self.window.expires_at:
            self.window.extensions.append((at, expiry))
            self.window.expires_at = expiry

    def on_FuseCancelled(self, event: Any, kind: str) -> None:  # noqa: N802
        at = event.timestamp
        self.settle(at)
        if self.window is not None:
            self.close_window(at, "cancelled", f"cancelled by {event.by}: {event.reason}")
        self.close_lapse(at, "cancelled")

    def on_FuseExpired(self, event: Any, kind: str) -> None:  # noqa: N802
        at = event.timestamp
        self.settle(at)
        if self.window is not None:  # recorded before the expiry we know of (clocks apart): believe the record
            self.close_window(event.expired_at, "expiry")
        if self.lapse_from is None:
            self.lapse_from = event.expired_at
        self.lapse_recorded_at = at
        self.timeline.decisions.append(Mark(
            at, kind, "fuse expired",
            _detail(kind, vars(event), f"unwatched from {format_clock(event.expired_at)}"),
        ))

    def on_StopRequested(self, event: Any, kind: str) -> None:  # noqa: N802
        fields = vars(event)
        cause = fields.get("cause", "user")
        mark = Mark(event.timestamp, kind, f"{event.signal}" + (f" ({cause})" if cause != "user" else ""),
                    _detail(kind, fields, event.note))
        self.timeline.stop_requests.append(mark)
        if event.requested_by == RECONCILER:
            self.timeline.decisions.append(Mark(mark.at, kind, f"stop requested ({cause})", mark.detail))

    def on_Stopped(self, event: Any, kind: str) -> None:  # noqa: N802
        at = event.timestamp
        self.settle(at)
        live_window = self.window
        if live_window is not None:
            self.close_window(at, "stopped", "the session stopped")
        self.close_lapse(at, "stopped")
        fields = vars(event)
        decider = event.decided_by.get("component", "unknown")
        summary = summarise(kind, fields)
        detail = _detail(kind, fields, event.note)
        self.timeline.stop = Stop(
            at=at, reason=event.reason, decided_by=decider, exit_code=event.exit_code, signal=event.signal,
            summary=summary, detail=detail, fuse_live=live_window is not None,
            fuse_expires_at=live_window.expires_at if live_window else None,
            exited_at=getattr(event, "exited_at", None),
        )
        if decider == RECONCILER:
            self.timeline.decisions.append(Mark(at, kind, f"stopped ({event.reason})", detail))

    def on_other(self, event: Any, kind: str) -> None:
        """An event type this view does not draw (a newer one): its time still stretches the axis."""

    # -- the end -------------------------------------------------------------------

    def finish(self) -> Timeline:
        t = self.timeline
        if t.stop is not None:
            t.end = t.stop.at
            t.status = "stopped"
        else:
            self.settle(t.now)
            live = self.window is not None
            if self.window is not None:
                self.close_window(t.now, "open")
            if self.lapse_from is not None:
                t.lapses.append(Lapse(self.lapse_from, max(t.now, self.lapse_from), "open", self.lapse_recorded_at))
            t.status = "stopping" if t.stop_requests else ("running" if live else "unwatched")
        t.end = max([t.end, t.start, *t.heartbeats[-1:], *(m.at for m in t.stop_requests + t.decisions)])
        if t.process is None:  # the Launched could not be read
            t.process = Span(t.start, t.start)
        t.process, t.process_unseen = _process_spans(t, t.process.start)
        return t


def _process_spans(t: Timeline, start: datetime) -> tuple[Span, Span | None]:
    """The process alive, as far as the log knows; then, if nobody saw it end, the stretch it may have died in.

    A supervisor sees its process end (``exited_at``); a reconciler only finds it
    dead at its pass, perhaps long after. Drawing "alive" up to that pass would
    claim what nobody saw, so the lane ends at the last sign of life (a heartbeat,
    a fuse set) and the rest up to the stop is drawn as unseen.
    """
    stop = t.stop
    if stop is None:
        return Span(start, t.end, open=True), None
    if stop.exited_at is not None:
        return Span(start, max(start, min(stop.exited_at, stop.at))), None
    if stop.decided_by == "supervisor" or stop.reason in ("spawn-failed", "setup-failed"):
        return Span(start, stop.at), None  # an older log without exited_at: its supervisor saw the end
    last_sign = max([start, *t.heartbeats[-1:], *(w.start for w in t.fuse_windows)])
    last_sign = min(last_sign, stop.at)
    return Span(start, last_sign), (Span(last_sign, stop.at) if stop.at > last_sign else None)


def _detail(kind: str, fields: dict[str, Any], why: str | None) -> str:
    """Hover text: the history summary, the one-line why, and the evidence key by key."""
    lines = [f"{kind}: {summarise(kind, fields)}"]
    if why:
        lines.append(f"why: {why}")
    evidence = fields.get("evidence") or {}
    lines += [f"{key}: {_short(value)}" for key, value in evidence.items()]
    return "\n".join(lines)


def _short(value: Any, width: int = 160) -> str:
    if isinstance(value, dict):
        text = ", ".join(f"{k}={_short(v, 60)}" for k, v in value.items() if v is not None) or "-"
    elif isinstance(value, list):
        text = "; ".join(_short(v, 80) for v in value) or "none"
    elif isinstance(value, datetime):
        text = value.isoformat()
    else:
        text = "-" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"
