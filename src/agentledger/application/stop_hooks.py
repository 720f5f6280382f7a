"""Running a session's on-stop command once, after its stop, and recording how it ended.

``launch --on-stop CMD`` (or ``on_stop`` in the configuration) records CMD in
``Launched``. Once the session is stopped, :func:`run_stop_hook` claims the
hook by creating its ``StopHook`` aggregate (a compare-and-set on version 1:
exactly one claimant wins, however many race), runs CMD through ``/bin/sh -c``
in the session's cwd and its own process group (``infrastructure/hook_runner.py``,
the ``HookRunner`` port), with the session's facts in ``AGENTLEDGER_*``
variables, and records ``Finished``. A command that outlives its timeout gets
SIGTERM, then SIGKILL, on its whole group.

Two components call it. The supervisor does, right after it records the exit
it saw: the common case, with no daemon needed. For a stop appended by anyone
else (the reconciler after the supervisor died, ``stop`` with no supervisor
left, a spooled exit, ``host forget``), the daemon of the session's host runs
it: its ``runtime/after_stop_worker.py`` looks for unclaimed hooks of stopped
sessions after each reconcile pass (:func:`sessions_stopped_since`) and runs
them (:func:`run_unclaimed_hook`) on a thread of its own, so a slow hook never
delays reconciling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from agentledger.domain.durations import format_duration
from agentledger.domain.session import Session
from agentledger.domain.stop_hooks import StopHook

if TYPE_CHECKING:
    from agentledger.application.ledger import Ledger
    from agentledger.application.ports import HookRunner, Machine, Store

#: Used only if a session recorded a command without a timeout (the CLI always records one).
DEFAULT_TIMEOUT = 60.0


class HookRun(NamedTuple):
    """What one run of the command came to: the fields of ``StopHook.Finished``."""

    exit_code: int | None
    signal: str | None
    timed_out: bool
    duration_seconds: float
    output_tail: str
    error: str | None = None


def hook_environment(session: Session) -> dict[str, str]:
    """The variables that tell the command which session stopped, and how."""
    stop = session.stop or {}
    env = {
        "AGENTLEDGER_SESSION_ID": session.id.hex,
        "AGENTLEDGER_EXIT_CODE": "" if stop.get("exit_code") is None else str(stop["exit_code"]),
        "AGENTLEDGER_STOP_REASON": stop.get("reason") or "",
        "AGENTLEDGER_CWD": session.cwd,
        "AGENTLEDGER_ADAPTER": session.adapter,
    }
    if stop.get("signal"):
        env["AGENTLEDGER_SIGNAL"] = stop["signal"]
    return env


def run_stop_hook(ledger: Ledger, session_id: UUID, *, claimed_by: dict[str, Any], machine: Machine,
                  runner: HookRunner) -> StopHook | None:
    """Claim, run and record the session's on-stop command; the finished hook.

    None when there is nothing for this caller to run: no command, the session
    not stopped yet or of another host, or another claimant got there first.
    """
    session: Session = ledger.session(session_id)
    if not session.on_stop or not session.is_stopped or session.host != machine.host:
        return None
    hook = StopHook(session_id=session_id.hex, command=session.on_stop, host=session.host, claimed_by=claimed_by)
    try:
        ledger.save_retrying(hook)
    except IntegrityError:
        return None  # claimed already: it runs there (or ran), never here too
    run = runner.run(session.on_stop, cwd=session.cwd, env={**runner.inherited_environment(), **hook_environment(session)},
                     timeout=session.on_stop_timeout or DEFAULT_TIMEOUT)
    hook.finish(**run._asdict())
    ledger.save_retrying(hook)
    return hook


class HookTurn(NamedTuple):
    """What a claimant found for one stopped session: the hook it ran (or None), and whether to look again."""

    hook: StopHook | None
    later: bool = False  # its supervisor still runs (it runs the hook itself), or the look failed


def sessions_stopped_since(store: Store, host: str, after: int) -> tuple[list[str], int]:
    """``host``'s sessions stopped after log position ``after`` (this very moment's stops too), and the new position."""
    store.read_models.catch_up()
    rows = store.read_models.stopped_since(host, after)
    return [row[0] for row in rows], (rows[-1][1] if rows else after)


def run_unclaimed_hook(ledger: Ledger, session_id: str, *, claimed_by: dict[str, Any], machine: Machine,
                       runner: HookRunner) -> HookTurn:
    """The daemon's part for one stopped session: run its hook unless it has none, it is claimed, or the
    session's supervisor still runs (then it is the supervisor's to run, once it has recorded the exit)."""
    session = ledger.session(UUID(session_id))
    if not session.on_stop or ledger.stop_hook(session.id) is not None:
        return HookTurn(None)
    if machine.supervisor_alive(session.supervisor_pid, session_id):
        return HookTurn(None, later=True)
    return HookTurn(run_stop_hook(ledger, session.id, claimed_by=claimed_by, machine=machine, runner=runner))


def outcome_words(outcome: dict[str, Any]) -> str:
    """'exit 0 after 200ms', 'timed out: ended by SIGTERM after 1s', 'killed by SIGKILL after 3s',
    'could not start: …'.

    Used by ``why`` and the claimants' logs alike.
    """
    if outcome.get("error"):
        return f"could not start: {outcome['error']}"
    after = format_duration(outcome["duration_seconds"])
    if outcome["timed_out"]:
        ended = f"exit {outcome['exit_code']}" if outcome["exit_code"] is not None else outcome["signal"]
        return f"timed out: ended by {ended} after {after}"
    if outcome["exit_code"] is not None:
        return f"exit {outcome['exit_code']} after {after}"
    return f"killed by {outcome['signal']} after {after}"
