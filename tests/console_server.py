"""The console as a user runs it, for the console's tests: ``agentledger console`` in a process of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass
class RunningConsole:
    url: str  # http://127.0.0.1:PORT/
    token: str | None  # this run's token, if it printed one
    process: subprocess.Popen[str]

    @property
    def login(self) -> str:
        return f"{self.url}login?token={self.token}"


@contextmanager
def running_console(*options: str, timeout: float = 60) -> Iterator[RunningConsole]:
    """``agentledger console --addr 127.0.0.1:0 OPTIONS`` until the block ends (then Ctrl-C, as a user would)."""
    process = subprocess.Popen([sys.executable, "-m", "agentledger", "console", "--addr", "127.0.0.1:0", *options],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + timeout
        first = process.stdout.readline()
        if not first.startswith("agentledger console: http://"):
            process.kill()
            raise AssertionError(f"the console did not start: {first!r} {process.communicate()[1]!r}")
        url = first.split(": ", 1)[1].strip()
        second = process.stdout.readline()
        token = second.rsplit("login?token=", 1)[1].strip() if "login?token=" in second else None
        _wait_until_serving(url, deadline)
        yield RunningConsole(url, token, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_serving(url: str, deadline: float) -> None:
    import httpx

    while True:
        try:
            if httpx.get(url + "healthz", timeout=5).status_code in (200, 503):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the console at {url} never answered")
        time.sleep(0.05)


@contextmanager
def console_client(guard: Any = None) -> Iterator[Any]:
    """The console in this process over the test's store, through Starlette's ``TestClient`` (its log watch runs)."""
    from starlette.testclient import TestClient

    from agentledger.bootstrap import configured_location, store_opener
    from agentledger.entrypoints.console.app import create_app
    from agentledger.entrypoints.console.guard import Guard
    from agentledger.entrypoints.console.state import Console

    app = create_app(Console(store_opener(configured_location()), guard or Guard(token=None, actions=False)))
    with TestClient(app, base_url="http://127.0.0.1:8201") as client:
        yield client
