"""The console over HTTP: its pages, live stream, time control, guard and command, without a browser.

In-process through Starlette's ``TestClient`` where a page or a rule is tried;
as a real ``agentledger console`` process where the command itself is
(its address, its token, its errors). ``test_console_browser.py`` tries the
same in Chromium.
"""

from __future__ import annotations

import html
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import wait_for
from console_server import console_client, running_console

from agentledger.entrypoints.console.guard import COOKIE, Guard


@pytest.fixture
def console(cli) -> Iterator[Any]:
    """``console(guard)``: a TestClient over the test's store, its log watch running."""
    with ExitStack() as stack:
        yield lambda guard=None: stack.enter_context(console_client(guard))


def _rows(html: str) -> list[str]:
    return [part.split('"', 1)[0] for part in html.split('<tr data-session="')[1:]]


# -- the sessions page ------------------------------------------------------------------


def test_the_sessions_page_lists_every_session_newest_first_with_list_words(cli, console) -> None:
    done = cli.launch("sh", "-c", "exit 3", options=("--name", "ends"))
    wait_for(lambda: cli.json("status", done)["status"] == "stopped")
    running = cli.launch("sleep", "30", options=("--name", "runs"))
    page = console().get("/")
    assert page.status_code == 200
    assert _rows(page.text) == [running, done]
    assert "exited 3" in page.text and 'data-status="running"' in page.text
    active = console().get("/", params={"status": "active"}).text
    assert _rows(active) == [running]
    assert _rows(console().get("/", params={"q": "sleep"}).text) == [running]
    assert _rows(console().get("/", params={"sort": "name", "dir": "asc"}).text) == [done, running]
    cli("stop", running)


def test_the_host_filter_counts_and_pages_in_the_read_models(cli, console) -> None:
    from agentledger.infrastructure.host import host_name

    ids = [cli.launch("true") for _ in range(2)]
    client = console()
    here = client.get("/", params={"host": host_name()}).text
    assert _rows(here) == ids[::-1] and "2 sessions" in here
    elsewhere = client.get("/", params={"host": "no-such-host"}).text
    assert _rows(elsewhere) == [] and "0 sessions" in elsewhere and "No session matches" in elsewhere


def test_a_long_list_is_paged(cli, console, monkeypatch) -> None:
    from agentledger.entrypoints.console import pages

    ids = [cli.launch("true") for _ in range(3)]
    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    client = console()
    first, second = client.get("/").text, client.get("/", params={"page": 2}).text
    assert _rows(first) == ids[::-1][:2] and _rows(second) == ids[::-1][2:]
    assert "page 1 of 2" in first and 'rel="next"' in first and 'rel="prev"' in second


def test_as_of_shows_the_list_as_it_stood_and_refuses_what_the_log_cannot_say(cli, console) -> None:
    session_id = cli.launch("sleep", "30")
    launched = cli.json_lines("history", session_id)[-1]["position"]
    cli("stop", session_id)
    client = console()
    past = client.get("/", params={"as_of": f"@{launched}"})
    assert past.status_code == 200
    assert f'data-session="{session_id}" data-status="running"' in past.text
    assert "history, not the present" in past.text
    now = client.get("/")
    assert f'data-session="{session_id}" data-status="stopped"' in now.text
    future = client.get("/", params={"as_of": "@999999"})
    assert future.status_code == 400 and "past the end of the log" in future.text
    garbled = client.get("/", params={"as_of": "yesterday-ish"})
    assert garbled.status_code == 400 and "invalid --as-of" in garbled.text


# -- a session's page ---------------------------------------------------------------------


def test_a_session_page_has_status_why_timeline_history_and_output(cli, console) -> None:
    session_id = cli.launch("sh", "-c", "echo hello from the agent; exit 3", options=("--name", "talks"))
    wait_for(lambda: cli.json("status", session_id)["status"] == "stopped")
    page = console().get(f"/s/{session_id[:8]}")
    assert page.status_code == 200
    text = page.text
    assert "exited by itself with exit code 3" in text  # why
    assert "<svg" in text and "timeline of session" in text
    assert "Launched" in text and "Stopped" in text  # history
    assert "hello from the agent" in text  # the output's tail
    assert "(exited 3)" in text


def test_an_unknown_session_is_a_404_with_one_line(cli, console) -> None:
    page = console().get("/s/ffffffffffff")
    assert page.status_code == 404
    assert "no session matches 'ffffffffffff'" in html.unescape(page.text)
    assert "Traceback" not in page.text


def test_output_with_control_characters_is_shown_escaped(cli, console) -> None:
    session_id = cli.launch("printf", "\\033[31mred\\033[0m <b>bold</b>\\n")
    wait_for(lambda: cli.json("status", session_id)["status"] == "stopped")
    text = console().get(f"/s/{session_id}").text
    assert "\\x1b[31mred" in text and "&lt;b&gt;bold&lt;/b&gt;" in text
    assert "\x1b" not in text


#: What a terminal would obey (test_hostile_input.py's EVIL, less the NUL no argv can hold), and markup.
EVIL = "evil\x1b[31m\x1b[2J\x1b]0;pwned\x07\x1b[1A\rover\u202eright\x9b<script>alert(1)</script>"


def test_hostile_names_and_commands_are_written_out_and_escaped_never_obeyed(cli, console) -> None:
    session_id = cli.launch("sh", "-c", f"echo '{EVIL}'", options=("--name", EVIL))
    wait_for(lambda: cli.json("status", session_id)["status"] == "stopped")
    client = console()
    last = cli.json_lines("history", session_id)[-1]["position"]
    for url in ("/", f"/s/{session_id}", f"/s/{session_id}?as_of=@{last}"):
        page = client.get(url).text
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert not any(c in page for c in "\x1b\x07\r\u202e\x9b"), "a control character reached the page"
        assert "evil\\x1b[31m" in page and "\\u202eright" in page  # written out, as the CLI shows them


# -- live -------------------------------------------------------------------------------------


def test_the_event_stream_says_each_time_the_log_moves(cli) -> None:
    with running_console() as console, httpx.stream("GET", console.url + "events", timeout=60) as stream:
        lines = stream.iter_lines()
        first = _next_position(lines)
        cli.launch("true")
        assert _next_position(lines) > first


def _next_position(lines: Iterator[str]) -> int:
    for line in lines:
        if line.startswith("data: "):
            return int(line.removeprefix("data: "))
    raise AssertionError("the stream ended")


# -- the guard ----------------------------------------------------------------------------------


def _stop_form(client: Any, session_id: str, **fields: str) -> Any:
    return client.post(f"/s/{session_id}/stop", data={"reason": "from a test", **fields}, follow_redirects=False)


def test_actions_are_off_unless_asked_for(cli, console) -> None:
    session_id = cli.launch("sleep", "30")
    response = _stop_form(console(), session_id)
    assert response.status_code == 403 and "actions are off" in html.unescape(response.text)
    assert cli.json("status", session_id)["status"] == "running"
    cli("stop", session_id)


def test_an_action_needs_the_token_and_the_csrf_field(cli, console) -> None:
    session_id = cli.launch("sleep", "30")
    guard = Guard(token="secret-token", actions=True)
    client = console(guard)
    assert _stop_form(client, session_id).status_code == 403  # no token
    client.cookies.set(COOKIE, "wrong")
    assert _stop_form(client, session_id, csrf=guard.csrf()).status_code == 403  # a wrong token
    client.cookies.set(COOKIE, "secret-token")
    refused = _stop_form(client, session_id, csrf="forged")
    assert refused.status_code == 403 and "CSRF" in refused.text
    foreign = client.post(f"/s/{session_id}/stop", data={"csrf": guard.csrf()}, headers={"Origin": "http://evil.test"},
                          follow_redirects=False)
    assert foreign.status_code == 403 and "evil.test" in foreign.text
    assert cli.json("status", session_id)["status"] == "running"
    done = _stop_form(client, session_id, csrf=guard.csrf())
    assert done.status_code == 303 and done.headers["location"].startswith(f"/s/{session_id}?done=")
    stopped = cli.json("status", session_id)
    assert stopped["status"] == "stopped" and stopped["stop_note"] == "from a test"


def test_fuse_set_and_cancel_from_the_console_with_a_bearer_token(cli, console) -> None:
    session_id = cli.launch("sleep", "30")
    client = console(Guard(token="t0ken", actions=True))
    bearer = {"Authorization": "Bearer t0ken"}
    cancelled = client.post(f"/s/{session_id}/fuse", data={"do": "cancel"}, headers=bearer, follow_redirects=False)
    assert cancelled.status_code == 303
    assert cli.json("status", session_id)["fuse"]["state"] == "cancelled"
    too_short = client.post(f"/s/{session_id}/fuse", data={"do": "set", "ttl": "10ms"}, headers=bearer)
    assert too_short.status_code == 400 and "floor" in too_short.text
    armed = client.post(f"/s/{session_id}/fuse", data={"do": "set", "ttl": "2m"}, headers=bearer, follow_redirects=False)
    assert armed.status_code == 303
    fuse = cli.json("status", session_id)["fuse"]
    assert fuse["state"] == "set" and fuse["ttl_seconds"] == 120
    assert "(console)" in cli("history", session_id).stdout
    cli("stop", session_id)


def test_login_keeps_the_token_in_a_strict_cookie(cli, console) -> None:
    client = console(Guard(token="abc", actions=True))
    assert client.get("/login", params={"token": "nope"}, follow_redirects=False).status_code == 403
    response = client.get("/login", params={"token": "abc"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


# -- the command --------------------------------------------------------------------------------


def _console_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentledger", "console", *args], capture_output=True, text=True,
                          timeout=60)


def test_a_bad_address_is_a_usage_error(cli) -> None:
    result = _console_command("--addr", "nowhere")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "agentledger: --addr 'nowhere': expected HOST:PORT, e.g. 127.0.0.1:8201 (port 0: any free port)"]


def test_a_port_in_use_is_one_line(cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = _console_command("--addr", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.strip() == f"agentledger: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_actions_print_a_token_kept_in_a_private_file(cli, home: Path) -> None:
    with running_console("--actions") as console:
        assert console.token
        token_file = home / "console.token"
        assert token_file.read_text().strip() == console.token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert httpx.get(console.login, follow_redirects=False).status_code == 303


def test_an_address_beyond_loopback_needs_the_token_for_every_page(cli) -> None:
    process = subprocess.Popen([sys.executable, "-m", "agentledger", "console", "--addr", "0.0.0.0:0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split(": ", 1)[1].strip().replace("0.0.0.0", "127.0.0.1")
        token = process.stdout.readline().rsplit("login?token=", 1)[1].strip()
        wait_for(lambda: _answers(url + "healthz"))
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "reachable from other machines" in stderr


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


# -- served by the daemon -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_daemon_serves_the_console_where_console_addr_says(cli, daemon, monkeypatch) -> None:
    port = _free_port()
    monkeypatch.setenv("AGENTLEDGER_CONSOLE_ADDR", f"127.0.0.1:{port}")
    session_id = cli.launch("sleep", "30", options=("--name", "seen-by-the-daemon"))
    daemon()
    url = f"http://127.0.0.1:{port}/"
    page = wait_for(lambda: _answers(url) and httpx.get(url, timeout=10))
    assert f'data-session="{session_id}"' in page.text
    assert httpx.post(f"{url}s/{session_id}/stop", data={"reason": "x"}).status_code == 403  # read-only
    assert f"Console          http://127.0.0.1:{port}/ (read-only)" in cli("daemon", "status").stdout
    cli("stop", session_id)


def test_a_daemon_whose_console_port_is_taken_reconciles_and_says_so(cli, daemon, monkeypatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        monkeypatch.setenv("AGENTLEDGER_CONSOLE_ADDR", f"127.0.0.1:{taken.getsockname()[1]}")
        daemon()
        status = wait_for(lambda: "Console" in (out := cli("daemon", "status").stdout) and out)
    assert "Console          NOT SERVED: cannot listen on 127.0.0.1:" in status
    assert "Address already in use" in status


def test_a_long_history_shows_its_last_records_and_says_so(cli, console, monkeypatch) -> None:
    from agentledger.entrypoints.console import pages

    session_id = cli.launch("sleep", "30")
    for _ in range(3):
        cli("heartbeat", session_id)
    monkeypatch.setattr(pages, "HISTORY_SHOWN", 2)
    text = console().get(f"/s/{session_id}").text
    table = text.split('id="history"', 1)[1]
    assert table.count("<tr data-position") == 2 and "Heartbeat" in table and "Launched" not in table
    assert "The last 2 of 5 records" in text
    cli("stop", session_id)


@pytest.mark.sqlite_only
def test_a_store_that_cannot_be_opened_is_one_line_on_every_page(cli, monkeypatch) -> None:
    monkeypatch.setenv("AGENTLEDGER_DB", "sqlite:////proc/nowhere/ledger.db")
    with console_client() as client:
        for url in ("/", "/s/abc", "/verify", "/daemon"):
            page = client.get(url)
            assert page.status_code == 500 and "Traceback" not in page.text
            assert "is in a directory that does not exist (/proc/nowhere)" in page.text
        health = wait_for(lambda: (h := client.get("/healthz")).status_code == 503 and h.json())
        assert "does not exist" in health["error"]
