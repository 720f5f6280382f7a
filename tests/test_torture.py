"""scripts/torture, short: real sessions, real chaos (kills, daemon restarts, lock holds, PID reuse, a full disk,
a read-only store, SIGSTOPped supervisors, a skewed clock where root and faketime allow), zero violations.

The chaos is the long runs' (docs/RELIABILITY.md): write-lock holds of 1-3 s, longer than the fuse, and
PID-reuse impostors that lead process groups. Only the timing margins are wider, for a loaded CI machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "torture"


@pytest.mark.sqlite_only
def test_a_short_torture_run_finds_no_violation(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_DB"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--sessions", "12", "--duration", "20", "--ttl", "1.5s",
         "--interval", "0.3s", "--seed", "147", "--slack", "3", "--clock-tolerance", "0.5"],
        check=False, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path,
    )
    out = result.stdout
    assert result.returncode == 0, f"exit {result.returncode}\n{out}\n{result.stderr}"
    assert "agentledger torture" in out and "VIOLATIONS" in out
    table = dict(
        re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in out.splitlines()
        if re.search(r"\S\s{2,}\S", line) and not line.startswith(" ")
    )
    assert table["sessions launched"].strip() == "12"
    assert table["VIOLATIONS"].strip() == "0"
    assert table["verify"].strip() == "clean"
    assert int(table["daemon starts"]) >= 2  # it was SIGKILLed and restarted at least once
    assert int(table["sqlite write-lock holds"]) >= 1
    # each fault class was made (the harness itself fails a run in which one was not: --min-faults 1)
    for fault in ("daemon stops and starts", "supervisor SIGSTOPs (past their TTL)"):
        assert int(table[fault]) >= 1, fault
    assert "VIOLATION " not in out


@pytest.mark.sqlite_only
def test_the_judge_fails_a_run_with_a_false_stop(tmp_path: Path) -> None:
    """The harness's self-test: one stop recorded behind agentledger's back for a running agent (--sabotage)
    must fail the run, as that false stop and nothing else."""
    env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_DB"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--sessions", "12", "--duration", "20", "--ttl", "1.5s",
         "--interval", "0.3s", "--seed", "147", "--slack", "3", "--clock-tolerance", "0.5", "--sabotage",
         "--min-faults", "0"],  # the judge is under test here, not the chaos's quota
        check=False, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path,
    )
    out = result.stdout
    assert result.returncode == 1, f"exit {result.returncode}\n{out}\n{result.stderr}"
    found = re.findall(r"^VIOLATION (.+?): session (\w+)", out, re.M)
    sabotaged = re.search(r"sabotage: recorded a stop for (\w+)", out)
    assert sabotaged and found == [("false stop", sabotaged.group(1))], out
