"""The console's audit pages over a real store: replay, verify, hosts, webhooks, the daemon.

Data is made as a user makes it (the real CLI, a real daemon) or, where
waiting for the real thing would only cost time (a dead-lettered webhook
delivery, a host gone silent), through the same application services the
daemon calls. Each page is then read through Starlette's test client with the
console's log watch running, as ``agentledger console`` serves it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import dead_identity, record, wait_for
from console_server import console_client
from starlette.testclient import TestClient
from test_audit import faulty_stop_under_a_live_fuse

from agentledger.entrypoints.console.guard import COOKIE, Guard

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


console = console_client  # a client of a console over this test's store; its log watch runs while the block does


def main(page: Any) -> str:
    """The page's ``<main>``: what it says, without the navigation and footer every page shares."""
    assert page.status_code == 200, page.text
    return page.text.split('<main id="main"', 1)[1].split("</main>", 1)[0]


def row(html: str, marker: str) -> str:
    """The ``<tr ...>`` of ``html`` whose opening tag holds ``marker`` (``data-host="x"``), through its ``</tr>``."""
    found = re.search(r"<tr[^>]*" + re.escape(marker) + r"[^>]*>.*?</tr>", html, re.S)
    assert found, f"no row with {marker!r} in {html}"
    return found.group()


def caught_up(client: TestClient, store: Any) -> None:
    """The console's log watch has applied the whole log to the read models."""
    head = store.log_head()
    wait_for(lambda: client.get("/healthz").json()["position"] >= head, timeout=60)


# -- replay and verify ------------------------------------------------------------


def test_replay_and_verify_show_agreement_then_flag_the_seeds_race(cli, store, spawn):
    clean = record(store, dead_identity(spawn)).hex
    cli("reconcile")
    with console() as client:
        caught_up(client, store)
        replay = main(client.get("/replay"))
        assert "1 reconciler decision replayed: 1 agree, 0 differ" in replay
        assert f'href="/s/{clean}"' in replay and "DIFFERS" not in replay and 'class="differs"' not in replay
        verify = main(client.get("/verify"))
        assert "ok: every check passed" in verify and "violation" not in verify
        assert "1 session (1 aggregate), 1 stop (1 by a reconciler)" in verify

        race = faulty_stop_under_a_live_fuse(store, spawn).hex
        caught_up(client, store)
        replay = main(client.get("/replay"))
        assert "2 reconciler decisions replayed: 1 agree, 1 differ" in replay
        differs = row(replay, f'data-session="{race}"')
        assert 'class="differs"' in differs and "DIFFERS" in differs and "stop (reconciled)" in differs
        assert "keep" in differs and f'href="/s/{race}"' in differs
        assert "the rule now decides keep" in replay and "evidence says fuse expired, the log says set" in replay
        assert "agrees" in row(replay, f'data-session="{clean}"')

        one = main(client.get(f"/replay?session={race[:12]}"))
        assert "1 reconciler decision replayed: 0 agree, 1 differ" in one and clean not in one

        verify = main(client.get("/verify"))
        assert "1 violation<" in verify and "ok: every check passed" not in verify
        violation = row(verify, 'class="failed"')
        assert "stop-under-live-fuse" in violation and f'href="/s/{race}"' in violation
        from agentledger.infrastructure.store_identity import store_id_of

        assert store_id_of(store) in verify

        unknown = client.get(f"/replay?session={HOSTILE}")
        assert unknown.status_code == 404 and ESCAPED in unknown.text and HOSTILE not in unknown.text


# -- hosts ------------------------------------------------------------------------


def test_hosts_page_says_each_hosts_state_in_words_and_escapes_its_name(cli, store):
    from agentledger.application.hosting import record_daemon_alive

    sid = cli.launch("sleep", "30", options=("--no-lock",))
    for name, pid in ((HOSTILE, 4242), ("old-box", 4343)):  # daemons heard from once, then never again
        record_daemon_alive(store.ledger, name, pid=pid, version="0.0-test", boot_id="b", every=0.05)
    with console() as client:
        def silent() -> str | None:
            page = main(client.get("/hosts"))
            return page if 'data-host="old-box"' in page and "silent" in row(page, 'data-host="old-box"') else None

        wait_for(silent, timeout=60)
        cli("host", "forget", "old-box", "--reason", "rack 4 lost power")
        page = wait_for(lambda: "forgotten" in (html := main(client.get("/hosts"))) and html, timeout=60)
        assert HOSTILE not in page and ESCAPED in page
        hostile = row(page, f'data-host="{ESCAPED}"')
        assert 'class="host-silent"' in hostile and "silent" in hostile and "4242" in hostile
        assert "0.0-test" in hostile and " ago" in hostile
        forgotten = row(page, 'data-host="old-box"')
        assert 'class="host-forgotten"' in forgotten and "forgotten (rack 4 lost power)" in forgotten
        here = cli.json("status", sid)["host"]
        this_host = row(page, f'data-host="{here}"')
        assert "no daemon" in this_host and 'class="host-no-daemon"' in this_host
        assert re.findall(r"<td>(\d+)</td>", this_host)[-2:] == ["1", "1"]  # running, sessions
    cli("stop", sid)


# -- webhooks ---------------------------------------------------------------------


def stopped_with_a_dead_delivery(cli: Any, store: Any) -> int:
    """A session that ran and stopped, its hooks enqueued, the first of them dead: that delivery's id."""
    sid = cli.launch("true", options=("--no-lock",))
    wait_for(lambda: cli.json("status", sid)["status"] == "stopped")
    return dead_delivery(store)[0]


def dead_delivery(store: Any, endpoint: str = "hooks") -> tuple[int, int]:
    """Every hook of the log enqueued for ``endpoint``; the first dead-lettered as the daemon does it.
    Its id, and how many deliveries there are."""
    from agentledger.application.ports import Attempt
    from agentledger.application.webhooks import Outbox
    from agentledger.domain import webhooks as hooks
    from agentledger.domain.webhook_endpoint import WebhookEndpoint

    outbox = Outbox(store)
    outbox.enqueue([WebhookEndpoint(endpoint, "http://127.0.0.1:9/", start="beginning")])
    pending = outbox.pending(endpoint)
    first = pending[0]["id"]
    now = time.time()
    outbox.mark_failed(Attempt(first, now, now, hooks.HttpOutcome(None, HOSTILE)),
                       hooks.Decision(hooks.Verdict.DEAD, why=f"still failing after 2s: {HOSTILE}"))
    return first, len(pending)


def test_webhooks_page_lists_deliveries_highlights_the_dead_and_filters(cli, store):
    sid = cli.launch("true", options=("--no-lock",))
    wait_for(lambda: cli.json("status", sid)["status"] == "stopped")
    dead, count = dead_delivery(store)
    dead_delivery(store, "other")
    with console() as client:
        page = main(client.get("/webhooks"))
        assert f"{2 * count} deliveries, newest first" in page
        dead_row = row(page, f'data-delivery="{dead}"')
        assert 'class="dead"' in dead_row and "dead" in dead_row.replace('class="dead"', "")
        assert ESCAPED in dead_row and HOSTILE not in page and f'href="/s/{sid}"' in dead_row
        assert "hooks" in dead_row and "session.started" in dead_row
        pending_rows = [r for r in re.findall(r"<tr[^>]*data-delivery[^>]*>.*?</tr>", page, re.S) if "pending" in r]
        assert len(pending_rows) == 2 * count - 2 and not any('class="dead"' in r for r in pending_rows)
        assert "/retry" not in page  # read-only: no action
        only_dead = main(client.get("/webhooks?failed=1"))
        assert only_dead.count("data-delivery=") == 2 and "checked" in only_dead
        one = main(client.get("/webhooks?endpoint=hooks&failed=1"))
        assert one.count("data-delivery=") == 1 and f'data-delivery="{dead}"' in one
        hostile = main(client.get(f"/webhooks?endpoint={HOSTILE}"))
        assert f'value="{ESCAPED}"' in hostile and "No delivery matches" in hostile and HOSTILE not in hostile


def test_a_dead_delivery_is_retried_only_by_a_token_holder_with_the_forms_csrf(cli, store):
    dead = stopped_with_a_dead_delivery(cli, store)
    guard = Guard(token="t", actions=True)
    with console(guard) as client:
        anonymous = main(client.get("/webhooks"))
        assert "/retry" not in anonymous and "This browser holds no token" in anonymous
        refused = client.post(f"/webhooks/{dead}/retry", data={"csrf": guard.csrf()}, follow_redirects=False)
        assert refused.status_code == 403 and "token" in refused.text

        client.cookies.set(COOKIE, "t")
        page = main(client.get("/webhooks"))
        assert "This browser holds no token" not in page
        form = row(page, f'data-delivery="{dead}"')
        assert f'action="/webhooks/{dead}/retry"' in form and f'name="csrf" value="{guard.csrf()}"' in form
        assert page.count("/retry") == 1  # only the dead one has a Retry
        no_csrf = client.post(f"/webhooks/{dead}/retry", data={}, follow_redirects=False)
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text

        retried = client.post(f"/webhooks/{dead}/retry", data={"csrf": guard.csrf()}, follow_redirects=False)
        assert retried.status_code == 303 and retried.headers["location"].startswith("/webhooks?done=")
        after = main(client.get(retried.headers["location"]))
        assert f"delivery {dead} re-queued" in after and 'id="done"' in after
        again = row(after, f'data-delivery="{dead}"')
        assert "pending" in again and 'class="dead"' not in again and "/retry" not in after
    assert store.db.execute("SELECT state FROM webhook_deliveries WHERE id = ?", (dead,)).fetchone()[0] == "pending"


def test_with_actions_off_even_a_token_holder_sees_no_retry(cli, store):
    dead = stopped_with_a_dead_delivery(cli, store)
    guard = Guard(token="t", actions=False)
    with console(guard) as client:
        client.cookies.set(COOKIE, "t")
        page = main(client.get("/webhooks"))
        assert 'class="dead"' in row(page, f'data-delivery="{dead}"') and "/retry" not in page
        refused = client.post(f"/webhooks/{dead}/retry", data={"csrf": guard.csrf()}, follow_redirects=False)
        assert refused.status_code == 403 and "actions are off" in refused.text


# -- the daemon -------------------------------------------------------------------


def test_daemon_page_says_not_running_then_shows_the_running_daemon(cli, store, daemon: Callable[..., int]):
    with console() as client:
        page = main(client.get("/daemon"))
        assert "Not running" in page and "<dd>not running</dd>" in page and "<dt>Mass-stop guard</dt><dd>clear</dd>" in page
        assert "daemon.log" in page

        pid = daemon("--interval", "300ms")
        page = wait_for(lambda: "<dt>Passes</dt>" in (html := main(client.get("/daemon"))) and html, timeout=60)
        assert f'<span id="pid">{pid}</span>' in page and f"running, pid {pid}, up " in page
        for label in ("Store", "Interval", "Metrics", "Last pass", "Watching", "Mass-stop guard", "Log"):
            assert f"<dt>{label}</dt>" in page, label
        assert "<dd>300ms</dd>" in page and "<dt>Metrics</dt><dd>off</dd>" in page

        hosts = wait_for(lambda: f"<td>{pid}</td>" in (html := main(client.get("/hosts"))) and html, timeout=60)
        assert "alive" in row(hosts, 'class="host-alive"')


@pytest.mark.parametrize("path", ["/replay", "/verify", "/hosts", "/webhooks", "/daemon"])
def test_every_audit_page_is_a_page_of_the_console(cli, store, path):
    with console() as client:
        page = client.get(path)
        assert page.status_code == 200 and page.text.startswith("<!DOCTYPE html>")
        assert f'<a href="{path}" aria-current="page">' in page.text and "<h1>" in page.text
        assert '<th scope="col">' in page.text or "<dl" in page.text
        assert 'data-live="0"' in page.text and "Traceback" not in page.text  # drawn once: no live refresh
