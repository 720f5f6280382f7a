"""``launch --agent A --agent B …``, ``launch --matrix FILE`` (a group of sessions) and ``agentledger compare GROUP``.

Translation only: the arguments (or the matrix file) become a plan
(``application/group_launching.py``), started through the launch use case;
``compare`` prints the group's sessions side by side from the read models
and each worktree's diff against its base. Heavy modules are imported inside
the handlers.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentledger.entrypoints.args import json_flag
from agentledger.entrypoints.render import counted

if TYPE_CHECKING:
    from agentledger.application.group_launching import GroupPlan, MemberOutcome
    from agentledger.application.launching import Launching, RunOptions
    from agentledger.entrypoints.cli import Context


def is_group(args: argparse.Namespace, agent: str | None) -> bool:
    """Whether ``launch``'s arguments ask for a group: ``--agent``, ``--matrix`` or several ``--model``."""
    from agentledger.application.errors import UsageError

    group = bool(args.agent or args.matrix or len(args.model) > 1)
    if args.dry_run and not group:
        raise UsageError("--dry-run shows a group's plan: use it with --agent, --matrix or several --model")
    return group


def launch_group(args: argparse.Namespace, agent: str | None, *, launching: Launching, run: RunOptions,
                 read_text: Callable[..., str], wait: Callable[[list[str]], int] | None = None) -> int:
    """``launch``'s group form; ``launch_commands`` hands over the use case, the run options, its prompt reader
    and, with ``--wait``, what waits for the sessions started."""
    from agentledger.application.errors import UsageError
    from agentledger.application.group_launching import launch_group as start_all

    if agent is None and args.argv:
        raise UsageError("a group launches agents (--agent, --matrix), not a command after --")
    if getattr(args, "branch", None):
        raise UsageError("--branch names one session's branch: each session of a group gets its own")
    plan = _plan(args, agent, read_text)
    if args.dry_run:
        return _print_plan(plan, json=args.json)
    cwd = os.path.abspath(args.cwd or os.getcwd())
    if not os.path.isdir(cwd):
        raise UsageError(f"--cwd {args.cwd!r} is not a directory")
    outcomes = start_all(launching, plan, cwd=cwd, run=run, files=args.file, spec=args.spec,
                         base=getattr(args, "base_branch", None))
    status = _report(plan, outcomes, json=args.json)
    started = [o.started.spec.session_id for o in outcomes if o.started is not None]
    if wait is None or not started:
        return status
    return max(status, 1 if wait(started) else 0)  # 0 only if every session started and exited 0


def _plan(args: argparse.Namespace, agent: str | None, read_text: Callable[..., str]) -> GroupPlan:
    from agentledger.adapters import registry
    from agentledger.application.errors import UsageError
    from agentledger.application.group_launching import Prompt, matrix_plan, plan_group

    if args.matrix:
        if agent or args.agent or args.model or args.prompt is not None or args.prompt_file:
            raise UsageError("--matrix gives the agents, models and prompts: not with an AGENT, --agent, --model, "
                             "-p or --prompt-file")
        from agentledger.infrastructure.matrix_file import load_matrix

        return matrix_plan(load_matrix(args.matrix), group=args.group, known_agents=registry.agent_names(),
                           read_prompt=_prompt_file_reader(args.matrix))
    agents = [*([agent] if agent else []), *args.agent]
    if not agents:
        raise UsageError("several --model need an agent: agentledger launch AGENT --model M1 --model M2 -p PROMPT")
    text = read_text(args.prompt, args.prompt_file, what="launch --agent", inline="-p PROMPT",
                     from_file="--prompt-file FILE")
    return plan_group(agents, args.model or [None], [Prompt("p1", text)], group=args.group,
                      known_agents=registry.agent_names())


def _prompt_file_reader(matrix_path: str) -> Callable[[str], str]:
    """Reads a matrix's ``prompt_files`` entry, relative to the matrix file's directory."""
    from agentledger.application.errors import UsageError

    base = os.path.dirname(os.path.abspath(matrix_path))

    def read(path: str) -> str:
        full = os.path.join(base, os.path.expanduser(path))
        try:
            with open(full, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError as error:
            raise UsageError(f"--matrix {matrix_path}: prompt file {path}: {error.strerror or error}") from None

    return read


def _print_plan(plan: GroupPlan, *, json: bool) -> int:
    from agentledger.entrypoints.render import shorten, table, write_json_lines

    if json:
        write_json_lines({"group": plan.group, "name": m.name, "agent": m.agent, "model": m.model,
                          "prompt_label": m.prompt.label, "prompt": m.prompt.text} for m in plan.members)
        return 0
    table(["#", "NAME", "AGENT", "MODEL", "PROMPT"],
          [(i, m.name, m.agent, m.model, shorten(" ".join(m.prompt.text.split()), 48))
           for i, m in enumerate(plan.members, 1)])
    print(f"group {plan.group}: {counted(len(plan.members), 'session')}, each in a new worktree; nothing started (--dry-run)")
    return 0


def _report(plan: GroupPlan, outcomes: list[MemberOutcome], *, json: bool) -> int:
    """Each started session's id on stdout (one per line, as ``launch`` prints one); failures on stderr."""
    from agentledger.entrypoints.render import write_json

    failed = [o for o in outcomes if o.started is None]
    for outcome in outcomes:
        if outcome.started is None:
            print(f"agentledger: {outcome.member.name}: {outcome.error}", file=sys.stderr)
            continue
        spec = outcome.started.spec
        if json:
            write_json({"id": spec.session_id, "group": plan.group, "name": outcome.member.name,
                        "agent": outcome.member.agent, "model": outcome.member.model, "pid": outcome.started.pid,
                        "cwd": spec.cwd, "log_path": spec.log_path})
        else:
            print(spec.session_id)
    notices = {o.started.notice for o in outcomes if o.started is not None and o.started.notice}
    for notice in sorted(notices):
        print(f"agentledger: {notice}", file=sys.stderr)
    started = len(outcomes) - len(failed)
    print(f"agentledger: group {plan.group}: started {started} of {counted(len(outcomes), 'session')}"
          + (f"; 'agentledger compare {plan.group}' shows their results" if started else ""), file=sys.stderr)
    return 1 if failed else 0


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("compare", "a group's sessions side by side: agent, model, status, exit, duration, tokens, cost, "
                           "changes in their worktrees, the check's outcome")
    p.add_argument("group", metavar="GROUP", help="the group's name (launch --group, or the one a group launch printed)")
    json_flag(p)
    p.set_defaults(handler=cmd_compare)


def cmd_compare(context: Context, args: argparse.Namespace) -> int:
    from agentledger.application.clock import now_epoch
    from agentledger.application.comparing import compare
    from agentledger.application.errors import UsageError
    from agentledger.application.workspaces import diff_stats
    from agentledger.bootstrap import repositories
    from agentledger.projections.queries import current_status, list_sessions

    now = now_epoch()
    rows = list_sessions(context.fresh_db(), include_stopped=True, status=None, now=now, group=args.group)
    if not rows:
        raise UsageError(f"no session belongs to group {args.group!r} ('agentledger list --all' shows the groups)")
    git, ledger = repositories(), context.store.ledger
    ordered = sorted(rows, key=lambda row: (row["name"] or "", row["started_at"]))  # a group's names say its plan
    results = compare(ordered, now=now, status_of=lambda row: current_status(row, now),
                      changes_of=lambda sid: diff_stats(ledger, git, sid))
    if args.json:
        from agentledger.entrypoints.render import write_json_lines

        write_json_lines(result.as_json() for result in results)
        return 0
    from agentledger.domain.durations import format_duration
    from agentledger.entrypoints.render import table

    table(["ID", "NAME", "AGENT", "MODEL", "STATUS", "OUTCOME", "RAN", "TOKENS IN/OUT", "COST", "FILES", "+", "-",
           "CHECK"],
          [(r.id[:12], r.name, r.agent, r.model, r.status, r.outcome, format_duration(r.duration),
            None if r.tokens_in is None and r.tokens_out is None else f"{r.tokens_in or 0}/{r.tokens_out or 0}",
            None if r.cost is None else f"${r.cost:.4f}",
            *(("?", "?", "?") if r.changes_error else ((None, None, None) if r.changes is None else r.changes)),
            None if r.check_passed is None else ("passed" if r.check_passed else f"FAILED (exit {r.check_exit_code})"))
           for r in results])
    for r in results:
        if r.changes_error:
            print(f"agentledger: {r.id[:12]}: its changes cannot be read: {r.changes_error}", file=sys.stderr)
    return 0
