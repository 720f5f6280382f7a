"""Groups of agents on one repository, end to end: ``launch --agent … / --matrix``, ``compare``, ``stop --group``,
``list --adapter``, ``--spec``, ``--on-create`` and ``--check``.

The agents are stand-ins first on PATH (``opencode``, ``claude``, ``codex``):
each records its argv, directory and prompt (read on stdin, as the real ones
do) and writes a file named after itself in its directory, so that each
worktree ends up with a change of its own. The repository is a real git
repository in the test's directory, and every session a real supervised
process.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import stand_in_agents, wait_for

STAND_IN = r'''#!{python}
import json, os, sys, time
prompt = sys.stdin.read()
name = os.path.basename(sys.argv[0])
with open(os.path.join(os.environ["FAKE_RECORD_DIR"], f"{{name}}-{{os.getpid()}}.json"), "w") as handle:
    json.dump({{"argv": sys.argv, "cwd": os.getcwd(), "prompt": prompt}}, handle)
with open(f"RESULT-{{name}}.txt", "w") as handle:
    handle.write(prompt.splitlines()[-1] + "\n")
time.sleep(float(os.environ.get("FAKE_SLEEP", "0.2")))
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
'''


@pytest.fixture
def records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-ins, and the test's own directory as the current one (they write where they run)."""
    monkeypatch.chdir(tmp_path)
    return stand_in_agents(tmp_path, monkeypatch, STAND_IN)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository with one commit, the current directory."""
    path = tmp_path / "project"
    path.mkdir()
    for key, value in (("GIT_AUTHOR_NAME", "t"), ("GIT_AUTHOR_EMAIL", "t@example.com"),
                       ("GIT_COMMITTER_NAME", "t"), ("GIT_COMMITTER_EMAIL", "t@example.com")):
        monkeypatch.setenv(key, value)
    git = ["git", "-C", str(path)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    (path / "README").write_text("hello\n")
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    monkeypatch.chdir(path)
    return path


def recorded(records: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(records.glob("*.json"))]


def stopped(cli, ids: list[str]) -> bool:
    return all(cli.json("status", sid)["status"] == "stopped" for sid in ids)


def test_a_spec_file_comes_before_the_prompt(cli, records: Path, tmp_path: Path) -> None:
    spec = tmp_path / "SPEC.md"
    spec.write_text("The function must be pure.\n")
    sid = cli("launch", "codex", "--spec", str(spec), "-p", "write f").stdout.strip()
    wait_for(lambda: stopped(cli, [sid]))
    [record] = recorded(records)
    assert record["prompt"].index("The function must be pure.") < record["prompt"].index("write f")
    assert f"--- spec: {spec} ---" in record["prompt"]


def test_a_spec_file_past_its_cap_or_missing_is_one_line(cli, records: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.md"
    big.write_bytes(b"x" * (128 * 1024 + 1))
    for path, words in ((big, "more than the 131072-byte limit"), (tmp_path / "none.md", "No such file")):
        result = cli("launch", "codex", "--spec", str(path), "-p", "go", check=False)
        assert result.returncode == 2 and words in result.stderr and len(result.stderr.splitlines()) == 1
    assert recorded(records) == []


def test_a_failing_on_create_is_recorded_and_the_agent_never_starts(cli, records: Path, tmp_path: Path) -> None:
    result = cli("launch", "--on-create", "echo preparing; exit 3", "codex", "-p", "go", check=False)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "--on-create 'echo preparing; exit 3' failed (exit 3" in line and "setup-failed" in line
    [session] = cli.json_lines("list", "--all")
    assert (session["status"], session["stop_reason"]) == ("stopped", "setup-failed")
    assert recorded(records) == []
    assert "preparing" in Path(session["log_path"]).read_text()
    assert "--on-create command failed" in cli("why", session["id"]).stdout


def test_on_create_runs_in_the_sessions_directory_before_the_agent(cli, records: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    sid = cli("launch", "--cwd", str(work), "--on-create", "echo ready > PREPARED", "codex", "-p", "go").stdout.strip()
    wait_for(lambda: stopped(cli, [sid]))
    [record] = recorded(records)
    assert record["cwd"] == str(work) and (work / "PREPARED").read_text() == "ready\n"
    assert cli.json("status", sid)["exit_code"] == 0


def test_list_by_adapter_and_stop_a_whole_group(cli, records: Path, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setenv("FAKE_SLEEP", "300")
    ids = [cli("launch", "--cwd", str(tmp_path), "--no-lock", "--group", "g1", agent, "-p", "go").stdout.strip()
           for agent in ("codex", "opencode")]
    other = cli.launch("sleep", "300", options=("--cwd", str(tmp_path), "--no-lock"))
    assert [s["id"] for s in cli.json_lines("list", "--adapter", "codex")] == [ids[0]]
    assert {s["id"] for s in cli.json_lines("list", "--group", "g1")} == set(ids)
    result = cli("stop", "--group", "g1")
    assert len(result.stdout.splitlines()) == 2 and all(line.startswith("stopped ") for line in result.stdout.splitlines())
    assert stopped(cli, ids) and cli.json("status", other)["status"] == "running"
    assert "nothing to do" in cli("stop", "--group", "g1").stderr
    typo = cli("stop", "--group", "g2", check=False)  # a group no session ever had: a typo, not "nothing to do"
    assert typo.returncode == 2 and "no session was ever launched with --group 'g2'" in typo.stderr
    both = cli("stop", other, "--group", "g1", check=False)
    assert both.returncode == 2 and "a session ID or --group G (not both)" in both.stderr
    cli("stop", other)


def test_a_group_is_signalled_together_not_one_grace_period_after_another(cli, tmp_path: Path) -> None:
    """Every session gets SIGTERM before any gets SIGKILL: N sessions that ignore SIGTERM take one grace period."""
    stubborn = "trap '' TERM; echo ready; while :; do sleep 0.1; done"
    ids = [cli.launch("sh", "-c", stubborn, options=("--cwd", str(tmp_path), "--no-lock", "--group", "slow"))
           for _ in range(3)]
    wait_for(lambda: all("ready" in cli("logs", sid, "--output").stdout for sid in ids))
    result = cli("stop", "--group", "slow", "--grace", "500ms", "--reason", "done")
    assert len(result.stdout.splitlines()) == 3 and "sent SIGTERM, then SIGKILL" in result.stdout
    requests = [(e["position"], e["fields"]["signal"]) for e in cli.json_lines("events")
                if e["type"] == "StopRequested" and e["session_id"] in ids]
    assert sorted(signal for _, signal in requests) == ["SIGKILL"] * 3 + ["SIGTERM"] * 3
    assert max(p for p, signal in requests if signal == "SIGTERM") < min(p for p, signal in requests if signal == "SIGKILL")
    assert {cli.json("status", sid)["stop_note"] for sid in ids} == {"done (grace period ended)"}


def test_three_agents_in_one_group_get_three_worktrees_and_compare_shows_their_changes(
        cli, records: Path, repo: Path, home: Path) -> None:
    (repo / ".gitignore").write_text(".env\n")  # the usual case: a copied file git ignores (not in the diff)
    subprocess.run(["git", "-C", str(repo), "add", ".gitignore"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "ignore .env"], check=True)
    (repo / ".env").write_text("TOKEN=1\n")
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    (home / "config.toml").write_text('worktree_copy = [".env"]\n')
    result = cli("launch", "--agent", "claude-code", "--agent", "codex", "--agent", "opencode", "--group", "trio",
                 "--check", "test -f RESULT-*.txt", "-p", "make a change")
    ids = result.stdout.split()
    assert len(ids) == 3 and "group trio: started 3 of 3 sessions" in result.stderr
    wait_for(lambda: stopped(cli, ids), timeout=60)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    sessions = {s["id"]: s for s in cli.json_lines("list", "--all", "--group", "trio")}
    worktrees = {s["id"]: cli.json("status", s["id"]) for s in sessions.values()}
    assert set(sessions) == set(ids)
    cwds = {record["cwd"] for record in recorded(records)}
    assert len(cwds) == 3 and str(repo) not in cwds  # each agent ran in a worktree of its own
    assert all((Path(cwd) / ".env").read_text() == "TOKEN=1\n" for cwd in cwds)
    branches = subprocess.run(["git", "-C", str(repo), "branch", "--format=%(refname:short)"], capture_output=True,
                              text=True).stdout.split()
    assert sorted(b for b in branches if b != "main") == sorted(f"agentledger/trio-{a}"
                                                                for a in ("claude-code", "codex", "opencode"))
    for sid in ids:
        launched = next(r for r in cli.json_lines("history", sid) if r["type"] == "Launched")
        assert launched["fields"]["workspace"]["base_commit"] == head
    # the check runs once the session has stopped: wait for its record, then compare
    wait_for(lambda: all(r["check_passed"] is not None for r in cli.json_lines("compare", "trio")), timeout=60)
    rows = cli.json_lines("compare", "trio")
    assert [r["agent"] for r in rows] == ["claude-code", "codex", "opencode"]
    for row in rows:
        assert (row["status"], row["outcome"], row["check_passed"]) == ("stopped", "exit 0", True)
        assert row["changes"] == {"files": 1, "insertions": 1, "deletions": 0}, row
    table = cli("compare", "trio").stdout
    assert table.count("passed") == 3 and "claude-code" in table
    assert worktrees  # status of each answered


def test_a_matrix_of_two_agents_two_models_two_prompts_starts_eight_and_dry_run_none(
        cli, records: Path, repo: Path, tmp_path: Path) -> None:
    matrix = tmp_path / "sweep.toml"
    matrix.write_text('agents = ["codex", "opencode"]\nmodels = ["m1", "m2"]\ngroup = "sweep"\n'
                      '[prompts]\nshort = "be brief"\nlong = "be thorough"\n')
    plan = cli("launch", "--matrix", str(matrix), "--dry-run")
    assert "group sweep: 8 sessions" in plan.stdout and len(plan.stdout.splitlines()) == 10
    assert cli.json_lines("list", "--all") == [] and recorded(records) == []
    ids = cli("launch", "--matrix", str(matrix)).stdout.split()
    assert len(ids) == 8
    wait_for(lambda: stopped(cli, ids), timeout=90)
    got = sorted((r["argv"][0].rsplit("/", 1)[-1], r["prompt"].splitlines()[-1]) for r in recorded(records))
    assert got == sorted((agent, prompt) for agent in ("codex", "opencode") for _ in ("m1", "m2")
                         for prompt in ("be brief", "be thorough"))
    assert len({r["cwd"] for r in recorded(records)}) == 8


def test_a_group_outside_a_repository_is_refused_before_anything_starts(cli, records: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.chdir(plain)
    result = cli("launch", "--agent", "codex", "--agent", "opencode", "-p", "go", check=False)
    assert result.returncode == 1
    assert "not in a git repository" in result.stderr and "started 0 of 2" in result.stderr
    assert recorded(records) == []


def test_check_without_a_worktree_is_a_usage_error(cli, records: Path, tmp_path: Path) -> None:
    result = cli("launch", "--cwd", str(tmp_path), "--check", "true", "codex", "-p", "go", check=False)
    assert result.returncode == 2 and "--check runs in the session's own worktree" in result.stderr
