"""What ``daemon status`` reports, gathered and worded once: for the command and the console's daemon page.

Its own module so that the console (which ``daemon run`` serves) and the
daemon commands can both use it without importing each other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentledger.domain.durations import format_duration
from agentledger.entrypoints.render import counted

if TYPE_CHECKING:
    from agentledger.application.ports import Store


def daemon_report(store: Callable[[], Store]) -> tuple[dict[str, Any], str | None]:
    """What ``daemon status --json`` writes, gathered once for the command and the console; and the home of
    a daemon found through the store's lock when it is not this home (its status file and log are there,
    so the text names that home rather than our log; the JSON has never said it).

    Needs only a way to the store (not a ``Context``): the console gives its own. A store that is away
    (opening it, or asking it) is reported (``store_unreachable``), not raised, so the status still says
    what the daemon last knew.
    """
    from datetime import datetime

    from agentledger.bootstrap import daemon_control

    control = daemon_control()
    files, holder = control.files, control.running()
    status = files.read_status() if holder else None
    if status is not None and holder is not None and status.get("pid") != holder["pid"]:
        status = None  # left by an earlier daemon, not yet rewritten by this one
    holding, outage = _guard_state(store)
    started = datetime.fromisoformat(holder["started_at"]) if holder else None
    report = {
        "running": holder is not None,
        "pid": holder["pid"] if holder else None,
        "uptime_seconds": time.time() - started.timestamp() if started else None,
        "log": str(files.log_path),
        "daemon": status,
        "guard": holding,
        "store_unreachable": outage,
        **_spool_state(),
    }
    elsewhere = None if holder is None or holder.get("home") == str(files.home) else (
        holder.get("home") or "another home's daemon (its log and pass status are there)")
    return report, elsewhere


def _guard_state(store: Callable[[], Store]) -> tuple[dict[str, Any] | None, str | None]:
    """This host's mass-stop guard if it holds stops, and why the store could not be asked (None: it could)."""
    from agentledger.application.errors import StoreError
    from agentledger.application.reconciling import load_guard
    from agentledger.infrastructure.host import host_name
    from agentledger.infrastructure.store_faults import is_connection_error

    try:
        guard = load_guard(store().ledger, host_name())
    except Exception as error:  # the store is away: say so, and say what the daemon last knew
        if not (isinstance(error, StoreError) or is_connection_error(error)):
            raise
        return None, str(error)
    if guard is None or not guard.held:
        return None, None
    return {"held": guard.held, "since": guard.tripped_at, "would_stop": guard.would_stop,
            "not_stopped": guard.not_stopped}, None


def daemon_pairs(report: dict[str, Any], now: float, *, store_url: str,
                 elsewhere: str | None) -> list[tuple[str, Any]]:
    """:func:`daemon_report`'s report as (label, text) pairs: ``daemon status``'s lines, which the console
    shows as they are (one wording of each fact, whoever reads it). The command prints them only when a
    daemon runs; the console also when none does (then the guard, the spool and where the log would be)."""
    outage = report["store_unreachable"]
    pairs: list[tuple[str, Any]] = [
        ("Daemon", f"running, pid {report['pid']}, up {format_duration(report['uptime_seconds'] or 0.0)}"
                   if report["running"] else "not running"),
        ("Store", store_url + (f" (UNREACHABLE now: {outage})" if outage else "")),
    ]
    if report["daemon"] is not None:  # the status file of the daemon running now
        pairs += _pass_pairs(report["daemon"], now)
    pairs.append(("Mass-stop guard", _guard_text(report["guard"])))
    pairs += _spool_pairs(report, now)
    pairs.append(("Home", elsewhere) if elsewhere else ("Log", report["log"]))
    return pairs


def _pass_pairs(status: dict[str, Any], now: float) -> list[tuple[str, Any]]:
    """What the daemon's status file says: its interval, metrics, last pass, passes, sessions and clock."""
    from agentledger.entrypoints.render import relative

    last = status.get("last_pass") or {}
    pairs: list[tuple[str, Any]] = [("Interval", format_duration(status["interval_seconds"]))]
    metrics = status.get("metrics")
    if metrics is not None:
        pairs.append(("Metrics", "off" if metrics["address"] is None else
                      f"http://{metrics['address']}/metrics and /healthz" if metrics["serving"] else
                      f"NOT SERVED: {metrics['error']}"))
    console = status.get("console")
    if console is not None and console["address"] is not None:  # off by default: said only when asked for
        pairs.append(("Console", f"http://{console['address']}/ (read-only)" if console["serving"] else
                      f"NOT SERVED: {console['error']}"))
    if last.get("error"):
        pairs.append(("Last pass", f"{relative(_epoch(last['at']), now)}: FAILED: {last['error']}"))
    elif last:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(last["counts"].items())) or "no sessions"
        pairs.append(("Last pass", f"{relative(_epoch(last['at']), now)}, took {last['duration_ms']:.1f}ms: {counts}"))
    pairs += [("Passes", status["passes"]), ("Watching", f"{counted(status['sessions_watched'], 'session')} on this host")]
    skew = status.get("clock_offset") or 0.0
    if abs(skew) > 1.5:
        pairs.append(("Clock", f"this daemon's clock is {format_duration(abs(skew))} "
                               f"{'ahead of' if skew > 0 else 'behind'} the store's: it judges on the store's"))
    return pairs


def _guard_text(holding: dict[str, Any] | None) -> str:
    """The mass-stop guard in words: clear, or the stops it holds and how they go ahead."""
    if not holding:
        return "clear"
    return ("holding {} stops since {} (a pass would have stopped {} of {}); the next pass confirms them, or "
            "'agentledger reconcile --confirm'".format(len(holding["held"]), holding["since"],
                                                        holding["would_stop"], holding["not_stopped"]))


def _spool_state() -> dict[str, Any]:
    """This host's supervisors that the store refuses (their notes), and the exits spooled for lack of it."""
    from agentledger.infrastructure.config import home_dir
    from agentledger.infrastructure.spool import Spool

    spool = Spool(home_dir())
    return {"supervisors_waiting": spool.waiting(),
            "spooled_exits": {sid: record for sid, record in spool.pending()}}


def _spool_pairs(spool: dict[str, Any], now: float) -> list[tuple[str, Any]]:
    """The spool's part of ``daemon status``: nothing when it is empty."""
    from agentledger.entrypoints.render import relative

    pairs: list[tuple[str, Any]] = []
    waiting = spool["supervisors_waiting"]
    if waiting:
        sid, oldest = min(waiting.items(), key=lambda item: item[1].get("waiting_since") or "")
        pairs.append(("Supervisors", f"{len(waiting)} waiting on the store; the longest, {sid[:12]}, since "
                                     f"{relative(_epoch(oldest['waiting_since']), now)} ({oldest.get('fault')}: "
                                     f"{oldest.get('error')})"))
    exits = spool["spooled_exits"]
    if exits:
        pairs.append(("Spooled exits", f"{len(exits)} seen by their supervisors, not yet in the log "
                                       f"({', '.join(sid[:12] for sid in exits)})"))
    return pairs


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()
