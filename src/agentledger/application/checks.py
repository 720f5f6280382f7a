"""A session's ``--check`` command: run in its worktree once the session has stopped, its outcome recorded.

``launch --check CMD`` (a worktree session) records CMD in ``Launched``. Two
components run it, as they do on-stop hooks (``application/stop_hooks.py``):

- the supervisor, right after it records the exit it saw (the common case,
  with no daemon needed);
- the daemon of the session's host, for a stop no supervisor followed (the
  supervisor was killed, or its machine rebooted: the reconciler, ``stop`` or a
  spooled exit appended the stop). After each reconcile pass it runs the check
  of each session stopped since its last look whose outcome is not in the log
  (:func:`run_missing_check`), before the session's on-stop hook, in the
  supervisor's order (a hook may remove the worktree).

The outcome is the Workspace's ``CheckFinished``, which ``compare``, ``why``
and ``worktrees --json`` show. Unlike an on-stop hook, a check is not claimed
before it runs: it is a test run with no effect outside its worktree, so a
daemon that finds no outcome and no supervisor left runs it, even when a
supervisor killed during its check had started it (that run left no outcome,
and running it again is the only way to get one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple
from uuid import UUID

from agentledger.application.stop_hooks import HookRun, outcome_words
from agentledger.application.workspaces import record_check, workspace_of

if TYPE_CHECKING:
    from agentledger.application.ledger import Ledger
    from agentledger.application.ports import HookRunner, Machine
    from agentledger.domain.session import Session

#: How long a check may run (the launch records none of its own: the supervisor and the daemon both use this).
CHECK_TIMEOUT = 600.0


def command_environment(base: dict[str, str], session_id: str, cwd: str) -> dict[str, str]:
    """The variables of a command run around the agent (``--on-create``, ``--check``): ``base`` (the launch's
    environment, or the daemon's) and which session it is for, in which directory."""
    return dict(base, AGENTLEDGER_SESSION_ID=session_id, AGENTLEDGER_CWD=cwd, PWD=cwd)


def run_check(ledger: Ledger, runner: HookRunner, session_id: str, *, command: str, cwd: str, env: dict[str, str],
              note: Callable[[str], None], timeout: float = CHECK_TIMEOUT) -> HookRun:
    """Run ``command`` in ``cwd``, write its outcome and output's tail with ``note`` (to the session's log), and
    record it (``CheckFinished``; one that could not start is recorded failed, the reason as its output)."""
    run = runner.run(command, cwd=cwd, env=env, timeout=timeout)
    note(f"--- check: {command} ({outcome_words(run._asdict())}) ---\n{run.output_tail}")
    record_check(ledger, session_id, command=command, exit_code=run.exit_code, duration=run.duration_seconds,
                 output_tail=run.output_tail or run.error or "")
    return run


class CheckTurn(NamedTuple):
    """What the daemon found for one stopped session: the check it ran (or None), and whether to look again."""

    run: HookRun | None
    later: bool = False  # its supervisor still runs (it runs the check itself)


def has_check_to_run(session: Session, machine: Machine) -> bool:
    """Is ``session`` a stopped session of this host with a check? One whose agent never started
    (``setup-failed``: no pid) has none to run."""
    return bool(session.check) and session.is_stopped and session.pid is not None and session.host == machine.host


def outcome_missing(ledger: Ledger, session: Session) -> bool:
    """Is the outcome of the session's check not recorded, and its worktree not removed?"""
    workspace = workspace_of(ledger, session.id)
    return workspace is None or (workspace.check is None and workspace.removed is None)


def run_missing_check(ledger: Ledger, session_id: str, *, machine: Machine, runner: HookRunner,
                      note: Callable[[Session, str], None]) -> CheckTurn:
    """The daemon's part for one stopped session: run its check unless it has none, its outcome is recorded, or
    its supervisor still runs (then the check is the supervisor's, once it has recorded the exit).

    The supervisor is asked about before the outcome is read: one that records the outcome and exits in
    between has recorded it before it was found gone, so the read sees it.
    """
    session: Session = ledger.session(UUID(session_id))
    if not has_check_to_run(session, machine):
        return CheckTurn(None)
    if machine.supervisor_alive(session.supervisor_pid, session_id):
        return CheckTurn(None, later=True)
    if not outcome_missing(ledger, session):
        return CheckTurn(None)
    assert session.check is not None  # has_check_to_run
    env = command_environment(runner.inherited_environment(), session.id.hex, session.cwd)
    return CheckTurn(run_check(ledger, runner, session.id.hex, command=session.check, cwd=session.cwd, env=env,
                               note=lambda text: note(session, text)))
