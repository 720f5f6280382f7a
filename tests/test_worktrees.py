"""``launch --worktree``, ``worktrees [clean]``, ``diff`` and ``merge``: in real git repositories, with real
sessions, on both backends; and the pure parts (settings, paths, the Workspace aggregate) alone."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import CLI, wait_for

IDENTITY = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com"}


def git(directory: Path | str, *args: str) -> str:
    return subprocess.run(["git", "-C", str(directory), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, **IDENTITY}).stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with one commit on main, an untracked .env, and a git identity for the sessions' commits."""
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "a.txt").write_text("one\n")
    git(path, "add", "a.txt")
    git(path, "commit", "-q", "-m", "init")
    (path / ".env").write_text("SECRET=1\n")
    return path


def configure(home: Path, text: str) -> None:
    home.mkdir(mode=0o700, exist_ok=True)
    (home / "config.toml").write_text(text)


def launch(cli: CLI, repo: Path, script: str, *options: str) -> str:
    return cli("launch", "--cwd", str(repo), *options, "--", "sh", "-c", script).stdout.strip()


def stopped(cli: CLI, sid: str) -> dict:
    return wait_for(lambda: (s := cli.json("status", sid))["status"] == "stopped" and s, timeout=30)


def launched_workspace(cli: CLI, sid: str) -> dict:
    return cli.json_lines("history", sid)[0]["fields"]["workspace"]


def snapshot(*checkouts: Path) -> dict:
    """Every ref, and every file's bytes and git's status, in each checkout: 'nothing changed' compares these."""
    state: dict = {"refs": git(checkouts[0], "for-each-ref", "--format=%(refname) %(objectname)")}
    for checkout in checkouts:
        files = {str(p.relative_to(checkout)): p.read_bytes() for p in sorted(checkout.rglob("*"))
                 if p.is_file() and ".git" not in p.relative_to(checkout).parts}
        state[str(checkout)] = (files, git(checkout, "status", "--porcelain", "--untracked-files=all"),
                                git(checkout, "rev-parse", "HEAD"))
    return state


# -- launch --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["copy", "link"])
def test_launch_in_a_new_worktree_from_head_records_it_and_copies_configured_files(
        cli: CLI, home: Path, repo: Path, mode: str) -> None:
    configure(home, f'worktree_copy = [".env*"]\nworktree_copy_mode = "{mode}"\n')
    head = git(repo, "rev-parse", "HEAD").strip()
    sids = [launch(cli, repo, "pwd > where.txt", "--worktree", name) for name in ("first", "second")]
    for sid, name in zip(sids, ("first", "second")):
        session = stopped(cli, sid)
        worktree = repo.parent / "project.worktrees" / name
        assert session["cwd"] == str(worktree) and (worktree / "where.txt").read_text().strip() == str(worktree)
        ws = launched_workspace(cli, sid)
        assert ws == {"repository": str(repo), "worktree": str(worktree), "branch": f"agentledger/{name}",
                      "base_ref": "main", "base_commit": head, "name": name, "copied": [".env"]}
        assert git(repo, "rev-parse", f"agentledger/{name}").strip() == head
        env = worktree / ".env"
        assert env.read_text() == "SECRET=1\n" and env.is_symlink() == (mode == "link")
    listed = cli.json_lines("worktrees")
    assert [(e["id"], e["branch"], e["ahead"], e["behind"], e["dirty"]) for e in listed] == [
        (sids[0], "agentledger/first", 0, 0, ["where.txt"]), (sids[1], "agentledger/second", 0, 0, ["where.txt"])]


def test_branch_and_base_branch_options(cli: CLI, repo: Path) -> None:
    git(repo, "branch", "release")
    git(repo, "commit", "-q", "--allow-empty", "-m", "later on main")
    sid = launch(cli, repo, "true", "--worktree", "--branch", "fix/one", "--base-branch", "release")
    stopped(cli, sid)
    ws = launched_workspace(cli, sid)
    assert (ws["branch"], ws["base_ref"], ws["name"]) == ("fix/one", "release", sid[:12])
    assert ws["base_commit"] == git(repo, "rev-parse", "release").strip()


def test_worktree_launch_refusals_are_one_line_exit_2(cli: CLI, repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    result = cli("launch", "--cwd", str(outside), "--worktree", "--", "true", check=False)
    assert result.returncode == 2 and "not in a git repository" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    for options, words in ((("--worktree", "../up"), "may hold only"), (("--base-branch", "nope"), "names no commit"),
                           (("--worktree", "x", "--branch", "main"), "exists already")):
        result = cli("launch", "--cwd", str(repo), *options, "--", "true", check=False)
        assert result.returncode == 2 and words in result.stderr, result.stderr
    assert git(repo, "worktree", "list").count("\n") == 1  # nothing was created


# -- diff, merge ---------------------------------------------------------------------


def test_diff_shows_the_change_and_merge_lands_it_and_removes_the_worktree(cli: CLI, home: Path, repo: Path) -> None:
    configure(home, 'worktree_copy = [".env"]\n')
    sid = launch(cli, repo, "echo two >> a.txt && git commit -qam change && echo new > b.txt", "--worktree", "w")
    stopped(cli, sid)
    stat = cli("diff", sid, "--stat").stdout
    assert "a.txt" in stat and "b.txt" in stat and ".env" not in stat  # committed and not; copied files are not work
    assert "+two" in cli("diff", sid).stdout
    refused = cli("merge", sid, check=False)  # b.txt is not committed: merging would leave it behind
    assert refused.returncode == 1 and "uncommitted changes (b.txt)" in refused.stderr
    worktree = repo.parent / "project.worktrees" / "w"
    git(worktree, "add", "b.txt")
    git(worktree, "commit", "-q", "-m", "b")
    out = cli("merge", sid).stdout
    assert out.startswith("merged agentledger/w into main")
    assert (repo / "a.txt").read_text() == "one\ntwo\n" and (repo / "b.txt").read_text() == "new\n"
    assert not worktree.exists() and "agentledger/w" not in git(repo, "branch", "--list")
    assert git(repo, "status", "--porcelain") == "?? .env\n"
    why = cli("why", sid).stdout
    assert "merged into main as " in why and "worktree and branch removed" in why
    history = [r["type"] for r in cli.json_lines("history", sid)]
    assert history[-3:] == ["Workspace.Created", "Workspace.Merged", "Workspace.Removed"]
    [entry] = cli.json_lines("worktrees", "--all")
    assert entry["merged"]["into"] == "main" and entry["removed"]["branch_deleted"] is True
    assert "+two" in cli("diff", sid).stdout  # the merge commit still shows what it changed
    assert cli("merge", sid, check=False).returncode == 1
    cli("verify")
    cli("db", "rebuild")
    assert cli.json_lines("worktrees", "--all") == [entry]


def test_squash_merge_into_a_branch_not_checked_out(cli: CLI, repo: Path) -> None:
    git(repo, "branch", "integration")
    sid = launch(cli, repo, "echo x > c.txt && git add c.txt && git commit -qm one && echo y >> c.txt && "
                            "git commit -qam two", "--worktree")
    stopped(cli, sid)
    before = snapshot(repo)
    out = cli.json("merge", sid, "--into", "integration", "--squash", "--keep")
    assert out["into"] == "integration" and out["squash"] and not out["removed"]
    assert git(repo, "rev-parse", "integration").strip() == out["commit"]
    assert git(repo, "show", "integration:c.txt") == "x\ny\n"
    assert git(repo, "rev-list", "--count", "integration").strip() == "2"  # one squashed commit on top of init
    assert snapshot(repo)[str(repo)] == before[str(repo)]  # main's checkout untouched
    assert len(git(repo, "worktree", "list").splitlines()) == 2  # no temporary worktree left behind
    assert [r["removed"] for r in cli.json_lines("worktrees", "clean")] == [True]  # merged: nothing lost


@pytest.mark.parametrize("squash", [False, True])
def test_a_conflicting_merge_changes_nothing_and_says_why(cli: CLI, repo: Path, squash: bool) -> None:
    sid = launch(cli, repo, "echo agent > a.txt && git commit -qam agent", "--worktree", "w")
    stopped(cli, sid)
    (repo / "a.txt").write_text("main\n")
    git(repo, "commit", "-q", "-am", "main")
    worktree = repo.parent / "project.worktrees" / "w"
    before = snapshot(repo, worktree)
    result = cli("merge", sid, *(["--squash"] if squash else []), check=False)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "conflict in a.txt" in result.stderr
    assert "nothing was changed" in result.stderr
    assert snapshot(repo, worktree) == before
    assert [e["id"] for e in cli.json_lines("worktrees")] == [sid]  # nothing recorded either
    assert "Workspace.Merged" not in [r["type"] for r in cli.json_lines("history", sid)]


def test_merge_refuses_a_dirty_target_and_a_running_session(cli: CLI, repo: Path) -> None:
    sid = launch(cli, repo, "echo z > z.txt && git add z.txt && git commit -qm z", "--worktree")
    stopped(cli, sid)
    (repo / "a.txt").write_text("edited, not committed\n")
    before = snapshot(repo)
    result = cli("merge", sid, check=False)
    assert result.returncode == 1 and "uncommitted changes (a.txt)" in result.stderr
    assert snapshot(repo) == before
    running = launch(cli, repo, "sleep 30", "--worktree")
    result = cli("merge", running, check=False)
    assert result.returncode == 1 and "still running" in result.stderr
    cli("stop", running)
    plain = cli.launch("true")
    result = cli("merge", plain, check=False)
    assert result.returncode == 2 and "not launched with --worktree" in result.stderr


# -- clean ---------------------------------------------------------------------------


def test_clean_removes_clean_worktrees_of_stopped_sessions_and_refuses_where_work_would_be_lost(
        cli: CLI, repo: Path) -> None:
    clean = launch(cli, repo, "true", "--worktree", "clean")
    dirty = launch(cli, repo, "echo wip > wip.txt", "--worktree", "dirty")
    committed = launch(cli, repo, "echo c > c.txt && git add c.txt && git commit -qm c", "--worktree", "committed")
    running = launch(cli, repo, "sleep 30", "--worktree", "running")
    for sid in (clean, dirty, committed):
        stopped(cli, sid)
    root = repo.parent / "project.worktrees"
    result = cli("worktrees", "clean", "--stopped", check=False)
    assert result.returncode == 1
    assert result.stdout.startswith(f"removed {clean[:12]} {root / 'clean'} and its branch")
    refusals = result.stderr.strip().splitlines()
    assert len(refusals) == 2
    assert f"kept {dirty[:12]}" in refusals[0] and "1 uncommitted change (wip.txt)" in refusals[0]
    assert f"kept {committed[:12]}" in refusals[1] and "1 commit on agentledger/committed" in refusals[1]
    assert not (root / "clean").exists() and (root / "dirty" / "wip.txt").exists() and (root / "running").exists()
    forced = cli("worktrees", "clean", "--force").stdout
    assert "forced" in forced and not (root / "dirty").exists() and not (root / "committed").exists()
    assert (root / "running").exists()  # a running session's worktree is never touched
    assert [e["id"] for e in cli.json_lines("worktrees")] == [running]
    assert "forced: unmerged work given up" in cli("why", dirty).stdout
    assert git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads").split() == [
        "agentledger/running", "main"]
    cli("stop", running)
    cli("verify")


def test_record_check_is_recorded_and_projected(cli: CLI, store, repo: Path) -> None:
    from agentledger.application.workspaces import diff_stats, record_check
    from agentledger.bootstrap import repositories
    from agentledger.domain.workspace import DiffStats

    sid = launch(cli, repo, "printf 'a\\nb\\n' > n.txt && git add n.txt && git commit -qm n && echo x >> a.txt",
                 "--worktree")
    stopped(cli, sid)
    assert diff_stats(store.ledger, repositories(), sid) == DiffStats(2, 3, 0)
    record_check(store.ledger, sid, command="make test", exit_code=0, duration=1.5, output_tail="ok")
    [entry] = cli.json_lines("worktrees")
    assert entry["check"]["passed"] is True and entry["check"]["command"] == "make test"
    assert "`make test` passed" in cli("why", sid).stdout
    cli("verify")


def checks_recorded(cli: CLI) -> list[dict]:
    events = (json.loads(line) for line in cli("events").stdout.splitlines())  # JSON lines, always
    return [e for e in events if e["type"] == "Workspace.CheckFinished"]


def test_the_daemon_runs_the_check_of_a_session_whose_supervisor_was_killed_once(
        cli: CLI, store, daemon, repo: Path) -> None:
    import signal

    from agentledger.application.workspaces import workspace_of

    daemon("--interval", "300ms")
    sid = launch(cli, repo, "echo done > RESULT.txt; exec sleep 600", "--worktree", "--fuse-ttl", "1s",
                 "--check", "test -f RESULT.txt && echo checked by $AGENTLEDGER_SESSION_ID")
    status = wait_for(lambda: (s := cli.json("status", sid))["pid"] and s)
    worktree = Path(status["cwd"])
    wait_for(lambda: (worktree / "RESULT.txt").exists())
    os.kill(status["supervisor_pid"], signal.SIGKILL)  # nobody left to see the exit or run the check
    os.kill(status["pid"], signal.SIGKILL)

    workspace = wait_for(lambda: (w := workspace_of(store.ledger, sid)) is not None and w.check and w, timeout=60)
    assert workspace.check["passed"] is True and f"checked by {sid}" in workspace.check["output_tail"]
    assert cli.json("status", sid)["stop_reason"] == "reconciled"
    [row] = cli.json_lines("worktrees")
    assert row["id"] == sid and row["check"]["passed"] is True
    passes = cli.json("daemon", "status")["daemon"]["passes"]
    wait_for(lambda: cli.json("daemon", "status")["daemon"]["passes"] >= passes + 3)  # later passes leave it alone
    assert len(checks_recorded(cli)) == 1
    log_text = Path(status["log_path"]).read_text()
    assert "--- run by the daemon: the session's supervisor was gone ---" in log_text
    assert log_text.count("--- check: test -f RESULT.txt") == 1
    cli("verify")


def test_with_a_daemon_up_the_supervisor_runs_the_check_and_the_daemon_leaves_it_alone(
        cli: CLI, daemon, repo: Path) -> None:
    daemon("--interval", "200ms")
    sid = launch(cli, repo, "echo done > RESULT.txt", "--worktree", "--check", "sleep 1; test -f RESULT.txt")
    refused = cli("launch", "--cwd", str(repo), "--worktree", "never", "--on-create", "false", "--check", "true",
                  "--", "true", check=False)
    assert refused.returncode == 1 and "setup-failed" in refused.stderr  # the agent never started: no check to run
    status = stopped(cli, sid)
    wait_for(lambda: [r for r in cli.json_lines("worktrees") if r["id"] == sid and r["check"]], timeout=60)
    passes = cli.json("daemon", "status")["daemon"]["passes"]
    wait_for(lambda: cli.json("daemon", "status")["daemon"]["passes"] >= passes + 5)
    [check] = checks_recorded(cli)
    assert check["fields"]["passed"] is True
    assert "run by the daemon" not in Path(status["log_path"]).read_text()


# -- the pure parts ------------------------------------------------------------------


@pytest.mark.unit
def test_worktree_paths_and_rules() -> None:
    from agentledger.application.worktrees import RepositoryRules, Worktrees, WorktreeSettings

    assert Worktrees._path(None, "/src/app", "w1") == "/src/app.worktrees/w1"
    assert Worktrees._path("/var/wt", "/src/app", "w1") == "/var/wt/app/w1"
    assert Worktrees._path(".trees", "/src/app", "w1") == "/src/app/.trees/w1"
    settings = WorktreeSettings(copy=(".env",), repositories={"/src/app": RepositoryRules(
        copy=(".claude/settings.local.json", ".env"), copy_mode="link", directory="/x")})
    assert settings.rules_for("/src/app", "/src/app") == ("/x", (".env", ".claude/settings.local.json"), "link")
    assert settings.rules_for("/src/other", "/src/other") == (None, (".env",), "copy")


@pytest.mark.unit
def test_workspace_aggregate_records_once_and_says_where_the_work_went() -> None:
    from agentledger.application.workspaces import where_work_went
    from agentledger.domain.workspace import AlreadyRecorded, DiffStats, Workspace, workspace_id

    sid = "ab" * 16
    ws = Workspace(session_id=sid, repository="/r", worktree="/r.worktrees/w", branch="b", base_ref="main",
                   base_commit="c" * 40)
    assert ws.id == workspace_id(sid)
    by = {"component": "cli", "user": "ann", "host": "h"}
    ws.record_merge(into="main", commit="d" * 40, squash=True, by=by)
    with pytest.raises(AlreadyRecorded):
        ws.record_merge(into="main", commit="e" * 40, squash=False, by=by)
    ws.record_removal(by=by, forced=False, branch_deleted=True)
    with pytest.raises(AlreadyRecorded):
        ws.record_removal(by=by, forced=True, branch_deleted=True)
    ws.record_check(command="pytest", exit_code=1, duration=2.0, output_tail="x" * 5000)
    assert ws.check is not None and ws.check["passed"] is False and len(ws.check["output_tail"]) == 2048
    facts = {"worktree": "/r.worktrees/w", "branch": "b", "merged": ws.merged, "removed": ws.removed}
    assert where_work_went(facts) == (f"merged into main as {'d' * 12} (squash) by ann; worktree and branch "
                                      "removed by ann")
    assert where_work_went({**facts, "merged": None, "removed": None}) == (
        "in its worktree /r.worktrees/w on branch b (not merged)")
    assert DiffStats(1, 2, 3).words() == "1 file changed, +2 -3"


def test_config_keys_and_repository_tables(home: Path, tmp_path: Path) -> None:
    from agentledger.infrastructure.config import ConfigError
    from agentledger.infrastructure.settings import load_settings, shown, worktree_settings

    configure(home, 'worktree_copy = [".env*"]\nworktree_copy_mode = "link"\nworktree_dir = "~/wt"\n'
                    f'[repositories."{tmp_path}"]\nworktree_copy = [".claude/settings.local.json"]\n')
    settings = load_settings()
    rules = worktree_settings(settings)
    assert rules.rules_for(str(tmp_path), str(tmp_path)) == ("~/wt", (".env*", ".claude/settings.local.json"), "link")
    view = shown(settings)["settings"]
    assert view["worktree_copy"]["value"] == [".env*"]
    assert view[f"repositories.{tmp_path}.worktree_copy"]["source"].endswith("line 5")
    for bad in ('worktree_copy_mode = "hard"\n', 'worktree_copy = ["../x"]\n', '[repositories."rel"]\nx = 1\n',
                f'[repositories."{tmp_path}"]\nnope = 1\n'):
        configure(home, bad)
        with pytest.raises(ConfigError):
            load_settings()
