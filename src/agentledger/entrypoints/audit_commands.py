"""``agentledger why``, ``replay`` and ``verify``: the audit of what the log says happened.

Translation only: the facts come from :mod:`agentledger.application.explaining`,
:mod:`~agentledger.application.replaying` and :mod:`~agentledger.application.verifying`;
here they become text or JSON. Heavy modules are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agentledger.domain.durations import format_duration
from agentledger.entrypoints.args import SESSION_HELP, json_flag
from agentledger.entrypoints.render import counted

if TYPE_CHECKING:
    from agentledger.application.ports import Store
    from agentledger.application.replaying import Verdict
    from agentledger.application.verifying import VerifyReport
    from agentledger.entrypoints.cli import Context

#: ``replay`` and ``verify`` exit with this when they find a disagreement or a violation.
FOUND_PROBLEMS = 1


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("why", "why a session is stopped (or what keeps it running), with the evidence")
    p.add_argument("session", metavar="ID", help=SESSION_HELP)
    json_flag(p)
    p.set_defaults(handler=cmd_why)

    p = command("replay", "re-run the stop rule on each recorded reconciler decision and compare")
    p.add_argument("session", metavar="ID", nargs="?", default=None,
                   help="only this session: its id, a unique prefix of its id, or its name (default: the whole log)")
    json_flag(p)
    p.set_defaults(handler=cmd_replay)

    p = command("verify", "replay the whole log and check its invariants and the read models")
    json_flag(p)
    p.set_defaults(handler=cmd_verify)


# -- why -------------------------------------------------------------------------


def cmd_why(context: Context, args: argparse.Namespace) -> int:
    from datetime import timezone

    from agentledger.application.explaining import explain
    from agentledger.entrypoints.render import escape, key_values, write_json

    facts = explain(context.store, context.resolve(args.session), datetime.now(timezone.utc), context.machine)
    facts.update(spooled(facts["session_id"]))
    if args.json:
        write_json(facts)
        return 0
    print(escape(f"{facts['session_id'][:12]} is {facts['status']}. {facts['headline']}"))
    print()
    key_values(why_pairs(facts))
    return 0


def why_pairs(facts: dict[str, Any]) -> list[tuple[str, Any]]:
    """The evidence under ``why``'s headline, as (label, text) pairs (the console shows the same)."""
    pairs = [*(_stopped_pairs(facts) if facts["status"] == "stopped" else _running_pairs(facts)),
             *_spool_pairs(facts), *_lineage_pairs(facts), *_hook_pairs(facts["on_stop"]),
             *_workspace_pairs(facts.get("workspace")),
             *[("Lock", f"{_time(fact['at'])}: {fact['summary']}") for fact in facts["locks"]]]
    return [(key, value) for key, value in pairs if key != "Clock" or value is not None]


def spooled(session_id: str) -> dict[str, Any]:
    """What this host's spool holds for the session: its supervisor's note that the store refuses its
    writes (since when, why), and an exit it saw but could not append yet."""
    from agentledger.infrastructure.config import home_dir
    from agentledger.infrastructure.spool import Spool

    spool = Spool(home_dir())
    return {"supervisor_waiting": spool.waiting_for(session_id), "spooled_exit": spool.get(session_id)}


def _spool_pairs(facts: dict[str, Any]) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    waiting, spooled = facts["supervisor_waiting"], facts["spooled_exit"]
    if waiting:
        pairs.append(("Store", f"refuses the supervisor's writes since {waiting.get('waiting_since')} "
                                    f"({waiting.get('fault')}: {waiting.get('error')}); it keeps the agent watched "
                                    "and records what it sees once the store accepts writes"))
    if spooled:
        status = f"signal {spooled['signal_name']}" if spooled.get("signal_name") else f"exit code {spooled['returncode']}"
        pairs.append(("Spooled exit", f"{status} at {spooled.get('observed_at')}, seen by its supervisor; not in "
                                      "the log yet (the store refuses writes): recorded as soon as it accepts them"))
    return pairs


def _lineage_pairs(facts: dict[str, Any]) -> list[tuple[str, Any]]:
    """Where the session came from: adopted rather than launched, and the resume chain either side."""
    pairs: list[tuple[str, Any]] = []
    if facts["source"] == "adopted":
        pairs.append(("Source", "adopted: started elsewhere, no supervisor (its exit status cannot be seen)"))
    if facts["resumed_from"]:
        pairs.append(("Resumed from", facts["resumed_from"]))
    if facts["resumed_by"]:
        pairs.append(("Resumed by", ", ".join(facts["resumed_by"])))
    return pairs


def _workspace_pairs(workspace: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """A worktree session's worktree and where its work went (merged, removed, still there)."""
    if workspace is None:
        return []
    pairs: list[tuple[str, Any]] = [
        ("Worktree", f"{workspace['worktree']} on branch {workspace['branch']}, from "
                     f"{workspace.get('base_ref') or 'a detached HEAD'} ({workspace['base_commit'][:12]})"),
        ("Its work", workspace["summary"])]
    check = workspace.get("check")
    if check:
        pairs.append(("Check", f"`{check['command']}` {'passed' if check['passed'] else 'failed'} "
                               f"(exit {check['exit_code']})"))
    return pairs


def _hook_pairs(hook: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """The on-stop hook's outcome and the last line of its output, if the session has one."""
    if hook is None:
        return []
    from agentledger.entrypoints.render import shorten

    pairs: list[tuple[str, Any]] = [("On-stop hook", hook["summary"].removeprefix("on-stop hook "))]
    lines = ((hook["outcome"] or {}).get("output_tail") or "").strip().splitlines()
    if lines:
        pairs.append(("Hook output", f"{shorten(lines[-1], 100)} (last line; 'why --json' has the last 2 KB)"))
    return pairs


def _stopped_pairs(facts: dict[str, Any]) -> list[tuple[str, Any]]:
    stop = facts["stop"]
    who = stop["decided_by"]
    decided_on = stop["decided_on"]
    return [
        ("Stopped", f"{_time(stop['at'])}, after {format_duration(stop['ran_for'])}"),
        ("Reason", stop["reason"]),
        ("Decided by", f"{stop['decider']} ({who.get('component')} on {who.get('host')}, pid {who.get('pid')}, "
                       f"user {who.get('user')})"),
        ("Exit", _exit(stop)),
        ("Note", stop["note"]),
        ("Fuse then", _fuse(stop["fuse"])),
        ("Last heartbeat", _heartbeat(stop["last_heartbeat_at"], stop["last_heartbeat_age"], "before the stop")),
        ("PID probe", _probe(stop["pid_probe"])),
        ("Stop requests", _requests(stop["stop_requests"])),
        ("Decided on", f"version {decided_on['version']} (log position {decided_on['position']}) "
                       f"at {_time(decided_on['at'])}"),
        ("Recorded as", f"version {stop['version']} (log position {stop['position']})"),
        ("Command", " ".join(facts["command"])),
        ("Host / PID", _host_pid(facts)),
    ]


def _running_pairs(facts: dict[str, Any]) -> list[tuple[str, Any]]:
    running = facts["running"]
    return [
        ("Fuse", _fuse(running["fuse"])),
        ("Last heartbeat", _heartbeat(running["last_heartbeat_at"], running["last_heartbeat_age"], "ago")),
        ("Clock", _skew(running["writer_clock_offset"])),
        ("PID probe", _probe(running["pid_probe"]) if running["pid_probe"] else f"not probed: host {facts['host']}"),
        ("Supervisor", _supervisor(running)),
        ("Timeout", _time(running["deadline"]) if running["deadline"] else None),
        ("Stop requests", _requests(running["stop_requests"])),
        ("Started", _time(facts["started_at"])),
        ("Version", f"{facts['version']} (log position {facts['position']})"),
        ("Command", " ".join(facts["command"])),
        ("Host / PID", _host_pid(facts)),
    ]


def _supervisor(running: dict[str, Any]) -> str | None:
    """Its supervisor's PID, and whether it still runs where that could be looked at."""
    pid, alive = running["supervisor_pid"], running["supervisor_alive"]
    if pid is None:
        return None
    if alive is None:
        return f"PID {pid} (on its host, not looked at from here)"
    return f"PID {pid}, running" if alive else f"PID {pid} is gone (or no longer this session's supervisor)"


def _skew(offset: float | None) -> str | None:
    """What a sender's skewed clock means for the session, if the last heartbeat or fuse came from one."""
    if offset is None:
        return None
    way = "ahead of" if offset > 0 else "behind"
    return (f"the last heartbeat's sender's clock was {format_duration(abs(offset))} {way} the store's: the fuse is "
            "measured on the store's clock (its own time stamps are the sender's)")


def _time(at: Any) -> str | None:
    return at.isoformat(timespec="milliseconds") if isinstance(at, datetime) else at


def _host_pid(facts: dict[str, Any]) -> str:
    return f"{facts['host']} / {facts['pid'] if facts['pid'] is not None else 'none (the process never started)'}"


def _exit(stop: dict[str, Any]) -> str:
    if stop["reason"] in ("spawn-failed", "setup-failed"):
        return "none: the process never started"
    if stop["exit_code"] is not None:
        return f"exit code {stop['exit_code']}"
    return f"signal {stop['signal']}" if stop["signal"] else "unknown (no supervisor saw the process end)"


def _fuse(fuse: dict[str, Any]) -> str:
    if fuse["state"] == "none":
        return "none (never set)"
    ttl = f", TTL {format_duration(fuse['ttl'])}" if fuse["ttl"] else ""
    expiry = f", expires {_time(fuse['expires_at'])}" if fuse["expires_at"] else ""
    return f"{fuse['state']}, {'live' if fuse['live'] else 'not live'}{expiry}{ttl}"


def _heartbeat(at: Any, age: float | None, suffix: str) -> str:
    return "none" if at is None else f"{_time(at)} ({format_duration(age or 0)} {suffix})"


def _probe(probe: dict[str, Any] | None) -> str | None:
    if not probe:
        return None
    return (f"pid {probe.get('pid')}: {probe.get('detail')}; started {_epoch(probe.get('expected_start_time'))} "
            f"as recorded, found {_epoch(probe.get('found_start_time'))}; "
            f"looked on {probe.get('host')}, boot {str(probe.get('boot_id'))[:8]}")


def _epoch(seconds: float | None) -> str:
    from datetime import timezone

    if seconds is None:
        return "none"
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")


def _requests(requests: list[dict[str, Any]]) -> str | None:
    if not requests:
        return None
    return "; ".join(f"{r.get('signal')} by {r.get('requested_by')} ({r.get('cause', 'user')}) at {_time(r.get('at'))}"
                     for r in requests)


# -- replay ----------------------------------------------------------------------


def cmd_replay(context: Context, args: argparse.Namespace) -> int:

    from agentledger.entrypoints.render import table, write_json_lines

    verdicts = replay_verdicts(context.store, context.resolve(args.session) if args.session else None)
    disagreements = [v for v in verdicts if not v.agrees]
    if args.json:
        write_json_lines(v.as_json() for v in verdicts)
    else:
        table(["POS", "SESSION", "VER", "RECORDED", "REPLAYED", "VERDICT"],
              [(v.position, v.session_id[:12], v.version, v.recorded, v.replayed,
                "agrees" if v.agrees else "DIFFERS") for v in verdicts])
        for v in disagreements:
            print(f"\nposition {v.position}, session {v.session_id[:12]} v{v.version}:")
            for difference in v.differences:
                print(f"  - {difference}")
        print(f"\n{replay_summary(verdicts)}")
    return FOUND_PROBLEMS if disagreements else 0


def replay_verdicts(store: Store, session_id: str | None) -> list[Verdict]:
    """Each recorded reconciler decision re-run: one session's (its full id), or the whole log's."""
    from uuid import UUID

    from agentledger.application.replaying import replay_log, replay_session

    if session_id is None:
        return replay_log(store)
    return replay_session(store.ledger, UUID(session_id), store.event_positions(session_id))


def replay_summary(verdicts: list[Verdict]) -> str:
    """'3 reconciler decisions replayed: 2 agree, 1 differ' (the console says it too)."""
    differ = sum(1 for v in verdicts if not v.agrees)
    return f"{counted(len(verdicts), 'reconciler decision')} replayed: {len(verdicts) - differ} agree, {differ} differ"


# -- verify ----------------------------------------------------------------------


def cmd_verify(context: Context, args: argparse.Namespace) -> int:
    from agentledger.application.verifying import verify
    from agentledger.entrypoints.render import write_json
    from agentledger.infrastructure.store_identity import store_id_of

    context.fresh_db()  # caught up, or as far as a full or read-only store lets it (and one line says so)
    report = verify(context.store, catch_up=False)  # opening it checked its identity: this home's store
    store_id = store_id_of(context.store)
    if args.json:
        write_json({**report.as_json(), "store_id": store_id})
        return 0 if report.ok else FOUND_PROBLEMS
    out = sys.stdout
    out.write(f"{verify_counts(report)}; store {store_id or '(no identity)'}, the one this home has used\n")
    for v in report.violations:
        where = f"position {v.position}, session {v.session_id[:12]} v{v.version}: " if v.session_id else ""
        out.write(f"VIOLATION {v.kind}: {where}{v.detail}\n")
    out.write("ok: every check passed\n" if report.ok else f"{counted(len(report.violations), 'violation')}\n")
    return 0 if report.ok else FOUND_PROBLEMS


def verify_counts(report: VerifyReport) -> str:
    """What ``verify`` went through: events, sessions, stops, and where it compared the read models."""
    return (f"{counted(report.events, 'event')}, {counted(report.sessions, 'session')} "
            f"({counted(report.aggregates, 'aggregate')}), {counted(report.stops, 'stop')} "
            f"({report.reconciler_stops} by a reconciler); read models compared at position {report.read_models_at}")
