"""Shared fixtures: a private AGENTLEDGER_HOME per test, the real CLI, condition waits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ledger home for every test (never the user's), also used by CLI subprocesses."""
    path = tmp_path / "home"
    monkeypatch.setenv("AGENTLEDGER_HOME", str(path))
    monkeypatch.delenv("AGENTLEDGER_DB", raising=False)
    return path


class CLI:
    """Runs ``agentledger`` as a user would: a separate process with the test's environment."""

    def __call__(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "agentledger", *args],
            capture_output=True, text=True, timeout=timeout, env=dict(os.environ),
        )
        if check and result.returncode != 0:
            raise AssertionError(f"agentledger {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def json_lines(self, *args: str) -> list[Any]:
        return [json.loads(line) for line in self(*args, "--json").stdout.splitlines()]

    def launch(self, *argv: str, options: tuple[str, ...] = ()) -> str:
        return self("launch", *options, "--", *argv).stdout.strip()


@pytest.fixture
def cli(home: Path) -> CLI:
    return CLI()


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


@pytest.fixture
def store(home: Path):
    from agentledger.infrastructure.config import store_location
    from agentledger.infrastructure.store import open_store

    opened = open_store(store_location())
    yield opened
    opened.close()
