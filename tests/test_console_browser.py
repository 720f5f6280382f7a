"""The console in a real browser (Debian's Chromium, driven by Playwright), as its users will judge it.

A session launched from the CLI appears on the open sessions page without a
reload, turns stopped (``exited 3``) when it ends; its page draws the
timeline and says why; the time control, dragged to before the stop, shows
it running; a hostile name is shown, never run; an action without the token
is refused. The screenshots in ``docs/console.md`` are taken here
(``AGENTLEDGER_CONSOLE_SHOTS=docs/console`` writes them there).

No browser is downloaded: ``/usr/bin/chromium`` (Debian's package, which
``.ci/run`` installs) or ``AGENTLEDGER_CHROMIUM``. Without it these tests skip
loudly, and fail where CI requires the browser (``AGENTLEDGER_REQUIRE_BROWSER=1``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from console_server import running_console

DEADLINE_MS = 60_000  # what the browser waits for at most: generous, a busy machine is still correct
HOSTILE = "<img src=x onerror=window.__pwned=1><script>window.__pwned=1</script>&amp;\u202e"


def _chromium() -> str:
    path = os.environ.get("AGENTLEDGER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        reason = f"no Chromium at {path} (Debian: apt-get install chromium)"
        if os.environ.get("AGENTLEDGER_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}, and AGENTLEDGER_REQUIRE_BROWSER=1 requires it")
        pytest.skip(f"SKIPPED, NO BROWSER: {reason}")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        if os.environ.get("AGENTLEDGER_REQUIRE_BROWSER") == "1":
            pytest.fail(f"playwright is not installed ({error}), and AGENTLEDGER_REQUIRE_BROWSER=1 requires it")
        pytest.skip(f"SKIPPED, NO BROWSER DRIVER: {error} (pip install -e '.[test]')")
    executable = _chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(DEADLINE_MS)
    tab = context.new_page()
    yield tab
    context.close()


def _shot(page: Any, name: str, tmp_path: Path, *, full_page: bool = False) -> None:
    """A screenshot in the test's directory, and in ``AGENTLEDGER_CONSOLE_SHOTS`` if set (docs/console.md's)."""
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=full_page)
    where = os.environ.get("AGENTLEDGER_CONSOLE_SHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(where) / f"{name}.png"), full_page=full_page)


def _row(page: Any, session_id: str, status: str) -> Any:
    return page.locator(f'tr[data-session="{session_id}"][data-status="{status}"]')


def test_a_session_lives_and_ends_on_the_open_pages_and_the_time_control_goes_back(cli, page, tmp_path: Path) -> None:
    go = tmp_path / "go"
    cli("launch", "--name", "first", "--", "true")  # something to see before ours
    with running_console("--actions") as console:
        page.goto(console.url)
        page.locator("#sessions").wait_for()
        wait_for(lambda: page.evaluate("document.body.dataset.stream") == "open")
        page.evaluate("window.__sameDocument = true")

        session_id = cli.launch("sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done; exit 3",
                                options=("--name", "race-demo", "--fuse-ttl", "30s"))
        launched = time.monotonic()
        _row(page, session_id, "running").wait_for()
        appeared = time.monotonic() - launched
        assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
        print(f"launch -> running on the open page: {appeared * 1000:.0f} ms")
        for _ in range(3):  # heartbeats: evidence of life for the timeline, positions for the time control
            cli("heartbeat", session_id)
        _shot(page, "sessions", tmp_path)

        page.locator(f'tr[data-session="{session_id}"] a').first.click()
        page.locator("#timeline svg").wait_for()
        assert "running" in page.locator("#session-title").inner_text()
        assert "live fuse" in page.locator("#why").inner_text().lower()
        wait_for(lambda: page.evaluate("document.body.dataset.stream") == "open")
        page.evaluate("window.__sameDocument = true")

        go.touch()
        page.locator("#outcome", has_text="exited 3").wait_for()
        assert "stopped" in page.locator("#session-title").inner_text()
        assert page.evaluate("window.__sameDocument") is True, "the session page was reloaded"
        assert "exited by itself with exit code 3" in page.locator("#why").inner_text()
        assert page.locator("#timeline svg").count() == 1
        assert page.locator("#actions").is_hidden()  # nothing left to stop
        _shot(page, "session", tmp_path, full_page=True)

        history = cli.json_lines("history", session_id)
        stopped_at = next(r["position"] for r in history if r["type"] == "Stopped")
        beats = [r["position"] for r in history if r["type"] == "Heartbeat"]
        target = beats[len(beats) // 2]  # a moment while it ran, before the stop
        _drag_time_control(page, target)
        page.locator(".past-label").wait_for()
        shown_at = int(page.url.rsplit("%40", 1)[-1].split("&")[0]) if "%40" in page.url else -1
        assert beats[0] <= shown_at < stopped_at, (shown_at, beats, stopped_at)
        assert "running" in page.locator("#session-title").inner_text()
        assert page.locator("#outcome").count() == 0
        _shot(page, "time-travel", tmp_path, full_page=True)
        assert page.evaluate("document.activeElement.id") == "as-of-slider"  # the keys step on from here
        with page.expect_navigation():
            page.keyboard.press("ArrowRight")
        page.locator(".past-label").wait_for()
        assert f"@{shown_at + 1}" in page.locator("#as-of").input_value()

        page.goto(console.url)
        row = _row(page, session_id, "stopped")
        row.wait_for()
        assert "exited 3" in row.inner_text()


def _drag_time_control(page: Any, value: int) -> None:
    """Drag the slider's thumb with the mouse to ``value`` (as a person would), and let go."""
    slider = page.locator("#as-of-slider")
    low, high = int(slider.get_attribute("min")), int(slider.get_attribute("max"))
    box = slider.bounding_box()
    thumb = 16  # Chromium's range thumb is 16 px wide: its centre travels the track less one thumb
    def x_of(v: float) -> float:
        return box["x"] + thumb / 2 + (v - low) / (high - low) * (box["width"] - thumb)

    y = box["y"] + box["height"] / 2
    current = int(slider.input_value())
    with page.expect_navigation():
        page.mouse.move(x_of(current), y)
        page.mouse.down()
        page.mouse.move(x_of(value), y, steps=8)
        page.mouse.up()


def test_a_hostile_name_is_shown_never_run(cli, page, tmp_path: Path) -> None:
    session_id = cli.launch("sleep", "30", options=("--name", HOSTILE))
    with running_console() as console:
        page.goto(console.url)
        row = _row(page, session_id, "running")
        row.wait_for()
        assert "<script>window.__pwned=1</script>" in row.inner_text()
        page.goto(f"{console.url}s/{session_id}")
        page.locator("#timeline svg").wait_for()
        assert HOSTILE.replace("\u202e", "") in page.locator("#session-title").inner_text().replace("\u202e", "")
        assert page.evaluate("window.__pwned") is None
        assert page.locator("img[src=x]").count() == 0
    cli("stop", session_id)


def test_an_action_without_the_token_is_refused_and_with_it_stops(cli, page) -> None:
    session_id = cli.launch("sleep", "60", options=("--name", "to-stop"))
    with running_console("--actions") as console:
        page.goto(f"{console.url}s/{session_id}")
        assert "holds no token" in page.locator(".actions").inner_text()
        page.fill("#stop-form input[name=reason]", "no token")
        page.click("#stop-form button[type=submit]")
        assert "needs the console's token" in page.locator("#error").inner_text()
        assert cli.json("status", session_id)["status"] == "running"

        page.goto(console.login)  # as the command printed it: the token goes into a cookie
        page.goto(f"{console.url}s/{session_id}")
        page.fill("#stop-form input[name=reason]", "done with it")
        page.click("#stop-form button[type=submit]")
        page.locator("#done").wait_for()
        assert "stopped" in page.locator("#session-title").inner_text()
    assert cli.json("status", session_id)["stop_note"] == "done with it"


def test_a_read_only_console_offers_no_actions(cli, page) -> None:
    session_id = cli.launch("sleep", "30")
    with running_console() as console:
        page.goto(f"{console.url}s/{session_id}")
        page.locator("#timeline svg").wait_for()
        assert page.locator("#stop-form").count() == 0
        status = page.evaluate("""async (url) => (await fetch(url, {method: 'POST', body: 'reason=x',
            headers: {'Content-Type': 'application/x-www-form-urlencoded'}})).status""", f"{console.url}s/{session_id}/stop")
        assert status == 403
    assert cli.json("status", session_id)["status"] == "running"
    cli("stop", session_id)


@pytest.mark.sqlite_only
def test_keyboard_and_a_narrow_window(cli, page, tmp_path: Path) -> None:
    session_id = cli.launch("sleep", "30", options=("--name", "narrow"))
    with running_console() as console:
        page.set_viewport_size({"width": 420, "height": 800})
        page.goto(console.url)
        _row(page, session_id, "running").wait_for()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 440, f"the page is {width}px wide in a 420px window"
        page.keyboard.press("Tab")  # the skip link first
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        link = page.locator(f'tr[data-session="{session_id}"] a')
        link.focus()
        page.keyboard.press("Enter")
        page.locator("#timeline svg").wait_for()
        assert page.url.endswith(f"/s/{session_id}")
        _shot(page, "narrow", tmp_path)
    cli("stop", session_id)
