"""The launch use case (``application/launching.py: Launching``) over in-memory fakes of its ports.

No store, no process: what a launch plans from the user's options, the
configuration's defaults and the agent's adapter, and what it refuses before
anything starts. The real thing, end to end, is in ``test_cli_lifecycle.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from agentledger.adapters.base import LaunchPlan
from agentledger.adapters.registry import get as adapter_named
from agentledger.application.launching import (
    RECORDED_PROMPT_CHARS,
    LaunchDefaults,
    Launching,
    LaunchSpec,
    PastSession,
    RunOptions,
)
from agentledger.domain.errors import LedgerError, UsageError

pytestmark = pytest.mark.unit


@dataclass
class FakeHost:
    """The ``LaunchHost`` port in memory: records what was written and started."""

    answer: dict[str, Any] = field(default_factory=lambda: {"ok": True, "pid": 4242})
    notice: str | None = None
    directories: set[str] = field(default_factory=lambda: {"/src"})
    prompts: dict[str, str] = field(default_factory=dict)
    started: list[LaunchSpec] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    count: int = 0

    def new_session_id(self) -> str:
        self.count += 1
        return f"{self.count:04x}" + "e" * 28

    def is_directory(self, path: str) -> bool:
        return path in self.directories

    def log_path(self, session_id: str) -> str:
        return f"/home/logs/{session_id}.log"

    def write_prompt(self, session_id: str, text: str, files: Sequence[str], spec: str | None = None) -> str:
        head = "" if spec is None else f"--- spec: {spec} ---\n"
        self.prompts[session_id] = head + text + "".join(f"\n--- file: {f} ---" for f in files)
        return f"/home/prompts/{session_id}.txt"

    def environment(self, unset: Sequence[str]) -> dict[str, str]:
        return {name: "x" for name in ("HOME", "SECRET", "TOKEN") if name not in unset}

    def user(self) -> str:
        return "alice"

    def start_supervisor(self, spec: LaunchSpec) -> dict[str, Any]:
        self.started.append(spec)
        return self.answer

    def start_supervisors(self, specs: Sequence[LaunchSpec]) -> list[dict[str, Any]]:
        self.batches.append(len(specs))
        return [self.start_supervisor(spec) for spec in specs]

    def ensure_reconciler(self) -> str | None:
        return self.notice


class FakeAgents:
    """The ``Agents`` port: the real adapters' metadata, a launch plan that shows what it was given."""

    def agent_names(self) -> list[str]:
        return ["opencode", "claude-code"]

    def for_session(self, name: str | None) -> Any:
        return adapter_named(name or "command")

    def launch_plan(self, agent: str, *, session_id: str, cwd: str, prompt_path: str, model: str | None,
                    name: str | None) -> LaunchPlan:
        return LaunchPlan(argv=[agent, "run", f"--model={model}"], env={"AGENT_VAR": "1"}, stdin_path=prompt_path,
                          native_session_id=f"native-{session_id[-4:]}")


DEFAULTS = LaunchDefaults(fuse_ttl=30.0, on_stop="notify-send done", on_stop_timeout=60.0, unset_env=("SECRET",))


@pytest.fixture
def host() -> FakeHost:
    return FakeHost()


@pytest.fixture
def launching(host: FakeHost) -> Launching:
    return Launching(FakeAgents(), host, DEFAULTS)  # type: ignore[arg-type]


def test_a_command_runs_under_the_configurations_defaults(launching: Launching, host: FakeHost) -> None:
    started = launching.command(["sleep", "9"], cwd="/src", run=RunOptions(name="n", labels={"k": "v"}),
                                adapter="command")
    spec = host.started[0]
    assert started.spec is spec and started.pid == 4242 and started.notice is None
    assert (spec.argv, spec.cwd, spec.fuse_ttl, spec.heartbeat_interval) == (["sleep", "9"], "/src", 30.0, 10.0)
    assert (spec.on_stop, spec.on_stop_timeout) == ("notify-send done", 60.0)
    assert spec.env == {"HOME": "x", "TOKEN": "x"}  # the configuration's unset_env is honoured
    assert (spec.name, spec.labels, spec.launched_by) == ("n", {"k": "v"}, "alice")
    assert spec.log_path == f"/home/logs/{spec.session_id}.log"


def test_the_users_options_win_and_a_blank_on_stop_turns_it_off(launching: Launching, host: FakeHost) -> None:
    run = RunOptions(fuse_ttl=90.0, heartbeat_every=20.0, on_stop=" ", unset_env=["TOKEN"])
    spec = launching.command(["true"], cwd="/src", run=run, adapter="command").spec
    assert (spec.fuse_ttl, spec.heartbeat_interval) == (90.0, 20.0)
    assert spec.on_stop is None and spec.on_stop_timeout is None
    assert spec.env == {"HOME": "x"}


def test_a_heartbeat_that_would_let_the_fuse_lapse_is_refused_before_anything_starts(
        launching: Launching, host: FakeHost) -> None:
    with pytest.raises(UsageError, match="more than half the fuse TTL"):
        launching.agent("opencode", prompt="hi", files=[], cwd="/src", run=RunOptions(heartbeat_every=16.0))
    assert host.started == [] and host.prompts == {}


def test_an_agent_gets_its_adapters_plan_and_its_prompt_on_stdin(launching: Launching, host: FakeHost) -> None:
    spec = launching.agent("opencode", prompt="fix it", files=["a.py"], cwd="/src", run=RunOptions(),
                           model="m1").spec
    assert spec.argv == ["opencode", "run", "--model=m1"] and spec.adapter == "opencode"
    assert spec.stdin_path == f"/home/prompts/{spec.session_id}.txt" and spec.prompt == "fix it"
    assert host.prompts[spec.session_id] == "fix it\n--- file: a.py ---"
    assert spec.env is not None and spec.env["AGENT_VAR"] == "1" and spec.native_session_id is not None


def test_a_long_prompt_is_recorded_cut_short_naming_its_file(launching: Launching, host: FakeHost) -> None:
    prompt = "p" * (RECORDED_PROMPT_CHARS + 10)
    spec = launching.agent("opencode", prompt=prompt, files=[], cwd="/src", run=RunOptions()).spec
    assert spec.prompt is not None and spec.prompt.startswith("p" * RECORDED_PROMPT_CHARS + "…")
    assert spec.stdin_path is not None and spec.stdin_path in spec.prompt


def test_an_empty_prompt_is_refused(launching: Launching, host: FakeHost) -> None:
    with pytest.raises(UsageError, match="prompt is empty"):
        launching.agent("opencode", prompt="  ", files=[], cwd="/src", run=RunOptions())


def test_a_spawn_failure_is_a_usage_error_naming_the_recorded_session(host: FakeHost) -> None:
    host.answer = {"ok": False, "kind": "spawn-failed", "error": "no such file: nope"}
    with pytest.raises(UsageError, match=r"no such file: nope \(recorded as session 0001e{8}, spawn-failed\)"):
        Launching(FakeAgents(), host, DEFAULTS).command(["nope"], cwd="/src", run=RunOptions(),  # type: ignore[arg-type]
                                                        adapter="command")


def test_the_daemons_notice_comes_back_with_the_launch(host: FakeHost) -> None:
    host.notice = "started the reconciler daemon"
    started = Launching(FakeAgents(), host, DEFAULTS).command(  # type: ignore[arg-type]
        ["true"], cwd="/src", run=RunOptions(), adapter="command")
    assert started.notice == "started the reconciler daemon"


def _past(**changes: Any) -> PastSession:
    fields: dict[str, Any] = dict(id="ab" * 16, status="stopped", adapter="opencode", native_session_id="ses_1",
                                  cwd="/src", name="old", model="m0", group="g", labels={"a": "1", "b": "2"})
    return PastSession(**{**fields, **changes})


def test_resume_continues_the_conversation_in_its_directory(launching: Launching, host: FakeHost) -> None:
    spec = launching.resume(_past(), message="go on", files=[], run=RunOptions(labels={"b": "3"})).spec
    assert spec.argv == adapter_named("opencode").resume_argv("ses_1") and spec.cwd == "/src"
    assert (spec.resumed_from, spec.native_session_id, spec.model) == ("ab" * 16, "ses_1", "m0")
    assert (spec.name, spec.group, spec.labels) == ("old", "g", {"a": "1", "b": "3"})


@pytest.mark.parametrize(("changes", "error", "words"), [
    ({"adapter": "command"}, UsageError, "ran a plain command"),
    ({"status": "running"}, LedgerError, "is still running"),
    ({"native_session_id": None}, UsageError, "never found the agent's own session"),
    ({"cwd": "/gone"}, UsageError, "directory /gone is gone"),
])
def test_resume_refuses_what_cannot_be_continued(launching: Launching, host: FakeHost, changes: dict[str, Any],
                                                 error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        launching.resume(_past(**changes), message="go on", files=[], run=RunOptions())
    assert host.started == []


class FakeWorktrees:
    """The worktree service in memory: what was made for which session, and what was discarded."""

    def __init__(self) -> None:
        self.made: list[dict[str, Any]] = []
        self.discarded: list[dict[str, Any]] = []

    def create(self, request: Any, *, cwd: str, session_id: str) -> tuple[str, dict[str, Any]]:
        workspace = {"repository": cwd, "worktree": f"/wt/{request.name}", "branch": f"agentledger/{request.name}"}
        self.made.append(workspace)
        return workspace["worktree"], workspace

    def discard(self, workspace: dict[str, Any]) -> None:
        self.discarded.append(workspace)


@pytest.mark.parametrize(("answer", "kept"), [
    ({"ok": False, "kind": "store", "error": "could not record the launch"}, False),
    ({"ok": False, "kind": "spawn-failed", "error": "no such file"}, True),  # recorded: its worktree with it
    ({"ok": False, "kind": "setup-failed", "error": "--on-create failed"}, True),
])
def test_a_launch_never_recorded_takes_its_new_worktree_away(host: FakeHost, answer: dict[str, Any],
                                                             kept: bool) -> None:
    from agentledger.application.worktrees import WorktreeRequest

    worktrees = FakeWorktrees()
    host.answer = answer
    launching = Launching(FakeAgents(), host, DEFAULTS, worktrees=worktrees)  # type: ignore[arg-type]
    with pytest.raises(LedgerError):
        launching.agent("codex", prompt="go", files=[], cwd="/src", run=RunOptions(),
                        worktree=WorktreeRequest(name="w1"))
    assert host.started[0].cwd == "/wt/w1"
    assert worktrees.discarded == ([] if kept else worktrees.made)


def test_check_needs_a_worktree(launching: Launching, host: FakeHost) -> None:
    with pytest.raises(UsageError, match="--check runs in the session's own worktree"):
        launching.command(["true"], cwd="/src", run=RunOptions(check="make test"), adapter="command")
    assert host.started == []


def test_prepared_launches_start_in_one_batch_each_with_its_own_outcome(host: FakeHost) -> None:
    from agentledger.application.worktrees import WorktreeRequest

    worktrees = FakeWorktrees()
    launching = Launching(FakeAgents(), host, DEFAULTS, worktrees=worktrees)  # type: ignore[arg-type]
    prepared = [launching.prepare_agent("codex", prompt="go", files=[], cwd="/src", run=RunOptions(),
                                        worktree=WorktreeRequest(name=f"w{i}")) for i in range(3)]
    assert host.started == []  # nothing starts while preparing
    answers = iter([{"ok": True, "pid": 1}, {"ok": False, "kind": "store", "error": "disk full"},
                    {"ok": False, "kind": "no-answer", "error": "the supervisor did not answer"}])
    host.start_supervisor = lambda spec: next(answers)  # type: ignore[method-assign]
    results = launching.start_prepared(prepared)
    assert host.batches == [3]
    assert results[0].pid == 1  # type: ignore[union-attr]
    assert [str(r) for r in results[1:]] == ["disk full", "the supervisor did not answer"]
    assert worktrees.discarded == [worktrees.made[1]]  # the unanswered one may be recorded: its worktree stays
