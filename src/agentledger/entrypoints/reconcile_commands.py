"""``agentledger reconcile`` and ``agentledger daemon run|start|stop|status``.

Translation only: arguments to a policy, a pass or the daemon's files, and
reports to text or JSON. Heavy modules are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentledger.domain.durations import format_duration
from agentledger.domain.policy import DEFAULT_POLICY, ReconcilePolicy
from agentledger.entrypoints import args as types
from agentledger.entrypoints.args import Parser, json_flag
from agentledger.entrypoints.render import counted

if TYPE_CHECKING:
    from agentledger.entrypoints.cli import Context
    from agentledger.infrastructure.daemon_control import DaemonControl

#: How long ``daemon stop`` waits for the daemon to finish its pass and exit.
STOP_PATIENCE = 30.0
#: ``daemon status`` exits with this when no daemon runs (the LSB convention).
NOT_RUNNING = 3


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("reconcile", "run one reconcile pass now and print each decision")
    p.add_argument("--dry-run", action="store_true", help="decide, but append nothing and signal nothing")
    p.add_argument("--confirm", action="store_true",
                   help="stop every session judged dead, including those the mass-stop guard holds")
    _policy_options(p)
    json_flag(p)
    p.set_defaults(handler=cmd_reconcile)

    p = command("daemon", "the scheduled reconciler: one per host and store")
    actions = p.add_subparsers(dest="daemon_command", metavar="ACTION", parser_class=Parser)
    actions.required = True
    for name, help_text in (("run", "run in the foreground, logging to stderr"),
                            ("start", "start in the background (pid and log files under $AGENTLEDGER_HOME)"),
                            ("restart", "stop the running daemon (if any), then start one")):
        dp = actions.add_parser(name, help=help_text, description=help_text)
        dp.add_argument("--interval", type=types.duration, default=None, metavar="DURATION",
                        help="time between passes, e.g. 500ms or 0.5 (default: reconcile_interval "
                             "in the configuration, else 5s)")
        _policy_options(dp)
        if name == "run":
            dp.add_argument("--handshake-fd", type=int, default=None, help=argparse.SUPPRESS)
    def action(name: str, help_text: str) -> Parser:
        return actions.add_parser(name, help=help_text, description=help_text)

    dp = action("stop", "stop the daemon after the decision in hand")
    dp.add_argument("--wait", type=types.duration, default=STOP_PATIENCE, metavar="DURATION",
                    help=f"how long to wait for it to exit (default {format_duration(STOP_PATIENCE)})")
    dp = action("status", "is it running; its last pass; the mass-stop guard (exit 3 if no daemon runs)")
    json_flag(dp)
    dp = action("install", "run the daemon as a user service: a systemd user unit (launchd agent on macOS), "
                           "enabled and started")
    dp.add_argument("--interval", type=types.duration, default=None, metavar="DURATION",
                    help="time between passes, written into the unit (default: none written: the daemon reads "
                         "reconcile_interval in the configuration when it starts, else 5s)")
    dp.add_argument("--print", action="store_true", dest="print_only",
                    help="print the unit and where it would go; write and enable nothing")
    action("uninstall", "disable and remove the user service 'daemon install' made")
    p.set_defaults(handler=cmd_daemon)


def _policy_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mass-stop-share", type=types.share, default=DEFAULT_POLICY.mass_stop_share, metavar="FRACTION",
                   help="hold uncertain stops when one pass would stop more than this share of the host's "
                        "sessions, a fraction in (0, 1] such as 0.5 or 50%% "
                        f"(default {DEFAULT_POLICY.mass_stop_share:g}; 1 turns the guard off)")
    p.add_argument("--mass-stop-min", type=types.count, default=DEFAULT_POLICY.mass_stop_min, metavar="N",
                   help="... and more than N sessions, a whole number "
                        f"(default {DEFAULT_POLICY.mass_stop_min})")


def _policy(args: argparse.Namespace) -> ReconcilePolicy:
    return ReconcilePolicy(mass_stop_share=args.mass_stop_share, mass_stop_min=args.mass_stop_min)


# -- reconcile --------------------------------------------------------------------


def cmd_reconcile(context: Context, args: argparse.Namespace) -> int:
    from collections import Counter

    from agentledger.application.reconciling import Outcome, Reconciler
    from agentledger.entrypoints.render import table, write_json
    from agentledger.infrastructure.config import home_dir
    from agentledger.infrastructure.spool import Spool

    if not args.dry_run:  # as the daemon does: unwatched agents' last facts before the pass that may stop them
        from agentledger.application.watching import AgentWatch
        from agentledger.bootstrap import agents

        AgentWatch(context.store, context.machine, agents()).observe()
    reconciler = Reconciler(context.store, machine=context.machine, policy=_policy(args), spool=Spool(home_dir()))
    try:
        report = reconciler.run_pass(dry_run=args.dry_run, confirm=args.confirm)
    finally:
        reconciler.close()
    failed = 1 if any(j.outcome == Outcome.FAILED for j in report.judged) else 0  # the others were judged
    if args.json:
        write_json(report.as_json())
        return failed
    took = ((report.finished_at or report.started_at) - report.started_at).total_seconds()
    said = Counter(f"would {j.decision.action.value}" if j.outcome == Outcome.WOULD else j.outcome
                   for j in report.judged)  # a dry run's outcomes by what each would do: "1 would stop"
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(said.items())) or "nothing to judge"
    sessions = counted(len(report.judged), "session")
    for sid in report.from_spool:
        print(f"{sid[:12]}: stopped with the exit its supervisor saw and spooled while the store was away")
    print(f"{'dry run: ' if args.dry_run else ''}host {report.host}: {sessions} judged in {format_duration(took)}: {counts}")
    if report.judged:
        def outcome(j: Any) -> str:
            if j.outcome == Outcome.WOULD:
                return f"would {j.decision.action.value}"
            return j.outcome + (f" ({j.decision.reason})" if j.decision.reason and j.outcome == Outcome.STOPPED else "")

        table(["ID", "OUTCOME", "WHY"], [(j.decision.session_id[:12], outcome(j), j.error or j.decision.why)
                                         for j in report.judged])
    guard = report.guard or {}
    if guard.get("tripped"):
        print(f"mass-stop guard: this pass would stop {counted(guard['would_stop'], 'session')} (more than "
              f"{guard['limit']:g}); {len(guard['held'])} held until the next pass confirms them, "
              "or 'agentledger reconcile --confirm'")
    if "released" in guard:
        released = guard["released"]
        print(f"mass-stop guard released ({released['how']}): {len(released['confirmed'])} confirmed, "
              f"{len(released['cleared'])} seen alive again")
    return failed


# -- daemon -----------------------------------------------------------------------


def cmd_daemon(context: Context, args: argparse.Namespace) -> int:
    return {"run": _daemon_run, "start": _daemon_start, "restart": _daemon_restart, "stop": _daemon_stop,
            "status": _daemon_status, "install": _daemon_install, "uninstall": _daemon_uninstall}[
        args.daemon_command
    ](context, args)


def _daemon_restart(context: Context, args: argparse.Namespace) -> int:
    _interval(args)  # a bad configuration stops us before the running daemon is stopped
    args.wait = STOP_PATIENCE
    _daemon_stop(context, args)
    return _daemon_start(context, args)


def _unit(context: Context, interval: float | None) -> Any:
    from agentledger.infrastructure.config import home_dir
    from agentledger.infrastructure.service_units import unit_for

    return unit_for(home_dir(), context.store.location.connect_url, interval)


def _daemon_install(context: Context, args: argparse.Namespace) -> int:
    from agentledger.application.errors import LedgerError
    from agentledger.infrastructure.config import mask_secrets
    from agentledger.infrastructure.service_units import run, write

    unit = _unit(context, args.interval)
    if args.print_only:
        print(f"# {unit.path}\n{unit.text}")
        print(f"# {unit.env_file} (0600)\n{mask_secrets(unit.env_text)}")
        return 0
    if _control().running() is not None:
        raise LedgerError("a daemon is running for this store: stop it first ('agentledger daemon stop'), "
                          "so that the service can be the one")
    write(unit)
    print(f"wrote {unit.path} and {unit.env_file}")
    failed = run(unit.enable)
    if failed:
        raise LedgerError(f"the {unit.kind} unit is written but not enabled: {failed}; enable it with: "
                          + " && ".join(" ".join(command) for command in unit.enable))
    print(f"{unit.name}: enabled and started ({unit.kind}); 'agentledger daemon status' shows it")
    return 0


def _daemon_uninstall(context: Context, args: argparse.Namespace) -> int:
    from agentledger.infrastructure.service_units import remove, run

    unit = _unit(context, None)
    if not unit.path.exists():
        print(f"agentledger: no {unit.kind} unit for this home ({unit.path})", file=sys.stderr)
        return 0
    failed = run(unit.disable)
    remove(unit)
    print(f"removed {unit.path}" + (f" (disabling it: {failed})" if failed else f"; {unit.name} disabled"))
    return 0


def _control() -> DaemonControl:
    from agentledger.bootstrap import daemon_control

    return daemon_control()


def _daemon_run(context: Context, args: argparse.Namespace) -> int:
    from agentledger.entrypoints.console.serving import start_in_background
    from agentledger.runtime.daemon import run_daemon

    return run_daemon(interval=args.interval, policy=_policy(args), handshake_fd=args.handshake_fd,
                      console=start_in_background)


def _interval(args: argparse.Namespace) -> float:
    """``--interval``, else the configured ``reconcile_interval``; the whole configuration is checked either way."""
    from agentledger.infrastructure.settings import load_settings

    configured = load_settings().reconcile_interval
    return args.interval if args.interval is not None else configured


def _daemon_start(context: Context, args: argparse.Namespace) -> int:
    from agentledger.infrastructure.daemon_files import DaemonAlreadyRunning

    interval = _interval(args)  # a bad configuration stops us here, before anything starts
    _ = context.store  # create the store now, in this process, with its errors reported here
    control = _control()
    holder = control.running()
    if holder is not None:
        raise DaemonAlreadyRunning(holder, f"lock {control.files.lock_path}")
    answer = control.start(interval, _policy(args))
    if not answer["ok"]:
        from agentledger.application.errors import LedgerError

        raise LedgerError(answer["error"])
    print(f"daemon started (pid {answer['pid']}), a pass every {format_duration(interval)}; log: {answer['log']}")
    if answer.get("metrics_error"):
        print(f"agentledger: warning: /metrics and /healthz are NOT served ({answer['metrics_error']}): set "
              "metrics_addr to a free HOST:PORT (or off) and 'agentledger daemon restart'", file=sys.stderr)
    return 0


def _daemon_stop(context: Context, args: argparse.Namespace) -> int:
    holder = _control().stop(args.wait)
    if holder is None:
        print("agentledger: no daemon is running for this store", file=sys.stderr)
    else:
        print(f"daemon stopped (pid {holder['pid']})")
    return 0


def _daemon_status(context: Context, args: argparse.Namespace) -> int:
    from pathlib import Path

    from agentledger.entrypoints.daemon_status import daemon_pairs, daemon_report
    from agentledger.entrypoints.render import key_values, write_json
    from agentledger.infrastructure.settings import store_location

    report, elsewhere = daemon_report(lambda: context.store)  # opened where an outage is reported
    if args.json:
        write_json(report)
        return 0 if report["running"] else NOT_RUNNING
    holding = report["guard"]
    if not report["running"]:
        log = Path(report["log"])
        print("agentledger: daemon: not running" + (f"; last log: {log}" if log.exists() else ""), file=sys.stderr)
        if holding:
            print(f"mass-stop guard: holding {counted(len(holding['held']), 'stop')} since {holding['since']}")
        return NOT_RUNNING
    key_values(daemon_pairs(report, time.time(), store_url=store_location().url, elsewhere=elsewhere))
    return 0
