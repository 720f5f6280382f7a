"""Shared helpers for the benchmark scripts: a throw-away ledger home, the CLI, stats."""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

AGENTLEDGER = [sys.executable, "-m", "agentledger"]


def temp_home(prefix: str) -> Path:
    """A private AGENTLEDGER_HOME for this run, exported for child processes too."""
    home = Path(tempfile.mkdtemp(prefix=f"agentledger-{prefix}-")) / "home"
    os.environ["AGENTLEDGER_HOME"] = str(home)
    os.environ.pop("AGENTLEDGER_DB", None)
    return home


def open_temp_store(prefix: str):
    from agentledger.infrastructure.config import store_location
    from agentledger.infrastructure.store import open_store

    temp_home(prefix)
    return open_store(store_location())


def cli(*args: str) -> str:
    return subprocess.run([*AGENTLEDGER, *args], check=True, capture_output=True, text=True).stdout


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float], unit: str = "ms", scale: float = 1000.0) -> str:
    return (f"median {statistics.median(values) * scale:.1f} {unit}, p99 {percentile(values, 99) * scale:.1f} {unit}, "
            f"max {max(values) * scale:.1f} {unit} (n={len(values)})")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}")


LAUNCHED = dict(argv=["sleep", "1"], cwd="/", adapter="command", name=None, model=None, prompt=None, group=None,
                labels={}, host="bench", boot_id="bench", pid=1, pid_start_time=1.0, boot_time=0.0,
                supervisor_pid=None, log_path=None, launched_by="bench")
