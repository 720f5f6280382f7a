"""Launching a group: several agents (or models, or prompts) on one repository at once, each in its own worktree.

``launch --agent A --agent B -p PROMPT`` and ``launch --matrix FILE`` plan
one member per combination of agents × models × prompts
(:func:`plan_group`), all in one group, and start them in parallel through
the one launch use case (``launching.py``), each in a new git worktree named
after the group and what makes the member different, so that their results
can be compared side by side (``agentledger compare GROUP``).

A member that cannot be started does not stop the others: each outcome is
reported, and the group's launch fails if any member's did.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import product
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from agentledger.application.worktrees import WorktreeRequest
from agentledger.domain.errors import LedgerError, UsageError

if TYPE_CHECKING:
    from agentledger.application.launching import Launching, Prepared, RunOptions, Started

#: At most this many sessions in one group launch: a typo in a matrix must not start a thousand agents.
MAX_MEMBERS = 64
#: Members prepared at once (their worktrees checked out side by side; git's bookkeeping is one at a time).
PARALLEL_PREPARES = 8


@dataclass(frozen=True)
class Prompt:
    """One of a group's prompts: its text, and a short label for names (``p1``, or the matrix's key)."""

    label: str
    text: str


@dataclass(frozen=True)
class Member:
    """One session of a group: which agent, model and prompt, and the worktree (and session name) it gets."""

    agent: str
    model: str | None
    prompt: Prompt
    name: str  # the session's name and its worktree's: <group>-<agent>[-<model>][-<prompt label>]


@dataclass(frozen=True)
class GroupPlan:
    group: str
    members: list[Member]


@dataclass(frozen=True)
class MemberOutcome:
    """A member's launch: started, or the one line that says why not."""

    member: Member
    started: Started | None
    error: str | None


def plan_group(agents: Sequence[str], models: Sequence[str | None], prompts: Sequence[Prompt], *,
               group: str | None, known_agents: Sequence[str]) -> GroupPlan:
    """Every combination of ``agents`` × ``models`` × ``prompts``, named so that each says how it differs.

    Refuses an unknown agent, a duplicate, an empty axis, and more than
    :data:`MAX_MEMBERS` members.
    """
    prompts = _relabel(list(prompts))
    unknown = [a for a in agents if a not in known_agents]
    if unknown:
        raise UsageError(f"unknown agent {unknown[0]!r} (agents: {', '.join(known_agents)})")
    for axis, values in (("agent", agents), ("model", models), ("prompt", [p.label for p in prompts])):
        if not values:
            raise UsageError(f"a group needs at least one {axis}")
        repeated = sorted({v for v in values if list(values).count(v) > 1}, key=str)
        if repeated:
            raise UsageError(f"{axis} {repeated[0]!r} is given twice")
    count = len(agents) * len(models) * len(prompts)
    if count > MAX_MEMBERS:
        raise UsageError(f"{count} sessions is more than a group may start at once ({MAX_MEMBERS})")
    group = group or f"g-{uuid4().hex[:6]}"
    members = [Member(agent, model, prompt, _member_name(group, agent, model if len(models) > 1 else None,
                                                         prompt.label if len(prompts) > 1 else None))
               for agent, model, prompt in product(agents, models, prompts)]
    return GroupPlan(group, members)


def matrix_plan(matrix: Mapping[str, Any], *, group: str | None, known_agents: Sequence[str],
                read_prompt: Callable[[str], str]) -> GroupPlan:
    """A plan from a matrix file's contents: ``agents`` (list), ``models`` (list, optional), ``prompts``
    (a list of texts, or a table of label = text), ``prompt_files`` (the same, of paths), ``group`` (optional).

    Unknown keys are refused, so that a misspelt axis is not silently left out.
    """
    allowed = {"agents", "models", "prompts", "prompt_files", "group"}
    extra = sorted(set(matrix) - allowed)
    if extra:
        raise UsageError(f"matrix: unknown key {extra[0]!r} (keys: {', '.join(sorted(allowed))})")
    agents = _strings(matrix.get("agents"), "agents")
    models: list[str | None] = list(_strings(matrix.get("models"), "models")) or [None]
    prompts = _prompts(matrix.get("prompts"), "prompts", lambda text: text)
    prompts += _prompts(matrix.get("prompt_files"), "prompt_files", read_prompt)
    named = matrix.get("group")
    if named is not None and not isinstance(named, str):
        raise UsageError("matrix: group must be a string")
    return plan_group(agents, models, prompts, group=group or named, known_agents=known_agents)


def launch_group(launching: Launching, plan: GroupPlan, *, cwd: str, run: RunOptions, files: Sequence[str],
                 spec: str | None = None, base: str | None = None) -> list[MemberOutcome]:
    """Start every member of ``plan``, each in a new worktree of ``cwd``'s repository (on a branch from
    ``base``, default ``HEAD``); their outcomes, in the plan's order.

    The members are prepared side by side (worktrees checked out, prompt
    files written, locks taken), then their supervisors start in one go.
    """

    def prepare(member: Member) -> Prepared | LedgerError:
        member_run = replace(run, name=member.name, group=plan.group)
        try:
            return launching.prepare_agent(member.agent, prompt=member.prompt.text, files=files, cwd=cwd,
                                           run=member_run, model=member.model,
                                           worktree=WorktreeRequest(name=member.name, base=base), spec=spec)
        except LedgerError as error:
            return error

    with ThreadPoolExecutor(max_workers=min(PARALLEL_PREPARES, len(plan.members))) as pool:
        prepared = list(pool.map(prepare, plan.members))
    ready = [p for p in prepared if not isinstance(p, LedgerError)]
    started = iter(launching.start_prepared(ready) if ready else [])
    outcomes = []
    for member, one in zip(plan.members, prepared, strict=True):
        result = one if isinstance(one, LedgerError) else next(started)
        outcomes.append(MemberOutcome(member, None, str(result)) if isinstance(result, LedgerError)
                        else MemberOutcome(member, result, None))
    return outcomes


def _member_name(group: str, agent: str, model: str | None, prompt: str | None) -> str:
    """``<group>-<agent>[-<model>][-<prompt>]``, reduced to what a branch and a directory name may hold."""
    parts = [group, agent, *(p for p in (model, prompt) if p)]
    return "-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", part).strip("._-") or "x" for part in parts)


def _strings(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise UsageError(f"matrix: {key} must be a list of non-empty strings")
    return list(value)


def _prompts(value: Any, key: str, read: Callable[[str], str]) -> list[Prompt]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        pairs = [("", v) for v in _strings(value, key)]
    prompts = []
    for label, text in pairs:
        if not isinstance(text, str) or not text.strip():
            raise UsageError(f"matrix: {key} must hold non-empty strings")
        prompts.append(Prompt(str(label), read(text)))
    return prompts


def _relabel(prompts: list[Prompt]) -> list[Prompt]:
    """Unlabelled prompts get ``p1``, ``p2``, … by their place."""
    return [p if p.label else Prompt(f"p{i}", p.text) for i, p in enumerate(prompts, 1)]
