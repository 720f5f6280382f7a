"""Wall time of launching a group of 8 sessions, each in its own worktree, against 8 plain ``git worktree add``.

Target (issue 17): ``agentledger launch --agent … (8 sessions)`` with worktrees
at most 1.5x the time of 8 ``git worktree add -b`` commands run one after the
other on the same repository, in the same run.

    scripts/bench_group_launch.py [--runs N] [--files N]

Each run gets a fresh copy of a generated repository (``--files`` files of
2 KB, one commit; made once, copied outside the timed part), so that both
sides check out the same tree into new directories. A and B run in turn and
the median of the pair-by-pair ratios is printed. The agent is a stand-in
that reads its prompt and exits, so the figure is agentledger's own cost:
worktrees, prompt files, supervisors, records. No daemon is started
(``AGENTLEDGER_AUTOSTART_DAEMON=0``): one would start once, not per launch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import AGENTLEDGER, machine, temp_home

SESSIONS = 8
STAND_IN = "#!/bin/sh\ncat > /dev/null\n"
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}


def make_repository(path: Path, files: int) -> None:
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for i in range(files):
        folder = path / f"pkg{i // 100:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"mod{i:05d}.py").write_text(f"# module {i}\n" + "x = 1\n" * 340)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(path), "commit", "-q", "-m", "tree"], check=True)


def stand_in(bin_dir: Path) -> None:
    bin_dir.mkdir()
    for name in ("opencode", "claude", "codex", "pi"):
        script = bin_dir / name
        script.write_text(STAND_IN)
        script.chmod(script.stat().st_mode | stat.S_IXUSR)


def fresh_copy(template: Path, where: Path) -> Path:
    if where.exists():
        shutil.rmtree(where)
    shutil.copytree(template, where, symlinks=True)
    return where


def time_group(repo: Path, run: int) -> float:
    argv = [*AGENTLEDGER, "launch", "--agent", "codex", *[f"--model=m{i}" for i in range(SESSIONS)],
            "--group", f"bench{run}", "-p", "do the task"]
    started = time.monotonic()
    subprocess.run(argv, cwd=repo, check=True, capture_output=True)
    return time.monotonic() - started


def time_git(repo: Path, run: int) -> float:
    started = time.monotonic()
    for i in range(SESSIONS):
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", "-b", f"plain{run}-{i}",
                        str(repo.parent / f"{repo.name}.plain" / f"w{run}-{i}"), "HEAD"], check=True,
                       capture_output=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--files", type=int, default=2000)
    options = parser.parse_args()
    os.environ.update(GIT_ENV)
    work = Path(tempfile.mkdtemp(prefix="agentledger-bench-group-"))
    temp_home("group")
    stand_in(work / "bin")
    os.environ["PATH"] = f"{work / 'bin'}{os.pathsep}{os.environ['PATH']}"
    template = work / "template"
    make_repository(template, options.files)
    print(f"machine: {machine()}; git: {subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.strip()}")
    print(f"repository: {options.files} files of ~2 KB; {SESSIONS} sessions (worktrees) per run, {options.runs} runs")
    ours, theirs, ratios = [], [], []
    for run in range(options.runs):
        a = time_group(fresh_copy(template, work / f"a{run}" / "repo"), run)
        b = time_git(fresh_copy(template, work / f"b{run}" / "repo"), run)
        ours.append(a)
        theirs.append(b)
        ratios.append(a / b)
        print(f"run {run}: group launch {a * 1000:7.1f} ms, 8 x git worktree add {b * 1000:7.1f} ms, ratio {a / b:.2f}",
              flush=True)
    print(f"median: group launch {statistics.median(ours) * 1000:.1f} ms, git worktree add x{SESSIONS} "
          f"{statistics.median(theirs) * 1000:.1f} ms; median ratio {statistics.median(ratios):.2f} (target <= 1.5)")
    subprocess.run([*AGENTLEDGER, "list", "--all"], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
