"""``agentledger events`` and ``agentledger timeline``: the log as a stream and as a picture."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest
from conftest import wait_for

FIELDS = dict(argv=["true"], cwd="/", adapter="command", name=None, model=None, prompt=None, group=None,
              labels={}, host="h", boot_id="b", pid=1, pid_start_time=1.0, boot_time=0.0,
              supervisor_pid=None, log_path=None, launched_by="t")
RECONCILER = {"component": "reconciler", "host": "h", "pid": 2, "user": "t"}
LANE_LABELS = ("process", "fuse", "heartbeats", "reconciler", "stop")


def launch(store, fuse_ttl: float | None = 3600, **fields) -> UUID:
    sid = uuid4()
    store.ledger.launch(session_id=sid, fuse_ttl=fuse_ttl, fuse_set_by="supervisor", **{**FIELDS, **fields})
    return sid


def beat(store, sid: UUID) -> None:
    from agentledger.application.clock import utc_now

    store.ledger.change(sid, lambda s: s.heartbeat(source="test", now=utc_now()))


def events(cli, *args: str) -> list[dict]:
    return [json.loads(line) for line in cli("events", *args).stdout.splitlines()]


def stopped(cli, sid: str) -> dict:
    return wait_for(lambda: (s := cli.json("status", sid))["status"] == "stopped" and s)


# -- events -------------------------------------------------------------------------


def test_events_streams_a_real_session_as_json_lines_in_log_order(cli):
    sid = cli.launch("sleep", "0.5", options=("--fuse-ttl", "1s"))
    stopped(cli, sid)
    out = events(cli)
    assert [e["position"] for e in out] == list(range(1, len(out) + 1))
    assert [e["version"] for e in out] == list(range(1, len(out) + 1))
    assert {e["session_id"] for e in out} == {sid}
    types = [e["type"] for e in out]
    assert types[:2] == ["Launched", "FuseSet"] and types[-2:] == ["FuseCancelled", "Stopped"]
    assert set(types[2:-2]) <= {"Heartbeat"}
    times = [datetime.fromisoformat(e["time"]) for e in out]
    assert times == sorted(times) and all(t.utcoffset() == timedelta(0) for t in times)
    for e in out:
        assert not {"originator_id", "originator_version", "timestamp", "originator_topic"} & set(e["fields"])
        assert "error" not in e
    assert out[0]["fields"]["argv"] == ["sleep", "0.5"]
    assert datetime.fromisoformat(out[1]["fields"]["expires_at"]) > times[1]
    assert (out[-1]["fields"]["reason"], out[-1]["fields"]["exit_code"]) == ("exited", 0)
    assert out[-1]["fields"]["decided_by"]["component"] == "supervisor"


def test_since_and_session_filter_the_stream(cli, store):
    first, second = launch(store), launch(store)
    beat(store, first)
    assert [(e["session_id"], e["position"]) for e in events(cli)] == [
        (first.hex, 1), (first.hex, 2), (second.hex, 3), (second.hex, 4), (first.hex, 5)]
    assert [e["position"] for e in events(cli, "--since", "3")] == [4, 5]
    assert [e["position"] for e in events(cli, "--since", "99")] == []
    assert [e["position"] for e in events(cli, "--limit", "2")] == [1, 2]
    assert [e["position"] for e in events(cli, "--since", "1", "-n", "3", "--session", first.hex)] == [2, 5]
    assert events(cli, "--limit", "0") == []
    followed = cli("events", "--follow", "--limit", "2", timeout=60).stdout.splitlines()  # ends by itself
    assert [json.loads(line)["position"] for line in followed] == [1, 2]
    mine = events(cli, "--session", first.hex[:8])
    assert [(e["position"], e["type"]) for e in mine] == [(1, "Launched"), (2, "FuseSet"), (5, "Heartbeat")]
    assert [e["position"] for e in events(cli, "--session", second.hex, "--since", "3")] == [4]


@pytest.mark.parametrize("args", [("--since", "-1"), ("--since", "x"), ("--since", "1.5"), ("--session", "ffff")])
def test_bad_events_arguments_are_one_line_usage_errors(cli, store, args):
    launch(store)
    result = cli("events", *args, check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and result.stdout == ""
    assert "Traceback" not in result.stderr


class Follower:
    """``agentledger events --follow`` as a real process, its lines collected as they come."""

    def __init__(self, *args: str) -> None:
        # SIGINT as a terminal would deliver it: a suite started in the background (``cmd &`` without job
        # control) hands its children SIGINT ignored, and Python then never turns it into KeyboardInterrupt.
        self.process = subprocess.Popen([sys.executable, "-m", "agentledger", "events", "--follow", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ),
                                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: list[dict] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(json.loads(line))

    def types(self) -> list[str]:
        return [e["type"] for e in self.lines]

    def end(self, how: int) -> tuple[int, str]:
        self.process.send_signal(how)
        code = self.process.wait(timeout=10)
        self.reader.join(timeout=10)
        return code, self.process.stderr.read().decode()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
def test_follow_prints_events_appended_after_it_started_and_ends_cleanly(store, how):
    sid, other = launch(store), launch(store)
    follower = Follower("--session", sid.hex[:10])
    try:
        wait_for(lambda: follower.types() == ["Launched", "FuseSet"])
        beat(store, other)  # another session's event: not shown
        beat(store, sid)
        wait_for(lambda: len(follower.lines) == 3)
    finally:
        code, stderr = follower.end(how)
    assert code == 0 and stderr == ""
    assert follower.types() == ["Launched", "FuseSet", "Heartbeat"]
    assert [e["position"] for e in follower.lines] == [1, 2, 6] and follower.lines[-1]["session_id"] == sid.hex


def test_follow_without_a_session_sees_every_new_event_once(store):
    sid = launch(store)
    follower = Follower("--since", "1")
    try:
        wait_for(lambda: follower.types() == ["FuseSet"])
        later = launch(store)
        beat(store, sid)
        wait_for(lambda: len(follower.lines) == 4)
    finally:
        code, _ = follower.end(signal.SIGTERM)
    assert code == 0
    assert [(e["position"], e["session_id"]) for e in follower.lines] == [
        (2, sid.hex), (3, later.hex), (4, later.hex), (5, sid.hex)]


def test_a_closed_pipe_ends_events_quietly(store):
    sid = launch(store)
    for _ in range(30):
        beat(store, sid)
    result = subprocess.run(f"{sys.executable} -m agentledger events --follow | head -n 1",
                            shell=True, capture_output=True, text=True, timeout=30, env=dict(os.environ))
    assert json.loads(result.stdout)["type"] == "Launched"
    assert result.stderr == ""


def insert_unreadable(store, sid: UUID, version: int) -> int:
    """A row no code knows how to read, straight into the library's table; its log position."""
    store.db.execute(
        f"INSERT INTO {store.events_table} (originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)",
        (sid.hex, version, "agentledger.domain.session:Session.FromTheFuture", b'{"x": 1}'))
    return store.event_position(sid.hex, version)


def test_an_unreadable_event_is_reported_in_place_and_the_stream_goes_on(cli, store):
    sid = launch(store)
    position = insert_unreadable(store, sid, 3)
    after = launch(store)
    result = cli("events")
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["position"] for e in out] == [1, 2, 3, 4, 5]
    bad = out[position - 1]
    assert (bad["session_id"], bad["version"], bad["type"], bad["time"], bad["fields"]) == (
        sid.hex, 3, "FromTheFuture", None, None)
    assert bad["topic"].endswith("Session.FromTheFuture") and bad["error"]
    assert [e["session_id"] for e in out[3:]] == [after.hex, after.hex] and "error" not in out[4]


def test_entry_json_is_plain_json():
    from agentledger.application.log import LogEntry
    from agentledger.domain.session import Session
    from agentledger.projections.export import entry_json, event_type

    sid, at = uuid4(), datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)
    event = Session.Heartbeat(originator_id=sid, originator_version=4, timestamp=at, source="cli",
                              fuse_expires_at=at + timedelta(seconds=30))
    record = entry_json(LogEntry(9, sid, 4, "agentledger.domain.session:Session.Heartbeat", event))
    assert record == {"position": 9, "time": "2026-11-25T08:00:00+00:00", "session_id": sid.hex, "version": 4,
                      "type": "Heartbeat", "fields": {"source": "cli", "fuse_expires_at": "2026-11-25T08:00:30+00:00",
                                                             "clock_offset": None}}
    assert json.loads(json.dumps(record)) == record
    assert event_type("agentledger.domain.stop_guard:StopGuard.Tripped") == "StopGuard.Tripped"


# -- timeline -----------------------------------------------------------------------


def page(cli, sid: str, tmp_path, name: str = "t.html") -> str:
    out = tmp_path / name
    result = cli("timeline", sid, "--out", str(out))
    assert result.stdout.strip() == str(out)
    text = out.read_text()
    root = ET.fromstring(text.split("\n", 1)[1])  # after the doctype: well-formed XHTML
    assert root.tag == "html" and root.find(".//svg") is not None
    assert "http" not in text and "<script" not in text and "@import" not in text
    return text


def svg_texts(html: str) -> list[str]:
    root = ET.fromstring(html.split("\n", 1)[1])
    return ["".join(t.itertext()) for t in root.find(".//svg").iter("text")]


def test_timeline_of_a_real_session_draws_every_lane(cli, tmp_path):
    sid = cli.launch("sleep", "0.5", options=("--fuse-ttl", "1s"))
    status = stopped(cli, sid)
    html = page(cli, sid[:8], tmp_path)
    texts = svg_texts(html)
    for label in LANE_LABELS:
        assert label in texts
    assert sid in html and "sleep 0.5" in html and status["host"] in html
    assert "exited, exit code 0, by supervisor" in html
    assert 'class="banner race"' not in html  # a supervisor records its stop under its own live fuse: normal
    assert html.count('class="fuse"') >= 1 and 'class="proc"' in html
    if status["heartbeat_count"]:
        assert 'class="beat"' in html and 'class="ext"' in html


def test_a_stop_inside_a_live_fuse_window_is_flagged(cli, store, tmp_path):
    sid = launch(store, fuse_ttl=3600)
    beat(store, sid)
    store.ledger.change(sid, lambda s: s.record_stop(reason="reconciled", decided_by=RECONCILER,
                                                     evidence={"pid_probe": {"pid": 1, "detail": "zombie"}},
                                                     note="no live fuse <really>"))
    html = page(cli, sid.hex, tmp_path)
    assert "stopped while the fuse was live" in html
    assert 'class="banner race"' in html and 'class="race-line"' in html and 'class="stop-live"' in html
    assert "no live fuse &lt;really&gt;" in html and "<really>" not in html
    assert "stopped (reconciled)" in svg_texts(html)  # the reconciler's decision, in its lane


def test_a_stop_after_the_fuse_lapsed_is_not_flagged_and_the_lapse_is_drawn(cli, store, tmp_path):
    from agentledger.application.clock import utc_now

    sid = launch(store, fuse_ttl=None)
    store.ledger.change(sid, lambda s: s.set_fuse(ttl=1, set_by="test", now=utc_now() - timedelta(seconds=10)))
    store.ledger.change(sid, lambda s: s.record_stop(reason="reconciled", decided_by=RECONCILER, evidence={}))
    html = page(cli, sid.hex, tmp_path)
    assert 'class="banner race"' not in html and 'class="race-line"' not in html and 'class="stop-live"' not in html
    assert not any("fuse was live" in text for text in svg_texts(html))
    assert 'class="lapse"' in html and "fuse lapsed at" in html


def test_the_process_lane_ends_at_the_last_sign_of_life_when_nobody_saw_the_exit(cli, store, tmp_path):
    from agentledger.application.clock import utc_now

    sid = launch(store, fuse_ttl=None)
    store.ledger.change(sid, lambda s: s.set_fuse(ttl=1, set_by="test", now=utc_now() - timedelta(seconds=20)))
    store.ledger.change(sid, lambda s: s.record_stop(reason="reconciled", decided_by=RECONCILER, evidence={}))
    html = page(cli, sid.hex, tmp_path)
    assert 'class="proc-unseen"' in html and "its end was not seen: last sign of life" in html
    assert "known alive from" in html
    seen = cli.launch("sleep", "0.2")  # its supervisor sees the exit: no unseen stretch
    stopped(cli, seen)
    assert 'class="proc-unseen"' not in page(cli, seen, tmp_path)


def test_timeline_escapes_text_from_the_log_and_reports_unreadable_events(cli, store, tmp_path):
    sid = launch(store, argv=["echo", "<script>alert('x')</script>", "&"], name="<b>n</b>")
    insert_unreadable(store, sid, 3)
    html = page(cli, sid.hex, tmp_path)
    assert "&lt;script&gt;" in html and "<b>n" not in html
    assert "1 event(s) could not be read" in html and "FromTheFuture" in html


def test_timeline_errors_are_one_line(cli, store, tmp_path):
    sid = launch(store).hex
    missing = cli("timeline", sid, check=False)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "--out" in missing.stderr
    unwritable = cli("timeline", sid, "--out", str(tmp_path / "no" / "such" / "dir.html"), check=False)
    assert unwritable.returncode == 1 and unwritable.stderr.count("\n") == 1 and "cannot write" in unwritable.stderr
    unknown = cli("timeline", "abcdef12", "--out", str(tmp_path / "x.html"), check=False)
    assert unknown.returncode == 2 and not (tmp_path / "x.html").exists()
    assert "Traceback" not in missing.stderr + unwritable.stderr + unknown.stderr


# -- the lanes, from events with chosen times --------------------------------------------


T0 = datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Log:
    """A session's log entries with times chosen by the test (the aggregate would take the clock's)."""

    def __init__(self) -> None:
        self.sid = uuid4()
        self.entries: list = []

    def add(self, name: str, seconds: float, **fields) -> Log:
        from agentledger.application.log import LogEntry
        from agentledger.domain.session import Session

        cls = getattr(Session, name)
        version = len(self.entries) + 1
        if name == "Launched":
            fields = {**FIELDS, "originator_topic": "agentledger.domain.session:Session", **fields}
        event = cls(originator_id=self.sid, originator_version=version, timestamp=at(seconds), **fields)
        self.entries.append(LogEntry(version, self.sid, version, f"agentledger.domain.session:Session.{name}", event))
        return self

    def heartbeat(self, seconds: float, expires: float | None) -> Log:
        expiry = None if expires is None else at(expires)
        return self.add("Heartbeat", seconds, source="supervisor", fuse_expires_at=expiry)

    def timeline(self, now: float):
        from agentledger.projections.timeline import build_timeline

        return build_timeline(self.sid.hex, self.entries, at(now))


def test_fuse_windows_extensions_and_lapses_follow_the_aggregate():
    log = (Log().add("Launched", 0).add("FuseSet", 0, ttl=10.0, expires_at=at(10), set_by="supervisor")
           .heartbeat(3, 13).heartbeat(6, 16)  # two extensions
           .add("FuseExpired", 18, expired_at=at(16), decided_by=RECONCILER, evidence={})  # nothing from 16 to 20
           .heartbeat(20, 30)  # re-arms the lapsed fuse
           .add("FuseCancelled", 25, by="supervisor", reason="session stopped")
           .add("Stopped", 25, reason="exited", exit_code=0, signal=None,
                decided_by={"component": "supervisor"}, evidence={}, note=None))
    t = log.timeline(now=99)
    assert t.status == "stopped" and (t.start, t.end) == (at(0), at(25))
    assert t.process.start == at(0) and t.process.end == at(25) and not t.process.open
    first, second = t.fuse_windows
    assert (first.start, first.end, first.ended_by) == (at(0), at(16), "expiry")
    assert first.extensions == [(at(3), at(13)), (at(6), at(16))]
    assert (second.start, second.end, second.ended_by, second.expires_at) == (at(20), at(25), "stopped", at(30))
    assert "re-armed" in second.armed_by
    [lapse] = t.lapses
    assert (lapse.start, lapse.end, lapse.ended_by, lapse.recorded_at) == (at(16), at(20), "heartbeat", at(18))
    assert [m.kind for m in t.decisions] == ["FuseExpired"]
    assert t.stop.fuse_live and t.stop.fuse_expires_at == at(30)
    assert not t.stop.race  # the supervisor saw the exit: not the seed's race
    assert t.longest_heartbeat_gap() == (at(6), 14.0)


def test_a_cancelled_fuse_then_a_stop_is_not_a_stop_under_a_live_fuse():
    log = (Log().add("Launched", 0).add("FuseSet", 0, ttl=60.0, expires_at=at(60), set_by="supervisor")
           .add("FuseCancelled", 5, by="user:me", reason="cancelled by hand").heartbeat(6, None)
           .add("StopRequested", 7, requested_by="me", signal="SIGTERM", grace=10.0, note=None)
           .add("Stopped", 8, reason="user", exit_code=None, signal="SIGTERM",
                decided_by={"component": "supervisor"}, evidence={}, note=None))
    t = log.timeline(now=99)
    [window] = t.fuse_windows
    assert (window.end, window.ended_by) == (at(5), "cancelled") and not t.lapses
    assert not t.stop.fuse_live and [m.kind for m in t.stop_requests] == ["StopRequested"] and not t.decisions


def test_a_running_session_is_drawn_to_now_with_its_open_lapse():
    t = Log().add("Launched", 0).add("FuseSet", 0, ttl=5.0, expires_at=at(5), set_by="supervisor").timeline(now=12)
    assert t.status == "unwatched" and t.end == at(12) and t.process.open
    assert [(w.start, w.end, w.ended_by) for w in t.fuse_windows] == [(at(0), at(5), "expiry")]
    assert [(lapse.start, lapse.end, lapse.ended_by) for lapse in t.lapses] == [(at(5), at(12), "open")]
    live = Log().add("Launched", 0).add("FuseSet", 0, ttl=50.0, expires_at=at(50), set_by="s").timeline(now=12)
    assert live.status == "running" and live.fuse_windows[0].ended_by == "open" and not live.lapses


@pytest.mark.parametrize("hours", [1 / 3600, 10])
def test_one_second_or_ten_hours_of_heartbeats_makes_a_small_page(hours):
    from agentledger.entrypoints.timeline_html import render

    log = Log().add("Launched", 0).add("FuseSet", 0, ttl=30.0, expires_at=at(30), set_by="supervisor")
    count = 3600
    step = hours * 3600 / count
    for i in range(1, count):
        log.heartbeat(i * step, i * step + 30)
    log.add("FuseCancelled", hours * 3600, by="supervisor", reason="session stopped")
    log.add("Stopped", hours * 3600, reason="exited", exit_code=0, signal=None,
            decided_by={"component": "supervisor"}, evidence={}, note=None)
    html = render(log.timeline(now=hours * 3600 + 60))
    assert len(html) < 120_000
    assert html.count("<path class=\"beat\"") == 1 and html.count("<path class=\"ext\"") == 1
    ET.fromstring(html.split("\n", 1)[1])
