"""A :class:`~agentledger.projections.timeline.Timeline` as one self-contained HTML page.

Inline SVG and CSS only: no script, font, image or anything else fetched, so
the file can be attached to a bug report and opened anywhere, offline. Every
text that comes from the log is escaped. Thousands of heartbeats are drawn as
one ``<path>`` of ticks (one per half pixel at most), so a ten-hour session
stays a small file.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from html import escape

from agentledger.domain.durations import format_duration
from agentledger.projections.timeline import Timeline

WIDTH = 1200
LABELS = 150  # the lane labels' column
X0, X1 = LABELS + 14, WIDTH - 70  # the axis' pixels; the right margin holds open ends and labels
TOP = 14
LANE = 46
BAR = 16  # bar height inside a lane
AXIS = 44
#: Tick steps in seconds: the first that gives at most MAX_TICKS ticks is used.
STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900,
         1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)
MAX_TICKS = 9
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: (lane label, what it shows), top to bottom.
LANES = (("process", "alive"), ("fuse", "live windows"), ("heartbeats", "evidence of life"),
         ("reconciler", "decisions"), ("stop", "requests and the stop"))

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;margin:24px;max-width:1240px}
h1{font-size:20px;margin:0 0 8px}
h1 code{font-size:18px}
table.meta{border-collapse:collapse;margin-bottom:12px}
table.meta th{text-align:left;font-weight:600;padding:2px 16px 2px 0;color:#555;vertical-align:top}
table.meta td{padding:2px 0;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px}
.banner{padding:8px 12px;border-radius:4px;margin:10px 0;font-weight:600}
.race{background:#fde2e1;border:2px solid #d62728;color:#9b1c1c}
.warn{background:#fff4e0;border:1px solid #f0a030;color:#7a4a00;font-weight:400}
svg{max-width:100%;height:auto;display:block;margin:8px 0}
svg text{font-family:system-ui,sans-serif;font-size:12px;fill:#222;paint-order:stroke;stroke:#f7f7f7;stroke-width:3px;stroke-linejoin:round}
svg .lane-name{font-weight:700;font-size:13px}
svg .lane-sub,svg .axis-rel,svg .muted{fill:#777;font-size:11px}
svg .lane-bg{fill:#f7f7f7}
svg .grid{stroke:#ddd;stroke-width:1}
svg .axis{stroke:#888;stroke-width:1}
.proc{fill:#4c78a8}
.proc-unseen{fill:none;stroke:#4c78a8;stroke-width:1.2;stroke-dasharray:2 3}
.fuse{fill:#54a24b}
.fuse-rest{fill:none;stroke:#54a24b;stroke-width:1.2;stroke-dasharray:4 3}
.ext{stroke:#1f5e1c;stroke-width:1.2}
.lapse{fill:url(#hatch);stroke:#e45756;stroke-width:1}
.beat{stroke:#6b6b6b;stroke-width:1}
.decision{fill:#9d5fc4;stroke:#5e2d7d;stroke-width:1}
.request{fill:#f2a541;stroke:#a35f00;stroke-width:1}
.stop{fill:#222}
.stop-live{fill:#d62728}
.race-line{stroke:#d62728;stroke-width:2}
.race-band{fill:#d62728;fill-opacity:.14}
.now{stroke:#4c78a8;stroke-width:1;stroke-dasharray:3 3}
svg .race-text{fill:#d62728;font-weight:700}
ul.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:6px 20px;margin:4px 0 12px}
ul.legend li{display:flex;align-items:center;gap:6px}
.sw{display:inline-block;width:22px;height:12px;border-radius:2px}
.sw.proc{background:#4c78a8}.sw.unseen{border:1.5px dotted #4c78a8;height:9px;width:19px}.sw.fuse{background:#54a24b}
.sw.ext{width:3px;background:#1f5e1c}.sw.beat{width:2px;height:14px;background:#6b6b6b}
.sw.lapse{background:repeating-linear-gradient(45deg,#e45756 0 3px,#fbe3e2 3px 6px)}
.sw.rest{border:1.5px dashed #54a24b;height:9px;width:19px}
.sw.decision{width:11px;height:11px;background:#9d5fc4;transform:rotate(45deg)}
.sw.request{width:0;height:0;border-left:6px solid transparent;border-right:6px solid transparent;border-top:11px solid #f2a541;border-radius:0}
.sw.stop{width:12px;height:12px;border-radius:6px;background:#222}
.sw.race{width:3px;height:16px;background:#d62728}
footer{color:#888;font-size:12px;margin-top:16px}
""".strip()


#: The drawing's rules alone (not the page's body, heading and table), for a page that embeds :func:`drawing`.
DRAWING_CSS = "\n".join(line for line in CSS.splitlines() if not line.startswith(("body", "h1", "table.meta", "footer")))


def render(timeline: Timeline, *, generated_by: str = "agentledger") -> str:
    t = timeline
    axis = _Axis(t.start, t.end)
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>",
        f"<title>agentledger timeline {escape(t.session_id[:12])}</title><style>\n{CSS}\n</style></head><body>",
        _header(t),
        _legend(),
        _svg(t, axis),
        f"<footer>Times are UTC. Written by {escape(generated_by)} at {_when(t.now)} from {t.events} events; "
        "hover over a mark for its details.</footer>",
        "</body></html>\n",
    ]
    return "\n".join(parts)


def drawing(timeline: Timeline) -> str:
    """The legend and the SVG alone, to sit in another page (the console's) that carries :data:`CSS`."""
    return _legend() + "\n" + _svg(timeline, _Axis(timeline.start, timeline.end))


# -- the page around the drawing ----------------------------------------------------


def _when(at: datetime | None) -> str:
    return "-" if at is None else at.astimezone(timezone.utc).isoformat(sep=" ", timespec="milliseconds")[:23] + " UTC"


def _header(t: Timeline) -> str:
    rows = [("Command", t.command or "-"), ("Name", t.name), ("Host", t.host),
            ("PID", t.pid), ("Status", t.status), ("Started", _when(t.start))]
    if t.stop is not None:
        rows += [("Stopped", f"{_when(t.stop.at)} (after {format_duration((t.stop.at - t.start).total_seconds())})"),
                 ("Stop", t.stop.summary)]
    else:
        rows += [("Running for", f"{format_duration((t.now - t.start).total_seconds())} (as of {_when(t.now)})")]
    rows += [("Fuse", _fuse_summary(t)), ("Heartbeats", _heartbeat_summary(t))]
    cells = "".join(f"<tr><th>{escape(k)}</th><td>{escape('-' if v is None else str(v))}</td></tr>" for k, v in rows)
    html = [f"<h1>Session <code>{escape(t.session_id)}</code></h1>", f"<table class=\"meta\">{cells}</table>"]
    if t.stop is not None and t.stop.race:
        html.append(f"<div class=\"banner race\">{escape(_race_note(t))}</div>")
    if t.unreadable:
        items = "".join(f"<li>{escape(text)}</li>" for text in t.unreadable[:20])
        more = f"<li>… and {len(t.unreadable) - 20} more</li>" if len(t.unreadable) > 20 else ""
        html.append(f"<div class=\"banner warn\">{len(t.unreadable)} event(s) could not be read and are not drawn:"
                    f"<ul>{items}{more}</ul></div>")
    return "\n".join(html)


def _race_note(t: Timeline) -> str:
    stop = t.stop
    assert stop is not None
    text = f"stopped while the fuse was live: {stop.summary}"
    if stop.fuse_expires_at is not None:
        left = (stop.fuse_expires_at - stop.at).total_seconds()
        text += f"; the fuse was live until {_when(stop.fuse_expires_at)} ({format_duration(left)} left)"
    return text + f"; decided by the {stop.decided_by} from a probe, not from the exit itself: check its evidence"


def _fuse_summary(t: Timeline) -> str:
    if not t.fuse_windows:
        return "never set"
    live = sum((w.end - w.start).total_seconds() for w in t.fuse_windows)
    text = (f"{len(t.fuse_windows)} live window(s), {format_duration(live)} in all, "
            f"{len(t.extensions)} extension(s) by heartbeats")
    if t.lapses:
        unwatched = sum((lapse.end - lapse.start).total_seconds() for lapse in t.lapses)
        text += f"; lapsed {len(t.lapses)} time(s), unwatched for {format_duration(unwatched)}"
    return text


def _heartbeat_summary(t: Timeline) -> str:
    if not t.heartbeats:
        return "none"
    gap = t.longest_heartbeat_gap()
    longest = f"; longest gap {format_duration(gap[1])} from {_when(gap[0])}" if gap else ""
    return f"{len(t.heartbeats)}, first {_when(t.heartbeats[0])}, last {_when(t.heartbeats[-1])}{longest}"


def _legend() -> str:
    items = (("proc", "process alive"), ("unseen", "its end not seen (found dead at the stop)"), ("fuse", "fuse live"), ("ext", "heartbeat extended the fuse"),
             ("rest", "lease left when cut short"), ("lapse", "fuse lapsed (nobody watching)"),
             ("beat", "heartbeat"), ("decision", "reconciler decision"), ("request", "stop requested"),
             ("stop", "stopped"), ("race", "stopped while the fuse was live"))
    lis = "".join(f"<li><span class=\"sw {cls}\"></span>{escape(text)}</li>" for cls, text in items)
    return f"<ul class=\"legend\">{lis}</ul>"


# -- the drawing ---------------------------------------------------------------------


class _Axis:
    """Datetimes to pixels, and round clock times to label the axis with."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        self.span = max((end - start).total_seconds(), 0.001)
        self.step = next((s for s in STEPS if self.span / s <= MAX_TICKS), STEPS[-1])

    def x(self, at: datetime, *, clamp: float = 30) -> float:
        offset = (at - self.start).total_seconds() / self.span * (X1 - X0)
        return min(max(X0 + offset, X0 - clamp), X1 + clamp)

    def ticks(self) -> list[datetime]:
        step_us = round(self.step * 1_000_000)
        first_us = -(-((self.start - EPOCH) // timedelta(microseconds=1)) // step_us) * step_us
        end = self.start + timedelta(seconds=self.span)
        ticks, at = [], EPOCH + timedelta(microseconds=first_us)
        while at <= end:
            ticks.append(at)
            at += timedelta(microseconds=step_us)
        return ticks

    def label(self, at: datetime) -> str:
        clock = at.astimezone(timezone.utc)
        text = clock.strftime("%H:%M:%S.%f")[:12] if self.step < 1 else clock.strftime(
            "%H:%M:%S" if self.step < 60 else "%H:%M")
        return text if clock.date() == self.start.astimezone(timezone.utc).date() else clock.strftime("%m-%d ") + text


def _lane_y(index: int) -> float:
    """The top of a lane's bar."""
    return TOP + index * LANE + (LANE - BAR) / 2


def _f(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _title(text: str) -> str:
    return f"<title>{escape(text)}</title>"


def _rect(x1: float, x2: float, y: float, height: float, cls: str, title: str = "", min_width: float = 2) -> str:
    width = max(x2 - x1, min_width)
    body = _title(title) if title else ""
    return (f"<rect class=\"{cls}\" x=\"{_f(x1)}\" y=\"{_f(y)}\" width=\"{_f(width)}\" height=\"{_f(height)}\">"
            f"{body}</rect>")


def _ticks_path(xs: Iterable[float], y1: float, y2: float, cls: str, title: str) -> str:
    """Vertical ticks as one path, one tick per half pixel at most."""
    columns = sorted({round(x * 2) / 2 for x in xs})
    if not columns:
        return ""
    d = "".join(f"M{_f(x)} {_f(y1)}V{_f(y2)}" for x in columns)
    return f"<path class=\"{cls}\" d=\"{d}\">{_title(title)}</path>"


def _svg(t: Timeline, axis: _Axis) -> str:
    height = TOP + len(LANES) * LANE + AXIS
    bottom = TOP + len(LANES) * LANE
    out = [f"<svg viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\" role=\"img\" "
           f"aria-label=\"timeline of session {escape(t.session_id)}\">",
           "<defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" "
           "patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#fbe3e2\"/>"
           "<rect width=\"3\" height=\"6\" fill=\"#e45756\"/></pattern></defs>"]
    for i, (name, sub) in enumerate(LANES):
        y = TOP + i * LANE
        out.append(f"<rect class=\"lane-bg\" x=\"{X0 - 8}\" y=\"{y + 2}\" width=\"{X1 - X0 + 46}\" "
                   f"height=\"{LANE - 4}\"/>")
        out.append(f"<text class=\"lane-name\" x=\"10\" y=\"{y + LANE / 2 - 2}\">{escape(name)}</text>"
                   f"<text class=\"lane-sub\" x=\"10\" y=\"{y + LANE / 2 + 13}\">{escape(sub)}</text>")
    out += _axis(axis, bottom)
    out += _process(t, axis)
    out += _fuse(t, axis)
    out += _heartbeats(t, axis)
    out += _decisions(t, axis)
    out += _stop(t, axis, bottom)
    if t.stop is None:
        x = axis.x(t.now)
        out.append(f"<line class=\"now\" x1=\"{_f(x)}\" y1=\"{TOP}\" x2=\"{_f(x)}\" y2=\"{bottom}\"/>"
                   f"<text class=\"muted\" x=\"{_f(x + 4)}\" y=\"{bottom - 5}\">now</text>")
    out.append("</svg>")
    return "\n".join(out)


def _axis(axis: _Axis, bottom: float) -> list[str]:
    out = [f"<line class=\"axis\" x1=\"{X0}\" y1=\"{bottom}\" x2=\"{X1}\" y2=\"{bottom}\"/>"]
    for at in axis.ticks():
        x = _f(axis.x(at))
        relative = f"+{format_duration((at - axis.start).total_seconds())}"
        out.append(f"<line class=\"grid\" x1=\"{x}\" y1=\"{TOP}\" x2=\"{x}\" y2=\"{bottom + 4}\"/>"
                   f"<text x=\"{x}\" y=\"{bottom + 18}\" text-anchor=\"middle\">{escape(axis.label(at))}</text>"
                   f"<text class=\"axis-rel\" x=\"{x}\" y=\"{bottom + 32}\" text-anchor=\"middle\">{relative}</text>")
    return out


def _span_text(start: datetime, end: datetime) -> str:
    return f"{_when(start)} to {_when(end)} ({format_duration((end - start).total_seconds())})"


def _process(t: Timeline, axis: _Axis) -> list[str]:
    span = t.process
    if span is None:
        return []
    y = _lane_y(0)
    x1, x2 = axis.x(span.start), axis.x(span.end)
    known = "known alive" if t.process_unseen is not None else "alive"
    what = f"process {t.pid if t.pid is not None else '(never started)'} {known} from {_span_text(span.start, span.end)}"
    out = [_rect(x1, x2, y, BAR, "proc", what + (", still running" if span.open else ""))]
    if span.open:  # an arrow head: it goes on
        out.append(f"<path class=\"proc\" d=\"M{_f(x2)} {_f(y - 3)}L{_f(x2 + 9)} {_f(y + BAR / 2)}"
                   f"L{_f(x2)} {_f(y + BAR + 3)}Z\"/>"
                   f"<text class=\"muted\" x=\"{_f(x2 + 12)}\" y=\"{_f(y + BAR - 3)}\">running</text>")
    unseen = t.process_unseen
    if unseen is not None:
        out.append(_rect(axis.x(unseen.start), axis.x(unseen.end), y, BAR, "proc-unseen",
                         f"its end was not seen: last sign of life {_when(unseen.start)}, found dead by "
                         f"{_when(unseen.end)} ({format_duration((unseen.end - unseen.start).total_seconds())} "
                         "in which it ended)"))
    return out


def _fuse(t: Timeline, axis: _Axis) -> list[str]:
    y = _lane_y(1)
    out: list[str] = []
    for w in t.fuse_windows:
        x1, x2 = axis.x(w.start), axis.x(w.end)
        ended = {"expiry": "expired (lapsed)", "open": "still live", "stopped": "the session stopped",
                 "cancelled": w.detail or "cancelled", "replaced": w.detail or "replaced"}[w.ended_by]
        out.append(_rect(x1, x2, y, BAR, "fuse",
                         f"fuse live {_span_text(w.start, w.end)}\narmed: {w.armed_by}\n"
                         f"extended {len(w.extensions)} time(s) by heartbeats\nended: {ended}\n"
                         f"last recorded expiry: {_when(w.expires_at)}"))
        if w.expires_at > w.end:  # cut short (or still going): the lease it still had
            rest_end = axis.x(w.expires_at)
            if rest_end - x2 >= 2:
                out.append(_rect(x2, rest_end, y + 3, BAR - 6, "fuse-rest",
                                 f"the fuse would have stayed live until {_when(w.expires_at)}", min_width=0))
    out.append(_ticks_path((axis.x(at) for at, _ in t.extensions), y - 7, y - 1, "ext",
                           f"{len(t.extensions)} heartbeats moved the fuse's expiry later"))
    for lapse in t.lapses:
        x1, x2 = axis.x(lapse.start), axis.x(lapse.end)
        until = {"open": "still lapsed now", "heartbeat": "re-armed by a heartbeat", "fuse set": "a new fuse was set",
                 "cancelled": "the fuse was cancelled", "stopped": "the session stopped"}[lapse.ended_by]
        recorded = f"\nrecorded by the reconciler at {_when(lapse.recorded_at)}" if lapse.recorded_at else ""
        out.append(_rect(x1, x2, y, BAR, "lapse",
                         f"fuse lapsed at {_when(lapse.start)}: no heartbeat, nobody watching for "
                         f"{format_duration((lapse.end - lapse.start).total_seconds())}; then {until}{recorded}"))
        if x2 - x1 > 48:
            out.append(f"<text x=\"{_f((x1 + x2) / 2)}\" y=\"{_f(y - 4)}\" text-anchor=\"middle\" "
                       f"class=\"race-text\">lapsed</text>")
    if not t.fuse_windows and not t.lapses:
        out.append(f"<text class=\"muted\" x=\"{X0}\" y=\"{_f(y + BAR - 4)}\">no fuse was ever set</text>")
    return out


def _heartbeats(t: Timeline, axis: _Axis) -> list[str]:
    y = _lane_y(2)
    if not t.heartbeats:
        return [f"<text class=\"muted\" x=\"{X0}\" y=\"{_f(y + BAR - 4)}\">no heartbeats</text>"]
    gap = t.longest_heartbeat_gap()
    title = f"{len(t.heartbeats)} heartbeats, {_when(t.heartbeats[0])} to {_when(t.heartbeats[-1])}" + (
        f"\nlongest gap {format_duration(gap[1])} from {_when(gap[0])}" if gap else "")
    return [_ticks_path((axis.x(at) for at in t.heartbeats), y, y + BAR, "beat", title)]


def _diamond(x: float, y: float, r: float, cls: str, title: str) -> str:
    return (f"<path class=\"{cls}\" d=\"M{_f(x)} {_f(y - r)}L{_f(x + r)} {_f(y)}L{_f(x)} {_f(y + r)}"
            f"L{_f(x - r)} {_f(y)}Z\">{_title(title)}</path>")


def _labels_that_fit(marks: Iterable[tuple[float, str]], y: float) -> list[str]:
    """Short labels beside marks, latest first, leaving out any that would overlap one already placed."""
    out: list[str] = []
    taken: list[tuple[float, float]] = []
    for x, text in sorted(marks, reverse=True):
        width = 6.5 * len(text)
        on_left = x > X1 - 40 - width  # near the right edge: the label goes before the mark
        left_edge, tx = (x - 10 - width, x - 10) if on_left else (x + 10, x + 10)
        if any(left_edge < b + 6 and a < left_edge + width + 6 for a, b in taken):
            continue
        taken.append((left_edge, left_edge + width))
        anchor = "end" if on_left else "start"
        out.append(f"<text x=\"{_f(tx)}\" y=\"{_f(y)}\" text-anchor=\"{anchor}\">{escape(text)}</text>")
    return out


def _decisions(t: Timeline, axis: _Axis) -> list[str]:
    y = _lane_y(3) + BAR / 2
    if not t.decisions:
        return [f"<text class=\"muted\" x=\"{X0}\" y=\"{_f(y + 4)}\">no reconciler decisions</text>"]
    labels = _labels_that_fit(((axis.x(m.at), m.label) for m in t.decisions), y + 4)
    return labels + [_diamond(axis.x(m.at), y, 7, "decision", f"{_when(m.at)}\n{m.detail}") for m in t.decisions]


def _stop(t: Timeline, axis: _Axis, bottom: float) -> list[str]:
    """Stop requests, then the stop; drawn after their labels, so a label never hides a mark."""
    y = _lane_y(4) + BAR / 2
    stop = t.stop
    if stop is None:
        if not t.stop_requests:
            return [f"<text class=\"muted\" x=\"{X0}\" y=\"{_f(y + 4)}\">not stopped</text>"]
        out = _labels_that_fit(((axis.x(m.at), f"stop requested: {m.label}") for m in t.stop_requests), y + 4)
        return out + _requests(t, axis, y)
    x = axis.x(stop.at)
    out = []
    title = f"stopped at {_when(stop.at)}: {stop.summary}\n{stop.detail}"
    if stop.race:  # the race: a red line through every lane, and the lease it cut short lit up
        window_start = max((w.start for w in t.fuse_windows if w.ended_by == "stopped"), default=stop.at)
        out.append(f"<line class=\"race-line\" x1=\"{_f(x)}\" y1=\"{TOP}\" x2=\"{_f(x)}\" y2=\"{bottom}\"/>")
        band_to = axis.x(stop.fuse_expires_at) if stop.fuse_expires_at else x
        out.append(_rect(max(axis.x(window_start), x - 40), max(band_to, x + 6), _lane_y(1) - 8, BAR + 16,
                         "race-band", _race_note(t), min_width=0))
        title = "STOPPED WHILE THE FUSE WAS LIVE\n" + title
    label = stop.summary + (" (stopped while the fuse was live)" if stop.race else "")
    right = x + 11 + 6.5 * len(label) > X1 + 40
    anchor, tx = ("end", x - 11) if right else ("start", x + 11)
    cls = " class=\"race-text\"" if stop.race else ""
    out.append(f"<text{cls} x=\"{_f(tx)}\" y=\"{_f(y + 4)}\" text-anchor=\"{anchor}\">{escape(label)}</text>")
    out += _requests(t, axis, y)
    out.append(f"<circle class=\"{'stop-live' if stop.race else 'stop'}\" cx=\"{_f(x)}\" cy=\"{_f(y)}\" r=\"7\">"
               f"{_title(title)}</circle>")
    return out


def _requests(t: Timeline, axis: _Axis, y: float) -> list[str]:
    out = []
    for m in t.stop_requests:
        x = axis.x(m.at)
        out.append(f"<path class=\"request\" d=\"M{_f(x - 6)} {_f(y - 8)}L{_f(x + 6)} {_f(y - 8)}"
                   f"L{_f(x)} {_f(y + 4)}Z\">"
                   f"{_title(f'stop requested at {_when(m.at)}' + chr(10) + m.detail)}</path>")
    return out
