"""Webhooks end to end: real daemons, real sessions, a real HTTP receiver on 127.0.0.1 that checks signatures.

Plus the outbox on the store (idempotent enqueue, untouched by rebuild) and
the pure rules (hook types, backoff, verdicts, signatures).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from conftest import record, running, wait_for

from agentledger.domain import webhooks as hooks
from agentledger.domain.session import Session

SECRET = "s3cret-for-tests"


# -- a receiver ---------------------------------------------------------------------------------------


class Receiver:
    """An HTTP server on a free local port; ``answer(path, n)`` says what the n-th request (0-based) to a path gets.

    Every request is recorded with its headers, body, whether its signature
    checks out, and the status it was answered with.
    """

    def __init__(self, answer: Any = None, port: int = 0) -> None:
        self.answer = answer or (lambda path, n: (200, {}))
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()  # answers that wait for the test wait on this
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                path = self.path
                with receiver.lock:
                    n = sum(1 for r in receiver.requests if r["path"] == path)
                    entry = {"path": path, "headers": dict(self.headers), "body": body, "at": time.time(),
                             "status": None, "valid": _valid(self.headers, body)}
                    receiver.requests.append(entry)
                status, headers = receiver.answer(path, n)
                if status == "block":
                    receiver.gate.wait(60)
                    status, headers = 503, {}
                entry["status"] = status
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def accepted(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.to(path) if r["status"] is not None and 200 <= r["status"] < 300]

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


def _valid(headers: Any, body: bytes) -> bool:
    """A receiver's checks, as docs/webhooks.md tells one to make them."""
    signature = headers.get("X-Agentledger-Signature")
    if signature is None or signature != headers.get("X-Hub-Signature-256"):
        return False
    try:
        hooks.verify(SECRET, body, signature, timestamp=int(headers["X-Agentledger-Timestamp"]), now=time.time())
    except hooks.InvalidSignature:
        return False
    return True


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(answer: Any = None, port: int = 0) -> Receiver:
        made.append(Receiver(answer, port))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def daemon(daemon):
    """The shared fixture, passing every 300 ms."""
    return lambda *options: daemon("--interval", "300ms", *options)


def configure(home: Path, endpoints: dict[str, dict[str, Any]]) -> None:
    """Write ``config.toml`` (mode 600) with these ``[webhooks.NAME]`` tables."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = ['metrics_addr = "off"']
    for name, fields in endpoints.items():
        lines.append(f"[webhooks.{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in fields.items()]
    path = home / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


def deliveries(cli, *options: str) -> list[dict[str, Any]]:
    return cli.json_lines("webhooks", "--limit", "1000", *options)


def states(store, endpoint: str | None = None) -> list[str]:
    """The outbox's states in id order, read in-process (cheaper to poll than the CLI)."""
    sql = "SELECT state FROM webhook_deliveries" + (" WHERE endpoint = ?" if endpoint else "") + " ORDER BY id"
    return [r[0] for r in store.db.execute(sql, (endpoint,) if endpoint else ()).fetchall()]


def daemon_status(home: Path) -> dict[str, Any]:
    path = home / "daemon.status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def by_endpoint(cli, endpoint: str) -> list[dict[str, Any]]:
    return sorted(deliveries(cli, "--endpoint", endpoint), key=lambda d: d["id"])


def body_of(request: dict[str, Any]) -> dict[str, Any]:
    return json.loads(request["body"])


FAST = {"retry_initial": "100ms", "retry_max": "200ms"}


# -- end to end ---------------------------------------------------------------------------------------


def test_retried_until_accepted_once_per_key_with_exact_signed_bodies_4xx_dead_429_retried(cli, daemon, home,
                                                                                           receivers, store):
    def answer(path: str, n: int) -> tuple[Any, dict[str, str]]:
        if path == "/flaky":
            return (500, {}) if n < 3 else (200, {})
        if path == "/gone":
            return 410, {}
        return (429, {"Retry-After": "1"}) if n == 0 else (200, {})

    receiver = receivers(answer)
    configure(home, {
        "flaky": {"url": receiver.url("/flaky"), "secret": SECRET, **FAST},
        "gone": {"url": receiver.url("/gone"), "secret": SECRET, "events": ["session.stopped"], **FAST},
        "busy": {"url": receiver.url("/busy"), "secret": SECRET, "events": ["session.stopped"], **FAST},
    })
    daemon()
    sid = cli.launch("sh", "-c", "exit 7", options=("--name", "seven", "--label", "team=core"))
    wait_for(lambda: len(receiver.accepted("/flaky")) == 2 and receiver.accepted("/busy")
             and sorted(states(store)) == ["dead", "delivered", "delivered", "delivered"], timeout=20)

    flaky = receiver.to("/flaky")
    assert [r["status"] for r in flaky] == [500, 500, 500, 200, 200]
    assert all(r["valid"] for r in receiver.requests)
    keys = [r["headers"]["Idempotency-Key"] for r in flaky]
    assert len(set(keys[:4])) == 1 and keys[4] != keys[0]  # one key per event, kept across retries
    accepted = receiver.accepted("/flaky")
    assert sorted(r["headers"]["Idempotency-Key"] for r in accepted) == sorted(set(keys))  # once per key
    assert [r["headers"]["X-Agentledger-Hook"] for r in accepted] == ["session.started", "session.stopped"]
    for r in flaky:
        assert r["headers"]["X-Agentledger-Event-Id"] == r["headers"]["Idempotency-Key"]
        assert r["headers"]["User-Agent"].startswith("agentledger/")
        assert body_of(r)["sent_at"] == int(r["headers"]["X-Agentledger-Timestamp"])

    started, stopped = (body_of(r) for r in accepted)
    status = cli.json("status", sid)
    assert started["hook_type"] == "session.started" and started["pid"] == status["pid"]
    assert stopped["hook_type"] == "session.stopped" and stopped["session_id"] == sid
    assert stopped["exit_status"] == 7 and stopped["signal"] is None and stopped["stop_reason"] == "exited"
    assert stopped["cwd"] == os.getcwd() and stopped["adapter"] == status["adapter"]
    assert stopped["meta"]["name"] == "seven" and stopped["meta"]["labels"] == {"team": "core"}
    assert stopped["meta"]["argv"] == ["sh", "-c", "exit 7"] and stopped["meta"]["pid"] == status["pid"]
    assert stopped["decided_by"]["component"] == "supervisor" and stopped["evidence"]["returncode"] == 7
    assert "exited with status 7" in stopped["summary"] and "\n" not in stopped["summary"]
    assert datetime.fromisoformat(stopped["timestamp"]) == datetime.fromisoformat(status["stopped_at"])
    assert stopped["duration_seconds"] == pytest.approx(
        (datetime.fromisoformat(status["stopped_at"]) - datetime.fromisoformat(status["started_at"])).total_seconds(),
        abs=0.01)
    assert isinstance(stopped["position"], int) and started["position"] < stopped["position"]

    rows = {d["endpoint"]: d for d in deliveries(cli) if d["hook_type"] == "session.stopped"}
    assert (rows["flaky"]["state"], rows["flaky"]["attempts"]) == ("delivered", 1)
    assert (rows["gone"]["state"], rows["gone"]["attempts"], rows["gone"]["last_status"]) == ("dead", 1, 410)
    assert (rows["busy"]["state"], rows["busy"]["attempts"], rows["busy"]["last_status"]) == ("delivered", 2, 200)
    first, second = receiver.to("/busy")
    assert second["at"] - first["at"] >= 0.9  # Retry-After: 1 honoured
    assert [d["id"] for d in deliveries(cli, "--failed")] == [rows["gone"]["id"]]
    assert "410" in cli("webhooks", "--failed").stdout


def test_killed_mid_delivery_and_restarted_nothing_is_lost(cli, daemon, home, receivers, store):
    receiver = receivers(lambda path, n: ("block", {}) if n == 0 else (200, {}))
    configure(home, {"main": {"url": receiver.url("/main"), "secret": SECRET, **FAST}})
    pid = daemon()
    cli.launch("true")
    # the first delivery is in flight (its receiver stalls) and the second is queued behind it
    wait_for(lambda: receiver.to("/main") and states(store) == ["pending", "pending"], timeout=60)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not running(pid), timeout=30)
    receiver.gate.set()
    assert states(store) == ["pending", "pending"]

    daemon()
    wait_for(lambda: states(store) == ["delivered", "delivered"], timeout=60)
    accepted = receiver.accepted("/main")
    assert [r["headers"]["X-Agentledger-Hook"] for r in accepted] == ["session.started", "session.stopped"]
    assert receiver.to("/main")[0]["headers"]["Idempotency-Key"] == accepted[0]["headers"]["Idempotency-Key"]
    assert all(r["valid"] for r in receiver.requests)



def test_dead_lettered_after_give_up_after_then_retry_delivers_it(cli, daemon, home, receivers, store):
    with socket.socket() as probe:  # a port with nobody listening, for now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/late"
    configure(home, {"late": {"url": url, "secret": SECRET, "events": ["session.stopped"], "give_up_after": "2s",
                              "retry_initial": "200ms", "retry_max": "500ms"}})
    daemon()
    cli.launch("true")
    wait_for(lambda: states(store) == ["dead"], timeout=60)
    [dead] = deliveries(cli, "--failed")
    assert dead["state"] == "dead" and dead["attempts"] >= 3 and dead["last_status"] is None
    assert dead["last_attempt_at"] - dead["first_attempt_at"] >= 1.9
    assert "still failing after 2s" in dead["last_error"]
    listed = cli("webhooks", "--failed").stdout.splitlines()
    assert listed[0].split()[:5] == ["ID", "ENDPOINT", "HOOK", "SESSION", "STATE"]
    assert listed[1].split()[:5] == [str(dead["id"]), "late", "session.stopped", dead["session_id"][:12], "dead"]

    unknown = cli("webhooks", "retry", "99999", check=False)
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "99999" in unknown.stderr
    receiver = receivers(port=port)
    retried = cli("webhooks", "retry", str(dead["id"]))
    assert f"re-queued delivery {dead['id']}" in retried.stdout
    wait_for(lambda: states(store) == ["delivered"], timeout=60)
    [accepted] = receiver.accepted("/late")
    assert accepted["valid"] and accepted["headers"]["Idempotency-Key"] == dead["event_id"]
    assert by_endpoint(cli, "late")[0]["attempts"] == 1
    again = cli("webhooks", "retry", str(dead["id"]), check=False)
    assert again.returncode == 2 and "delivered, not dead" in again.stderr
    nothing = cli("webhooks", "retry", "--all-failed")
    assert nothing.stdout == "" and nothing.stderr.strip() == "agentledger: no dead deliveries to re-queue"
    unknown = cli("webhooks", "retry", "nosuch", check=False)
    assert unknown.returncode == 2 and "'nosuch' is not a delivery id" in unknown.stderr


def test_a_hanging_receiver_delays_neither_reconcile_passes_nor_another_endpoint(cli, daemon, home, receivers):
    receiver = receivers(lambda path, n: ("block", {}) if path == "/hang" else (200, {}))
    configure(home, {"hang": {"url": receiver.url("/hang"), "timeout": "60s"},
                     "ok": {"url": receiver.url("/ok")}})
    daemon()
    first, second = cli.launch("true"), cli.launch("true")
    # every deadline here is well inside the 60 s the hanging request may take: what happens, happens beside it
    wait_for(lambda: receiver.to("/hang"), timeout=40)
    wait_for(lambda: len(receiver.accepted("/ok")) == 4, timeout=40)
    assert {body_of(r)["session_id"] for r in receiver.accepted("/ok")} == {first, second}

    passes = daemon_status(home)["passes"]
    wait_for(lambda: daemon_status(home)["passes"] >= passes + 5, timeout=40, interval=0.02)
    assert len(receiver.to("/hang")) == 1 and receiver.to("/hang")[0]["status"] is None  # still hanging
    status = cli.json("daemon", "status")["daemon"]
    assert status["last_pass"]["error"] is None
    hang = status["webhooks"]["hang"]
    assert hang["in_flight_since"] is not None and hang["delivered"] == 0
    assert status["webhooks"]["ok"]["delivered"] == 4


def test_verify_accepts_a_good_signature_and_rejects_a_tampered_body():
    body = hooks.attempt_body(json.dumps({"hook_type": "session.stopped", "exit_status": 0}, separators=(",", ":")), int(time.time()))
    signature = hooks.sign(SECRET, body)

    def verify(data: bytes, *options: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "agentledger", "webhooks", "verify", "--secret", SECRET,
                               "--signature", signature, *options], input=data, capture_output=True, timeout=30)

    good = verify(body)
    assert good.returncode == 0 and good.stdout == b"valid\n"
    sent_at = str(json.loads(body)["sent_at"])
    assert verify(body, "--timestamp", sent_at).returncode == 0
    tampered_body = body.replace(b'"exit_status":0', b'"exit_status":1')
    assert tampered_body != body
    tampered = verify(tampered_body)
    assert tampered.returncode == 1 and tampered.stderr.count(b"\n") == 1 and b"does not match" in tampered.stderr
    other_time = verify(body, "--timestamp", str(int(sent_at) - 1))
    assert other_time.returncode == 1 and b"sent_at" in other_time.stderr
    stale = hooks.attempt_body('{"a":1}', int(time.time()) - 3600)
    old = subprocess.run([sys.executable, "-m", "agentledger", "webhooks", "verify", "--secret", SECRET,
                          "--signature", hooks.sign(SECRET, stale), "--timestamp", str(int(time.time()) - 3600),
                          "--tolerance", "5m"], input=stale, capture_output=True, timeout=30)
    assert old.returncode == 1 and b"replay" in old.stderr


# -- the outbox on the store --------------------------------------------------------------------------


def test_enqueue_is_idempotent_rebuild_leaves_the_outbox_alone_and_start_now_skips_the_past(store, spawn):
    from agentledger.application.webhooks import Outbox
    from agentledger.domain.webhook_endpoint import WebhookEndpoint
    from agentledger.infrastructure import processes
    from agentledger.projections.catchup import rebuild

    identity = processes.identity_of(spawn("sleep", "600").pid)
    sid = record(store, identity, fuse_ttl=None)
    store.ledger.change(sid, lambda s: s.record_stop(reason="signalled", signal="SIGKILL", decided_by={
        "component": "test"}, evidence={"at": datetime.now(timezone.utc)}))
    all_hooks = WebhookEndpoint("all", "http://127.0.0.1:9/", start="beginning")  # the whole log, asked for
    outbox = Outbox(store)
    assert outbox.enqueue([all_hooks], limit=1) == (1, True)  # pages through the log
    assert outbox.enqueue([all_hooks]) == (1, False)
    count = "SELECT count(*) FROM webhook_deliveries"
    assert store.db.execute(count).fetchone()[0] == 2

    with store.write_transaction() as cursor:  # as if the position had been lost: read the log again
        cursor.execute("UPDATE webhook_positions SET position = 0")
    assert outbox.enqueue([all_hooks])[0] == 2  # offered again, and refused by UNIQUE
    assert store.db.execute(count).fetchone()[0] == 2
    rebuild(store)
    assert store.db.execute(count).fetchone()[0] == 2
    assert outbox.positions([all_hooks]) == {"all": store.log_head()}

    [payload] = store.db.execute("SELECT payload FROM webhook_deliveries WHERE hook_type = 'session.stopped'"
                                 ).fetchone()
    stopped = json.loads(payload)
    assert (stopped["exit_status"], stopped["signal"], stopped["stop_reason"]) == (137, "SIGKILL", "signalled")
    assert "sent_at" not in stopped and stopped["session_id"] == sid.hex

    late = WebhookEndpoint("late", "http://127.0.0.1:9/", events=("session.started",), start="now")
    assert outbox.enqueue([all_hooks, late]) == (0, False)
    newer = record(store, identity, fuse_ttl=None)
    assert outbox.enqueue([all_hooks, late])[0] == 2
    rows = store.db.execute("SELECT endpoint, session_id FROM webhook_deliveries WHERE position > ?",
                            (stopped["position"],)).fetchall()
    assert sorted((r[0], r[1]) for r in rows) == [("all", newer.hex), ("late", newer.hex)]


# -- the pure rules -----------------------------------------------------------------------------------


def _session(**fields: Any) -> Session:
    base = dict(argv=["sleep", "1"], cwd="/", adapter="command", name=None, model=None, prompt=None, group=None,
                labels={}, host="h", boot_id="b", pid=42, pid_start_time=1.0, boot_time=0.0, supervisor_pid=None,
                log_path=None, launched_by="test", timeout=60.0)
    return Session.launch(session_id=uuid4(), **{**base, **fields})


def test_hook_types_of_each_event():
    session = _session()
    launched = session.collect_events()[0]
    assert hooks.hook_types(launched, session) == ("session.started",)
    failed = _session(pid=None)
    assert hooks.hook_types(failed.collect_events()[0], failed) == ()
    session.set_fuse(ttl=1, set_by="t", now=datetime.now(timezone.utc))
    session.heartbeat(source="t", now=datetime.now(timezone.utc))
    assert [hooks.hook_types(e, session) for e in session.collect_events()] == [(), ()]
    session.record_fuse_expired(decided_by={}, evidence={}, now=datetime.now(timezone.utc) + timedelta(seconds=5))
    session.request_stop(requested_by="t", signal="SIGTERM", grace=1, note=None)
    expired, by_user = session.collect_events()
    assert hooks.hook_types(expired, session) == ("session.unwatched",) and hooks.hook_types(by_user, session) == ()
    session.request_stop(requested_by="t", signal="SIGTERM", grace=1, note=None, cause="timeout")
    first = session.collect_events()[0]
    assert hooks.hook_types(first, session) == ("session.timeout",)
    session.request_stop(requested_by="t", signal="SIGKILL", grace=0, note=None, cause="timeout")
    assert hooks.hook_types(session.collect_events()[0], session) == ()  # the same timeout's escalation
    session.record_stop(reason="timeout", signal="SIGTERM", decided_by={"component": "supervisor"}, evidence={})
    [stop] = session.collect_events()
    assert hooks.hook_types(stop, session) == ("session.stopped",)
    body = hooks.body("session.timeout", first, session, position=9)
    assert body["timeout_seconds"] == 60.0 and body["signal"] == "SIGTERM" and "timeout (1m) passed" in body["summary"]


def test_event_ids_are_stable_and_distinct():
    sid = uuid4()
    assert hooks.event_id(sid, 3) == hooks.event_id(sid, 3)
    assert len({hooks.event_id(sid, 1), hooks.event_id(sid, 2), hooks.event_id(uuid4(), 1)}) == 3


def test_exit_status_is_the_shells():
    assert hooks.exit_status(7, None) == 7 and hooks.exit_status(0, None) == 0
    assert hooks.exit_status(None, "SIGKILL") == 137 and hooks.exit_status(None, "SIGTERM") == 143
    assert hooks.exit_status(None, None) is None and hooks.exit_status(None, "SIGNOPE") is None


def test_backoff_doubles_within_equal_jitter_bounds_up_to_the_maximum():
    for attempt, step in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (9, 256.0), (10, 300.0), (500, 300.0)]:
        low = hooks.backoff_delay(attempt, initial=1.0, maximum=300.0, random=lambda: 0.0)
        high = hooks.backoff_delay(attempt, initial=1.0, maximum=300.0, random=lambda: 0.999999)
        assert low == step / 2 and step / 2 < high <= step


def test_verdicts():
    policy = hooks.RetryPolicy(initial=1.0, maximum=10.0, give_up_after=100.0)

    def judge(status: int | None, *, now: float = 1000.0, retry_after: float | None = None) -> hooks.Decision:
        outcome = hooks.HttpOutcome(status, None if status else "ConnectError", retry_after)
        return hooks.judge(outcome, attempts=2, first_attempt_at=990.0, now=now, policy=policy, random=lambda: 0.5)

    assert judge(200).verdict == judge(204).verdict == hooks.Verdict.DELIVERED
    for status in (400, 401, 404, 410, 422):
        assert judge(status).verdict == hooks.Verdict.DEAD
    for status in (301, 408, 429, 500, 502, 503, None):
        decision = judge(status)
        assert decision.verdict == hooks.Verdict.RETRY and 1001.0 <= decision.retry_at <= 1002.0
    assert judge(429, retry_after=30).retry_at == 1030.0 and judge(503, retry_after=7).retry_at == 1007.0
    assert judge(500, retry_after=30).retry_at <= 1002.0  # Retry-After only on 429 and 503
    assert judge(500, now=1089.5).retry_at == 1090.0  # the last try at the give-up moment
    assert judge(500, now=1090.0).verdict == hooks.Verdict.DEAD
    assert judge(200, now=5000.0).verdict == hooks.Verdict.DELIVERED


def test_signatures_and_attempt_bodies():
    body = hooks.attempt_body('{"a": 1}', 1700000000)
    assert json.loads(body) == {"a": 1, "sent_at": 1700000000}
    signature = hooks.sign("k", body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    hooks.verify("k", body, signature, timestamp=1700000000, now=1700000010)
    with pytest.raises(hooks.InvalidSignature, match="does not match"):
        hooks.verify("other", body, signature)
    with pytest.raises(hooks.InvalidSignature, match="replay"):
        hooks.verify("k", body, signature, timestamp=1700000000, now=1700001000)
    with pytest.raises(ValueError):
        hooks.attempt_body("{}", 1)
