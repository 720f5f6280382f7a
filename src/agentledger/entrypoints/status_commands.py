"""``agentledger status ID|NAME``: one session on one screen, as ``systemctl status`` shows a unit.

First a header line that says the state (``● fix-147 (e3100b6c52d6) - running``),
then the session's recorded facts (the read model's row), then what is true
*now* of a session not stopped on this host: its supervisor and its process
tree with memory and CPU time, the agent's PID checked against its recorded
start time (a reused PID is never shown as the agent); of a stopped one, what
its process group left running (which ``stop`` ends); and last the lines it
said most recently, from the source ``logs -n N`` reads
(``entrypoints/session_output.py``). Another host's processes cannot be seen
from here, so the screen says so; ``--as-of`` answers from the log as it
stood then, and shows nothing live at all.

Translation only: whether a PID is the session's process is judged in
``domain/liveness.py`` (through ``Machine.probe``); the processes are read by
``infrastructure/process_tree.py``. Heavy modules (psutil, orjson) are
imported inside the handler, so that other commands start fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentledger.domain.durations import format_duration
from agentledger.entrypoints import args as types
from agentledger.entrypoints.args import as_of_option, json_flag

if TYPE_CHECKING:
    from agentledger.application.ports import Machine
    from agentledger.domain.liveness import ProcessIdentity
    from agentledger.entrypoints.cli import Context
    from agentledger.infrastructure.process_tree import ProcessUse

#: How many lines of output ``status`` shows without ``-n`` (as ``systemctl status``).
DEFAULT_LINES = 10
#: At most this many processes of a tree are listed (an agent running a test suite can have hundreds).
MAX_PROCESSES = 30
#: A supervisor starts before its agent: its start may be later only by this much clock noise.
_START_SLACK = 1.0


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("status", "show one session: its state, supervisor, process tree, fuse and last output")
    p.add_argument("session", metavar="ID", help=types.SESSION_HELP)
    as_of_option(p)
    p.add_argument("-n", "--lines", type=types.count, default=DEFAULT_LINES, metavar="N",
                   help=f"show the last N lines of output (or agent messages) at the end (default {DEFAULT_LINES}, "
                        "0: none)")
    json_flag(p)
    p.set_defaults(handler=cmd_status)


# -- what is shown ------------------------------------------------------------------


@dataclass
class Live:
    """What is true now of a session not stopped: on this host, its processes; on another, only where it runs."""

    elsewhere: str | None = None  # the host it runs on, when that is not this one
    liveness: str | None = None  # the agent PID's, as domain/liveness.py judges it
    agent: str = ""  # that, in words
    supervisor: str = ""  # the supervisor, in words
    supervisor_json: dict[str, Any] | None = None
    tree: list[tuple[str, ProcessUse]] = field(default_factory=list)  # (branch drawing, process), drawn order
    hidden: int = 0  # processes past MAX_PROCESSES


@dataclass
class Said:
    """The last lines a session said: its agent's messages, or its captured output (already escaped)."""

    title: str
    lines: list[str]
    records: list[dict[str, Any]]
    empty: str  # what stands in for no lines


def cmd_status(context: Context, args: argparse.Namespace) -> int:
    from agentledger.application.errors import SessionNotFound
    from agentledger.projections.queries import get_session

    db, now = context.read_models(args.as_of)
    try:
        row = get_session(db, context.resolve(args.session, db))
    except SessionNotFound as error:
        if args.as_of is None:
            raise
        raise SessionNotFound(f"{error} as of {args.as_of}: it did not exist yet") from None
    historical = args.as_of is not None  # the log as it stood then: no process or output of now belongs to it
    stopped = row["status"] == "stopped"
    live = None if historical or stopped else _look(context, row)
    left = _leftovers(context, row) if stopped and not historical else None
    said = None if historical or args.lines == 0 else _said(row, args.lines)
    if args.json:
        _write_json(row, now, live, left, said, historical)
    else:
        _print_screen(row, now, live, left, said)
    return 0


def _write_json(row: Any, now: float, live: Live | None, left: list[tuple[str, ProcessUse]] | None,
                said: Said | None, historical: bool) -> None:
    """The session object, unchanged, and what is true now under new keys (null where nothing was looked at)."""
    from agentledger.entrypoints.render import write_json
    from agentledger.projections.queries import session_json

    looked = live if live is not None and live.elsewhere is None else None
    data = session_json(row, now)
    data["liveness"] = looked.liveness if looked else None
    data["supervisor"] = looked.supervisor_json if looked else None
    data["processes"] = [_process_json(p) for _, p in looked.tree] if looked else None
    data["leftovers"] = [_process_json(p) for _, p in left] if left is not None else None
    data["output"] = None if historical else (said.records if said else [])
    write_json(data)


def _process_json(process: ProcessUse) -> dict[str, Any]:
    return {"pid": process.pid, "ppid": process.ppid, "rss": process.rss, "cpu_seconds": process.cpu_seconds,
            "cmdline": list(process.cmdline)}


def _print_screen(row: Any, now: float, live: Live | None, left: list[tuple[str, ProcessUse]] | None,
                  said: Said | None) -> None:
    from agentledger.entrypoints.render import key_values

    print(_header(row, now))
    pairs = session_pairs(row, now)
    if live is not None:
        at = next(i for i, (key, _) in enumerate(pairs) if key == "PID") + 1
        pairs[at:at] = [("Process", live.agent)] + ([("Supervisor", live.supervisor)] if live.supervisor else [])
    key_values(pairs)
    if live is not None and live.tree:
        print("\nProcess tree:")
        _print_tree(live, now)
    if left:
        count = f"{len(left)} process{'es' if len(left) > 1 else ''}"
        print(f"\nLeft running by its process group: {count} (agentledger stop {row['id'][:12]} ends them):")
        _print_tree(Live(tree=left[:MAX_PROCESSES], hidden=max(0, len(left) - MAX_PROCESSES)), now)
    if said is not None:
        _print_said(said)


# -- the header and the recorded facts -------------------------------------------------


def _header(row: Any, now: float) -> str:
    """``● NAME (ID12) - STATUS``, the outcome after a stopped one's: the state, before any detail."""
    from agentledger.entrypoints.render import escape
    from agentledger.projections.queries import current_status

    status = current_status(row, now)
    outcome = outcome_text(row)
    who = f"{row['name']} ({row['id'][:12]})" if row["name"] else row["id"][:12]
    return f"{_bullet(status, row)} {escape(who)} - {status}" + (f" ({outcome})" if outcome else "")


#: The bullet's colour on a terminal: green watched, yellow in between, red failed or unknowable.
_COLOURS = {"running": "32", "unwatched": "33", "stopping": "33", "host-silent": "31"}


def _bullet(status: str, row: Any) -> str:
    """A plain ``●``; coloured only on a terminal (and not under ``NO_COLOR``), so pipes and tests see text."""
    import os

    if not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
        return "●"
    failed = status == "stopped" and (row["exit_code"] not in (0, None) or row["stop_reason"] != "exited")
    colour = "31" if failed else _COLOURS.get(status)
    return f"\x1b[{colour}m●\x1b[0m" if colour else "●"


def session_pairs(row: Any, now: float) -> list[tuple[str, Any]]:
    """The recorded facts, as ``status`` has always listed them."""
    import orjson

    from agentledger.entrypoints.render import relative
    from agentledger.projections.queries import current_status, iso

    pairs = [
        ("ID", row["id"]),
        ("Name", row["name"]),
        ("Status", current_status(row, now)),
        ("Adapter", row["adapter"]),
        ("Command", " ".join(orjson.loads(row["argv"]))),
        ("Cwd", row["cwd"]),
        ("Host", row["host"]),
        ("PID", row["pid"]),
        ("Started", f"{iso(row['started_at'])} ({relative(row['started_at'], now)})"),
        ("Fuse", fuse_text(row, now)),
        ("Timeout", f"{iso(row['timeout_at'])} ({relative(row['timeout_at'], now)})" if row["timeout_at"] else None),
        ("Last heartbeat", relative(row["last_heartbeat_at"], now) + f" ({row['heartbeat_count']} in all)"),
    ]
    if row["group_name"]:
        pairs.insert(2, ("Group", row["group_name"]))
    if row["source"] == "adopted":
        pairs.insert(pairs.index(("Host", row["host"])), ("Source", "adopted (no supervisor)"))
        pairs.insert(pairs.index(("Fuse", fuse_text(row, now))),
                     ("Process start", f"{iso(row['pid_start_time'])} ({relative(row['pid_start_time'], now)})"))
    if row["resumed_from"]:
        pairs.insert(pairs.index(("Cwd", row["cwd"])), ("Resumed from", row["resumed_from"]))
    pairs += _agent_pairs(row, now)
    if row["status"] == "stopped":
        pairs += _stopped_pairs(row, now)
    pairs += [("Log", row["log_path"]), ("Version", row["version"])]
    return pairs


def _stopped_pairs(row: Any, now: float) -> list[tuple[str, Any]]:
    from agentledger.entrypoints.render import relative
    from agentledger.projections.listing import ran_for
    from agentledger.projections.queries import iso

    pairs = [
        ("Stopped", f"{iso(row['stopped_at'])} ({relative(row['stopped_at'], now)})"),
        ("Exited", _exited_text(row, now)),
        ("Reason", row["stop_reason"]),
        ("Exit code", row["exit_code"]),
        ("Signal", row["signal"]),
        ("Stopped by", row["stopped_by"]),
        ("Note", row["stop_note"]),
        ("Ran for", format_duration(ran_for(row, now))),
    ]
    return [(key, value) for key, value in pairs if key != "Exited" or value is not None]


def fuse_text(r: Any, now: float) -> str:
    """'live, ends in 40s', 'lapsed 5s ago', 'expired 5s ago', 'cancelled', 'none' (also ``list``'s FUSE)."""
    from agentledger.entrypoints.render import relative

    expires = r["fuse_expires_at"]
    if r["fuse_state"] == "expired":
        return f"expired {relative(expires, now)}"
    if r["fuse_state"] != "set":
        return r["fuse_state"]
    return f"live, ends {relative(expires, now)}" if expires > now else f"lapsed {relative(expires, now)}"


def outcome_text(r: Any) -> str | None:
    """'exited 7', 'user SIGTERM', 'spawn-failed'; None while not stopped (also ``list``'s EXIT)."""
    if r["status"] != "stopped":
        return None
    details = [str(r["exit_code"])] if r["exit_code"] is not None else []
    details += [r["signal"]] if r["signal"] else []
    return " ".join([r["stop_reason"], *details])


def _exited_text(row: Any, now: float) -> str | None:
    """When the process ended, if that is not when its stop was recorded (the store refused writes meanwhile)."""
    from agentledger.entrypoints.render import relative
    from agentledger.projections.queries import iso

    exited = row["exited_at"]
    if exited is None or abs(row["stopped_at"] - exited) < 1.0:
        return None
    late = format_duration(row["stopped_at"] - exited)
    return f"{iso(exited)} ({relative(exited, now)}; recorded {late} later)"


def _agent_pairs(row: Any, now: float) -> list[tuple[str, Any]]:
    """What the agent adapter read in the agent's own storage; nothing for a plain command."""
    from agentledger.entrypoints.render import relative
    from agentledger.projections.queries import iso

    pairs: list[tuple[str, Any]] = []
    if row["native_session_id"]:
        how = f" (found: {row['native_id_source']})" if row["native_id_source"] else ""
        pairs.append(("Agent session", f"{row['native_session_id']}{how}"))
    if row["agent_title"]:
        pairs.append(("Title", row["agent_title"]))
    if row["agent_model"]:
        pairs.append(("Agent model", row["agent_model"]))
    resumed = row["resumed_from"] is not None
    if row["tokens_in"] is not None or row["tokens_out"] is not None:
        pairs.append(("Tokens", f"{row['tokens_in'] or 0} in, {row['tokens_out'] or 0} out"
                                + (" (this run)" if resumed else "")))
    if row["cost"] is not None:
        pairs.append(("Cost", f"${row['cost']:.4f}" + (" (this run)" if resumed else "")))
    if resumed and row["conversation_tokens_in"] is not None:
        cost = f", ${row['conversation_cost']:.4f}" if row["conversation_cost"] is not None else ""
        pairs.append(("Conversation", f"{row['conversation_tokens_in'] or 0} in, "
                                      f"{row['conversation_tokens_out'] or 0} out{cost} so far"))
    if row["last_activity_at"] is not None:
        pairs.append(("Last activity", f"{iso(row['last_activity_at'])} ({relative(row['last_activity_at'], now)})"))
    return pairs


# -- the processes, now -------------------------------------------------------------


def _look(context: Context, row: Any) -> Live:
    """The supervisor and the process tree of a session not stopped, if it runs here; else where it runs."""
    machine = context.machine
    if row["host"] != machine.host:
        return Live(elsewhere=row["host"], agent=f"on host {row['host']}: process details only on that host")
    from agentledger.domain.liveness import Liveness
    from agentledger.infrastructure import process_tree

    probe = machine.probe(_identity(row))
    state, supervisor = _supervisor(machine, row)
    roots = [supervisor] if supervisor is not None else []
    others = process_tree.descendants(supervisor.pid) if supervisor is not None else []
    if probe.liveness is Liveness.ALIVE and row["pid"] not in {p.pid for p in others}:
        agent = process_tree.look(row["pid"])
        if agent is not None:
            roots.append(agent)
            others += process_tree.descendants(agent.pid)
    drawn = draw_tree(roots, others)
    return Live(
        liveness=probe.liveness.value, agent=_agent_text(row, probe, drawn),
        supervisor=_supervisor_text(row, state, supervisor), supervisor_json=_supervisor_json(row, state, supervisor),
        tree=drawn[:MAX_PROCESSES], hidden=max(0, len(drawn) - MAX_PROCESSES),
    )


def _leftovers(context: Context, row: Any) -> list[tuple[str, ProcessUse]] | None:
    """What a stopped session's process group left running here (its agent exited, a child it started in the
    background did not), drawn as trees; None where nothing can be looked at (another host or boot, no PID).

    The group's number is the agent's PID: only while that PID is not another process's (``Machine``'s
    ``session_group_exists``, as ``stop`` asks before each signal) are its members the session's.
    """
    from agentledger.infrastructure.host import boot_id, host_name
    from agentledger.infrastructure.process_groups import group_exists

    if row["pid"] is None or row["host"] != host_name() or row["boot_id"] != boot_id():
        return None
    # Almost always no group is left; asking that first spares loading psutil (the Machine) for the answer.
    if not group_exists(row["pid"]) or not context.machine.session_group_exists(_identity(row)):
        return []
    from agentledger.infrastructure import process_tree

    members = sorted(process_tree.group_members(row["pid"]), key=lambda p: (p.started_at, p.pid))
    inside = {p.pid for p in members}
    return draw_tree([p for p in members if p.ppid not in inside], [p for p in members if p.ppid in inside])


def _identity(row: Any) -> ProcessIdentity:
    """The session's process as recorded (``domain/liveness.py``'s ``ProcessIdentity``)."""
    from agentledger.domain.liveness import ProcessIdentity

    return ProcessIdentity(row["pid"], row["pid_start_time"], row["boot_time"], row["host"], row["boot_id"])


def _supervisor(machine: Machine, row: Any) -> tuple[str, ProcessUse | None]:
    """The supervisor's state (alive, gone, reused, ended, rebooted, none) and, if alive, the process.

    Its PID is the session's supervisor only if its command line names the
    session (``Machine.supervisor_alive``, as the reconciler asks) and it
    started before the agent it started: a PID can have been reused.
    """
    from agentledger.infrastructure import process_tree

    pid = row["supervisor_pid"]
    if pid is None:
        return "none", None
    if row["boot_id"] != machine.boot_id:
        return "rebooted", None
    found = process_tree.look(pid)
    if found is None:
        return "gone", None
    if found.zombie:
        return "ended", None
    agent_started = row["pid_start_time"]
    started_first = agent_started is None or found.started_at <= agent_started + _START_SLACK
    return ("alive", found) if started_first and machine.supervisor_alive(pid, row["id"]) else ("reused", None)


def _supervisor_json(row: Any, state: str, supervisor: ProcessUse | None) -> dict[str, Any] | None:
    if row["supervisor_pid"] is None:
        return None
    return {"pid": row["supervisor_pid"], "state": state, "rss": supervisor.rss if supervisor else None,
            "cpu_seconds": supervisor.cpu_seconds if supervisor else None}


def _supervisor_text(row: Any, state: str, supervisor: ProcessUse | None) -> str:
    pid = row["supervisor_pid"]
    if state == "alive" and supervisor is not None:
        return (f"PID {pid}, alive{_STOPPED_WORDS if supervisor.stopped else ''}: {memory(supervisor.rss)} memory, "
                f"CPU {cpu_time(supervisor.cpu_seconds)}")
    return {
        "none": "none: adopted, nothing supervises it" if row["source"] == "adopted" else "none recorded",
        "rebooted": f"PID {pid} is gone: this host has rebooted since",
        "gone": f"PID {pid} is gone",
        "ended": f"PID {pid} has ended (not yet reaped)",
        "reused": f"PID {pid} is now another process",
    }[state]


#: What a stopped process (SIGSTOP, Ctrl-Z) is said to be: alive, doing nothing (``stop`` sends SIGCONT).
_STOPPED_WORDS = " but stopped (SIGSTOP or a tracer: it does nothing until it gets SIGCONT)"


def _agent_text(row: Any, probe: Any, drawn: list[tuple[str, ProcessUse]]) -> str:
    """The agent PID's state in words; alive, with its tree's size and memory."""
    from agentledger.domain.liveness import Liveness

    pid = row["pid"]
    if probe.liveness is Liveness.ALIVE:
        mine = _subtree(pid, [p for _, p in drawn])
        total = sum(p.rss or 0 for p in mine)
        stopped = _STOPPED_WORDS if any(p.pid == pid and p.stopped for p in mine) else ""
        return f"alive{stopped}: {len(mine)} process{'es' if len(mine) != 1 else ''}, {memory(total)} memory"
    return {
        Liveness.NO_SUCH_PROCESS: f"PID {pid} is gone",
        Liveness.PID_REUSED: f"PID {pid} is now another process",
        Liveness.ZOMBIE: f"PID {pid} has ended (not yet reaped)",
        Liveness.REBOOTED: f"PID {pid} is gone: this host has rebooted since",
        Liveness.NO_PID: "no process was started",
    }.get(probe.liveness, f"PID {pid} cannot be checked ({probe.error})")


def _subtree(pid: int, processes: list[ProcessUse]) -> list[ProcessUse]:
    """``pid``'s process and every one under it, of ``processes``."""
    inside = {pid}
    for process in processes:  # drawn order: a parent always before its children
        if process.ppid in inside:
            inside.add(process.pid)
    return [p for p in processes if p.pid in inside]


def draw_tree(roots: list[ProcessUse], others: list[ProcessUse]) -> list[tuple[str, ProcessUse]]:
    """The processes in tree order, each with its branch drawing (``├─ ``, ``└─ ``), children by start time.

    A process whose parent is not among them (it ended while they were read)
    hangs from nothing: it is left out rather than drawn misleadingly.
    """
    children: dict[int, list[ProcessUse]] = {}
    seen = {p.pid for p in roots}
    for process in others:
        if process.pid not in seen:
            seen.add(process.pid)
            children.setdefault(process.ppid, []).append(process)
    for kids in children.values():
        kids.sort(key=lambda p: (p.started_at, p.pid))
    drawn: list[tuple[str, ProcessUse]] = []
    stack: list[tuple[ProcessUse, str, bool | None]] = [(root, "", None) for root in reversed(roots)]
    done: set[int] = set()
    while stack:
        process, lead, last = stack.pop()
        if process.pid in done:  # a PID reused while the table was read cannot make a loop
            continue
        done.add(process.pid)
        drawn.append(("" if last is None else lead + ("└─ " if last else "├─ "), process))
        below = "" if last is None else lead + ("   " if last else "│  ")
        kids = children.get(process.pid, [])
        stack += [(kid, below, i == len(kids) - 1) for i, kid in reversed(list(enumerate(kids)))]
    return drawn


def _print_tree(live: Live, now: float) -> None:
    """PID, RSS, CPU time, %CPU (of its life so far, as ``ps`` gives it) and the command, cut to the width."""
    from agentledger.entrypoints.render import table

    rows = [(str(p.pid), memory(p.rss), cpu_time(p.cpu_seconds), _cpu_share(p, now), branch + _command(p))
            for branch, p in live.tree]
    if live.hidden:
        rows.append(("", "", "", "", f"… and {live.hidden} more"))
    headers = ["PID", "RSS", "CPU", "%CPU"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    table([h.rjust(w) for h, w in zip(headers, widths)] + ["COMMAND"],
          [tuple(v.rjust(w) for v, w in zip(r, widths)) + (r[4],) for r in rows], flexible=("COMMAND",))


def _command(process: ProcessUse) -> str:
    if process.cmdline:
        return " ".join(process.cmdline)
    return f"[{process.name}]" + (" <defunct>" if process.zombie else "")


def _cpu_share(process: ProcessUse, now: float) -> str:
    if process.cpu_seconds is None:
        return "-"
    return f"{100 * process.cpu_seconds / max(now - process.started_at, 0.01):.1f}"


def memory(size: int | None) -> str:
    """Bytes as ``systemctl`` shows memory: ``812K``, ``12.3M``, ``1.5G`` (powers of 1024); ``-`` unknown."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "K", "M", "G"):
        if value < 1024:
            return f"{value:.0f}{unit}" if unit in ("B", "K") else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}T"


def cpu_time(seconds: float | None) -> str:
    """CPU seconds as ``top``'s TIME+: ``0:01.23`` (minutes:seconds.hundredths); ``-`` unknown."""
    if seconds is None:
        return "-"
    hundredths = round(seconds * 100)
    minutes, rest = divmod(hundredths, 6000)
    return f"{minutes}:{rest // 100:02d}.{rest % 100:02d}"


# -- the last lines -------------------------------------------------------------------


def _said(row: Any, count: int) -> Said:
    """The last ``count`` messages of an agent (``logs -n N``'s source), else lines of its captured output."""
    from agentledger.entrypoints import session_output

    empty = "(no output)" if row["status"] == "stopped" else "(no output yet)"
    found, why_not = session_output.agent_messages(row, count)
    if found is not None:
        from agentledger.entrypoints.render import message_lines

        return Said(f"Last {_plural(count, 'message')}:", list(message_lines(found)),
                    session_output.message_records(found), empty)
    title = f"Last {_plural(count, 'line')} of output" + (f" ({why_not})" if why_not else "") + ":"
    from agentledger.application.errors import LedgerError

    try:
        handle = session_output.open_output(row)
    except LedgerError:
        return Said(title, [], [], "(no output captured)")
    with handle:
        lines = session_output.last_lines(handle, count)
    return Said(title, [_escaped(line) for line in lines], [session_output.output_record(line) for line in lines],
                empty)


def _escaped(line: bytes) -> str:
    """One captured line for the terminal: its end of line dropped, every control character shown escaped."""
    from agentledger.entrypoints.render import OutputEscaper

    return OutputEscaper().feed(line.rstrip(b"\r\n"), final=True).decode()


def _plural(count: int, noun: str) -> str:
    return f"{noun}" if count == 1 else f"{count} {noun}s"


def _print_said(said: Said) -> None:
    """The title, then the lines, each cut to the terminal's width (if there is one): one screen, not a scroll."""
    from agentledger.entrypoints.render import terminal_width

    width = terminal_width(sys.stdout)
    lines = said.lines or [said.empty]
    if width is not None:
        lines = [_cut(line.expandtabs(), width) for line in lines]
    sys.stdout.write(f"\n{said.title}\n" + "".join(f"{line}\n" for line in lines))


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"
