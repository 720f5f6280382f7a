"""Planning a group launch (``application/group_launching.py``): agents × models × prompts, names, refusals.

In memory: the plan, the matrix file's meaning, and starting every member
through a stand-in for the launch use case (one failure does not stop the
others). ``tests/test_worktrees.py`` and ``tests/test_group_cli.py`` run real groups.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agentledger.application.group_launching import (
    MAX_MEMBERS,
    Prompt,
    launch_group,
    matrix_plan,
    plan_group,
)
from agentledger.application.launching import RunOptions
from agentledger.domain.errors import LedgerError, UsageError

pytestmark = pytest.mark.unit

AGENTS = ["opencode", "claude-code", "codex", "pi"]


def test_agents_times_models_times_prompts_each_named_by_what_sets_it_apart() -> None:
    plan = plan_group(["codex", "pi"], ["m1", "m2"], [Prompt("fix", "fix it"), Prompt("", "p")], group="sweep",
                      known_agents=AGENTS)
    assert plan.group == "sweep" and len(plan.members) == 8
    assert [m.name for m in plan.members[:4]] == ["sweep-codex-m1-fix", "sweep-codex-m1-p2", "sweep-codex-m2-fix",
                                                  "sweep-codex-m2-p2"]
    assert {(m.agent, m.model, m.prompt.text) for m in plan.members} == {
        (a, m, p) for a in ("codex", "pi") for m in ("m1", "m2") for p in ("fix it", "p")}


def test_a_single_model_and_prompt_leave_the_name_short_and_a_group_gets_a_name() -> None:
    plan = plan_group(["codex", "claude-code"], [None], [Prompt("p1", "hi")], group=None, known_agents=AGENTS)
    assert plan.group.startswith("g-") and len(plan.group) == 8
    assert [m.name for m in plan.members] == [f"{plan.group}-codex", f"{plan.group}-claude-code"]


def test_names_hold_only_what_a_branch_and_a_directory_may() -> None:
    plan = plan_group(["codex"], ["openai/gpt 5:mini", "x"], [Prompt("p1", "hi")], group="g", known_agents=AGENTS)
    assert plan.members[0].name == "g-codex-openai_gpt_5_mini"


@pytest.mark.parametrize(("agents", "models", "words"), [
    (["codex", "nope"], [None], "unknown agent 'nope'"),
    (["codex", "codex"], [None], "agent 'codex' is given twice"),
    (["codex"], ["m", "m"], "model 'm' is given twice"),
    ([], [None], "at least one agent"),
])
def test_a_bad_plan_is_refused(agents: list[str], models: list[str | None], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        plan_group(agents, models, [Prompt("p1", "hi")], group="g", known_agents=AGENTS)


def test_too_many_sessions_are_refused() -> None:
    models: list[str | None] = [f"m{i}" for i in range(MAX_MEMBERS)]
    with pytest.raises(UsageError, match="more than a group may start at once"):
        plan_group(["codex", "pi"], models, [Prompt("p1", "hi")], group="g", known_agents=AGENTS)


def test_a_matrix_names_its_prompts_and_reads_prompt_files() -> None:
    matrix = {"agents": ["codex", "pi"], "models": ["a", "b"], "prompts": {"short": "be brief"},
              "prompt_files": ["task.md"], "group": "m1"}
    plan = matrix_plan(matrix, group=None, known_agents=AGENTS, read_prompt=lambda path: f"<{path}>")
    assert plan.group == "m1" and len(plan.members) == 8
    assert {m.prompt.label for m in plan.members} == {"short", "p2"}
    assert {m.prompt.text for m in plan.members} == {"be brief", "<task.md>"}
    assert matrix_plan(matrix, group="override", known_agents=AGENTS, read_prompt=str).group == "override"


@pytest.mark.parametrize(("matrix", "words"), [
    ({"agents": ["codex"], "prompt": ["x"]}, "unknown key 'prompt'"),
    ({"agents": "codex", "prompts": [1]}, "prompts must be a list of non-empty strings"),
    ({"agents": ["codex"], "prompts": {"a": ""}}, "prompts must hold non-empty strings"),
    ({"agents": ["codex"], "prompts": ["x"], "group": 3}, "group must be a string"),
    ({"agents": ["codex"]}, "at least one prompt"),
])
def test_a_bad_matrix_is_refused_in_one_line(matrix: dict[str, Any], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        matrix_plan(matrix, group=None, known_agents=AGENTS, read_prompt=str)


class FakeLaunching:
    """The launch use case's two group steps in memory: prepare each member (pi's is refused), start them all."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.starts: list[list[str]] = []
        self.lock = threading.Lock()

    def prepare_agent(self, agent: str, **kwargs: Any) -> Any:
        with self.lock:
            self.calls.append({"agent": agent, **kwargs})
        if agent == "pi":
            raise LedgerError("pi: no such binary")
        return f"prepared {agent}"

    def start_prepared(self, prepared: list[str]) -> list[Any]:
        self.starts.append(prepared)
        return [LedgerError("the store is full") if p == "prepared opencode" else p.replace("prepared", "started")
                for p in prepared]


def test_every_member_starts_in_its_own_worktree_and_one_failure_spares_the_others() -> None:
    plan = plan_group(["codex", "pi", "opencode", "claude-code"], [None], [Prompt("p1", "go")], group="g",
                      known_agents=AGENTS)
    launching = FakeLaunching()
    outcomes = launch_group(launching, plan, cwd="/repo", run=RunOptions(timeout=60.0),  # type: ignore[arg-type]
                            files=["a.txt"])
    assert [(o.member.agent, o.started, o.error) for o in outcomes] == [
        ("codex", "started codex", None), ("pi", None, "pi: no such binary"),
        ("opencode", None, "the store is full"), ("claude-code", "started claude-code", None)]
    assert launching.starts == [["prepared codex", "prepared opencode", "prepared claude-code"]]  # one start
    calls = launching.calls
    assert sorted(c["worktree"].name for c in calls) == ["g-claude-code", "g-codex", "g-opencode", "g-pi"]
    assert all(c["worktree"].base is None and c["spec"] is None for c in calls)
    assert all(c["run"].group == "g" and c["run"].name == c["worktree"].name and c["run"].timeout == 60.0
               for c in calls)
    assert all(c["cwd"] == "/repo" and c["files"] == ["a.txt"] and c["prompt"] == "go" for c in calls)
