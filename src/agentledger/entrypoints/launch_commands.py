"""``agentledger launch``: an agent by its adapter's name (``launch opencode -p PROMPT``) or any ``-- ARGV``;
``agentledger resume ID MESSAGE``: a new supervised session continuing a stopped one's agent conversation.

Translation only: options become a call on the launch use case
(``application/launching.py: Launching``, built by ``bootstrap.launching``),
which plans the session over the configuration's defaults and the agent's
adapter and starts its supervisor. Heavy modules are imported inside the
handlers.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentledger.application.clock import now_epoch
from agentledger.domain.durations import format_duration
from agentledger.domain.fuse import MIN_TTL
from agentledger.domain.policy import DEFAULT_TERMINATION_GRACE
from agentledger.entrypoints import args as types
from agentledger.entrypoints.args import Parser, json_flag
from agentledger.entrypoints.wait_commands import add_timeout

if TYPE_CHECKING:
    from agentledger.application.launching import Launching, RunOptions, Started
    from agentledger.application.worktrees import WorktreeRequest
    from agentledger.entrypoints.cli import Context


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("launch", "start an agent (opencode, claude-code, codex, pi) or ARGV under a supervisor; print its id")
    add_launch_options(p)
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="AGENT [OPTIONS] | -- ARGV...",
                   help="an agent adapter's name followed by options (e.g. 'opencode -p PROMPT'), "
                        "or -- and the command to run")
    p.set_defaults(handler=cmd_launch)

    p = command("resume", "continue a stopped agent session's conversation in a new supervised session")
    p.add_argument("session", metavar="ID", help="the stopped session: its id, a unique prefix of its id, or its name")
    p.add_argument("message", nargs="?", metavar="MESSAGE", help="the agent's next message, given on its stdin "
                                              "(or --message-file); '--' before one starting with -")
    p.add_argument("--message-file", default=None, metavar="PATH",
                   help="read the message from PATH ('-': this command's stdin)")
    p.add_argument("--file", action="append", default=[], metavar="PATH",
                   help="attach PATH's contents to the message (as for launch)")
    add_run_options(p, group_default="the resumed session's")
    p.set_defaults(handler=cmd_resume)


def add_launch_options(p: argparse.ArgumentParser) -> None:
    """``launch``'s options: before the agent's name or ``--``, and again after an agent's name."""
    p.add_argument("--cwd", default=None, metavar="DIR", help="working directory (default: the current one)")
    add_run_options(p)
    p.add_argument("--adapter", default=None, metavar="NAME",
                   help="with -- ARGV: the adapter whose native storage to observe (default: command)")
    p.add_argument("--agent", action="append", default=[], metavar="AGENT",
                   help="repeatable: start one session per agent (and per --model), in parallel, each in its own "
                        "worktree, as one group (instead of a single AGENT name)")
    p.add_argument("--model", action="append", default=[], metavar="MODEL",
                   help="model for the agent (passed to it; with -- ARGV, recorded for reference); repeated: "
                        "one session per model, as a group")
    p.add_argument("--matrix", default=None, metavar="FILE",
                   help="start a group sweeping agents x models x prompts from FILE (YAML or TOML; docs/worktrees.md)")
    p.add_argument("--wait", action="store_true",
                   help="stay until the session (every session of a group) has stopped; exit with its exit status "
                        "(as 'agentledger wait')")
    add_timeout(p, "--wait-timeout")
    p.add_argument("--dry-run", action="store_true", help="with --agent or --matrix: print the group's plan, "
                                                          "start nothing")
    p.add_argument("-p", "--prompt", metavar="TEXT", help="the agent's prompt, given on its stdin, never in its argv "
                                          "(with -- ARGV, recorded for reference); '--prompt=-x' for one starting with -")
    p.add_argument("--prompt-file", default=None, metavar="PATH",
                   help="read the agent's prompt from PATH ('-': this command's stdin), for large prompts")
    p.add_argument("--file", action="append", default=[], metavar="PATH",
                   help="attach PATH's contents to the agent's prompt (repeatable; each at most 128 KB, "
                        "256 KB in all)")
    add_worktree_options(p)
    p.add_argument("--spec", default=None, metavar="FILE",
                   help="a spec file put before the agent's prompt (at most 128 KB), e.g. the task's requirements")


def add_worktree_options(p: argparse.ArgumentParser) -> None:
    """``--worktree [NAME] [--branch B] [--base-branch REF]``: run the session in a new git worktree."""
    p.add_argument("--worktree", nargs="?", const="", default=None, metavar="NAME",
                   help="run the session in a new git worktree of the directory's repository, on a new branch "
                        "(default name: the session id's first 12 digits; see docs/worktrees.md)")
    p.add_argument("--branch", default=None, metavar="B",
                   help="the worktree's new branch (default agentledger/NAME); implies --worktree")
    p.add_argument("--base-branch", default=None, metavar="REF",
                   help="start the worktree's branch from REF (default: the current HEAD); implies --worktree")


def worktree_request(args: argparse.Namespace) -> WorktreeRequest | None:
    """The worktree the options ask for (None: none). ``launch --worktree AGENT ...`` means no NAME."""
    from agentledger.application.worktrees import WorktreeRequest

    name, branch, base = getattr(args, "worktree", None), getattr(args, "branch", None), getattr(args, "base_branch", None)
    if name is None and branch is None and base is None:
        return None
    return WorktreeRequest(name=name or None, branch=branch, base=base)


def _agent_after_worktree(args: argparse.Namespace) -> None:
    """``launch --worktree opencode -p …``: argparse took the agent for the worktree's NAME; give it back."""
    from agentledger.adapters import registry

    if args.worktree in registry.agent_names() and args.argv[:1] != ["--"] and not (
            args.argv and args.argv[0] in registry.agent_names()):
        args.argv = [args.worktree, *args.argv]
        args.worktree = ""


def add_run_options(p: argparse.ArgumentParser, group_default: str = "none") -> None:
    """How a supervised session runs and is labelled: shared by ``launch`` and ``resume``."""
    p.add_argument("--fuse-ttl", type=types.duration, default=None, metavar="DURATION",
                   help=f"fuse lifetime, at least {format_duration(MIN_TTL)}; the supervisor heartbeats every "
                        "TTL/3 (default: fuse_ttl in the configuration, else 30s)")
    p.add_argument("--heartbeat-every", type=types.duration, default=None, metavar="DURATION",
                   help="supervisor heartbeat interval, at most TTL/2 (default TTL/3)")
    p.add_argument("--timeout", type=types.duration, default=None, metavar="DURATION",
                   help="master timeout: when it passes, SIGTERM the process group (SIGKILL "
                        f"{format_duration(DEFAULT_TERMINATION_GRACE)} later) and record the stop as 'timeout' "
                        "(default: none)")
    p.add_argument("--on-stop", default=None, metavar="CMD",
                   help="shell command run once after the session stops, with AGENTLEDGER_SESSION_ID, "
                        "_EXIT_CODE, _STOP_REASON, _CWD, _ADAPTER (and _SIGNAL) set; its outcome is logged "
                        "(default: on_stop in the configuration; '' for none)")
    p.add_argument("--on-stop-timeout", type=types.duration, default=None, metavar="DURATION",
                   help="SIGTERM (then SIGKILL) the on-stop command after this long "
                        "(default: on_stop_timeout in the configuration, else 60s)")
    p.add_argument("--on-create", default=None, metavar="CMD",
                   help="shell command run in the session's directory (its worktree) before the agent starts, "
                        "e.g. to install dependencies; if it fails, the agent is not started and the failure is "
                        "recorded (exit 1)")
    p.add_argument("--on-create-timeout", type=types.duration, default=None, metavar="DURATION",
                   help="how long --on-create may run (default 10m)")
    p.add_argument("--check", default=None, metavar="CMD",
                   help="shell command run in the session's worktree after it stops (e.g. its tests); the outcome "
                        "is recorded and 'compare' shows it")
    p.add_argument("--unset-env", action="append", default=[], type=types.variable_name, metavar="NAME",
                   help="do not pass the variable NAME on to the agent (repeatable; added to unset_env in the "
                        "configuration), e.g. ANTHROPIC_API_KEY so that Claude Code uses its own login")
    p.add_argument("--name", type=types.name, metavar="NAME", help="a name for people; commands taking an ID accept it too "
                                                    f"(default: {group_default})")
    p.add_argument("--group", type=types.name, metavar="G", help=f"group this session belongs to ('list --group G' shows them; default: "
                                   f"{group_default})")
    p.add_argument("--label", type=types.label, action="append", default=[], metavar="KEY=VALUE",
                   help="label the session (repeatable); 'list --filter label=KEY=VALUE' selects by it")
    p.add_argument("--force", action="store_true",
                   help="launch even into a directory another session (or a person) has locked: the lock is "
                        "taken over, recorded as forced; the other session is left running, fuse and all")
    p.add_argument("--no-lock", dest="no_lock", action="store_true",
                   help="do not take the directory's lock this time (default: auto_lock in the configuration)")
    json_flag(p)


def cmd_launch(context: Context, args: argparse.Namespace) -> int:
    from agentledger.adapters import registry
    from agentledger.application.errors import UsageError

    _agent_after_worktree(args)
    if args.wait_timeout is not None and not args.wait:
        raise UsageError("--wait-timeout is for --wait (launch waits for nothing without it)")
    argv = args.argv
    agent = None
    if argv and argv[0] in registry.agent_names():
        _merge_agent_options(args, args.argv[1:])
        agent, argv = argv[0], []
    from agentledger.entrypoints import group_commands

    if group_commands.is_group(args, agent):
        return group_commands.launch_group(args, agent, launching=_launching(context), run=_run_options(args),
                                           read_text=_read_text, wait=_wait(context, args) if args.wait else None)
    model = args.model[0] if args.model else None
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if agent is None and (not argv or not argv[0]):
        raise UsageError("launch needs an agent or a command: agentledger launch AGENT -p PROMPT, "
                         f"or agentledger launch [OPTIONS] -- ARGV... (agents: {', '.join(registry.agent_names())})")
    if agent is None and (args.file or args.prompt_file or args.spec):
        raise UsageError("--file, --spec and --prompt-file give an agent its prompt: "
                         "agentledger launch AGENT --file PATH ...")
    if agent is not None and args.adapter not in (None, agent):
        raise UsageError(f"--adapter {args.adapter} does not go with 'launch {agent}'")
    launching = _launching(context)  # a bad configuration stops the launch before anything starts
    run = _run_options(args)
    cwd = os.path.abspath(args.cwd or os.getcwd())
    if not os.path.isdir(cwd):
        raise UsageError(f"--cwd {args.cwd!r} is not a directory")
    if agent is None:
        started = launching.command(argv, cwd=cwd, run=run, adapter=args.adapter or registry.DEFAULT,
                                    model=model, prompt=args.prompt, worktree=worktree_request(args))
    else:
        text = _read_text(args.prompt, args.prompt_file, what=f"launch {agent}", inline="-p PROMPT",
                          from_file="--prompt-file FILE")
        started = launching.agent(agent, prompt=text, files=args.file, cwd=cwd, run=run, model=model,
                                  spec=args.spec, worktree=worktree_request(args))
    status = _report(started, json=args.json)
    return _wait(context, args)([started.spec.session_id]) if args.wait else status


def cmd_resume(context: Context, args: argparse.Namespace) -> int:
    """A new session running the agent's own resume command on the old session's native id, in its cwd."""
    import orjson

    from agentledger.application.launching import PastSession
    from agentledger.projections.queries import current_status, get_session

    db = context.fresh_db()
    old = get_session(db, context.resolve(args.session, db))
    past = PastSession(id=old["id"], status=current_status(old, now_epoch()), adapter=old["adapter"],
                       native_session_id=old["native_session_id"], cwd=old["cwd"], name=old["name"],
                       model=old["model"], group=old["group_name"], labels=orjson.loads(old["labels"] or "{}"))
    launching = _launching(context)
    launching.check_resumable(past)  # before the message is read
    text = _read_text(args.message, args.message_file, what=f"resume {past.id[:12]}", inline="MESSAGE",
                      from_file="--message-file FILE")
    return _report(launching.resume(past, message=text, files=args.file, run=_run_options(args)), json=args.json)


def _wait(context: Context, args: argparse.Namespace) -> Callable[[list[str]], int]:
    """``--wait``: stay until the sessions have stopped, and exit with their status (``wait_commands.py``)."""
    from agentledger.entrypoints.wait_commands import wait_and_report

    return lambda ids: wait_and_report(context, ids, timeout=args.wait_timeout, json=args.json)


def _launching(context: Context) -> Launching:
    from agentledger.bootstrap import launching

    return launching(lambda: context.store)


def _run_options(args: argparse.Namespace) -> RunOptions:
    """The shared run options, as given (the use case puts them over the configuration's defaults)."""
    from agentledger.application.launching import RunOptions

    return RunOptions(fuse_ttl=args.fuse_ttl, heartbeat_every=args.heartbeat_every, timeout=args.timeout,
                      on_stop=args.on_stop, on_stop_timeout=args.on_stop_timeout, unset_env=args.unset_env,
                      name=args.name, group=args.group, labels=dict(args.label),
                      lock=False if args.no_lock else None, force=args.force, on_create=args.on_create,
                      on_create_timeout=args.on_create_timeout, check=args.check)


def _report(started: Started, *, json: bool) -> int:
    """Print the new session's id (or, with --json, what was launched), and any word about the daemon."""
    if started.notice:
        print(f"agentledger: {started.notice}", file=sys.stderr)
    spec = started.spec
    if json:
        from agentledger.entrypoints.render import write_json

        write_json({"id": spec.session_id, "pid": started.pid, "log_path": spec.log_path, "adapter": spec.adapter,
                    "argv": spec.argv, "prompt_path": spec.stdin_path, "resumed_from": spec.resumed_from,
                    "workspace": spec.workspace})
    else:
        if spec.workspace:
            print(f"agentledger: worktree {spec.workspace['worktree']} on branch {spec.workspace['branch']}",
                  file=sys.stderr)
        print(spec.session_id)
    return 0


def _merge_agent_options(args: argparse.Namespace, tokens: list[str]) -> None:
    """Parse what follows ``launch AGENT`` with launch's own options, over what came before the name."""
    from agentledger.application.errors import UsageError

    parser = Parser(prog="agentledger launch AGENT", add_help=False)
    add_launch_options(parser)
    later, extra = parser.parse_known_args(tokens)
    if extra:
        raise UsageError(f"unexpected arguments after the agent's name: {' '.join(extra)} "
                         "(the prompt goes in -p PROMPT or --prompt-file FILE)")
    for key, value in vars(later).items():
        if isinstance(value, list):
            setattr(args, key, [*getattr(args, key), *value])
        elif value is not None and value is not False:
            setattr(args, key, value)


def _read_text(value: str | None, path: str | None, *, what: str, inline: str, from_file: str) -> str:
    """The prompt or message: given inline or read from a file (``-``: stdin); exactly one of the two."""
    from agentledger.application.errors import UsageError

    if (value is None) == (path is None):
        raise UsageError(f"{what} needs one {inline.split()[-1].lower()}: {inline} or {from_file} ('-' reads stdin)")
    if path is None:
        return value  # type: ignore[return-value]
    try:
        if path == "-":
            return sys.stdin.buffer.read().decode("utf-8", "replace")
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError as error:
        raise UsageError(f"{from_file.split()[0]} {path}: {error.strerror or error}") from None
