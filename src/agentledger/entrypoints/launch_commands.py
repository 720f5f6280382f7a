"""``agentledger launch``: an agent by its adapter's name (``launch opencode -p PROMPT``) or any ``-- ARGV``;
``agentledger resume ID MESSAGE``: a new supervised session continuing a stopped one's agent conversation.

Translation only: options and the configuration's defaults become a
``LaunchSpec``; an agent's adapter (``adapters/``) builds its command line and
the prompt file fed on its stdin; the supervisor does the rest. Heavy modules
are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentledger.application.clock import now_epoch
from agentledger.domain.durations import format_duration
from agentledger.domain.policy import DEFAULT_TERMINATION_GRACE
from agentledger.entrypoints import args as types
from agentledger.entrypoints.args import Parser, json_flag

if TYPE_CHECKING:
    from agentledger.entrypoints.cli import Context


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("launch", "start an agent (opencode, claude-code, codex) or ARGV under a supervisor; print its id")
    add_launch_options(p)
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="AGENT [OPTIONS] | -- ARGV...",
                   help="an agent adapter's name followed by options (e.g. 'opencode -p PROMPT'), "
                        "or -- and the command to run")
    p.set_defaults(handler=cmd_launch)

    p = command("resume", "continue a stopped agent session's conversation in a new supervised session")
    p.add_argument("session", metavar="ID", help="the stopped session (id or a unique prefix of it)")
    p.add_argument("message", nargs="?", help="the agent's next message, given on its stdin "
                                              "(or --message-file); '--' before one starting with -")
    p.add_argument("--message-file", default=None, metavar="PATH",
                   help="read the message from PATH ('-': this command's stdin)")
    p.add_argument("--file", action="append", default=[], metavar="PATH",
                   help="attach PATH's contents to the message (as for launch)")
    add_run_options(p, group_default="the resumed session's")
    p.set_defaults(handler=cmd_resume)


def add_launch_options(p: argparse.ArgumentParser) -> None:
    """``launch``'s options: before the agent's name or ``--``, and again after an agent's name."""
    p.add_argument("--cwd", default=None, help="working directory (default: the current one)")
    add_run_options(p)
    p.add_argument("--adapter", default=None,
                   help="with -- ARGV: the adapter whose native storage to observe (default: command)")
    p.add_argument("--model", help="model for the agent (passed to it; with -- ARGV, recorded for reference)")
    p.add_argument("-p", "--prompt", help="the agent's prompt, given on its stdin, never in its argv "
                                          "(with -- ARGV, recorded for reference); '--prompt=-x' for one starting with -")
    p.add_argument("--prompt-file", default=None, metavar="PATH",
                   help="read the agent's prompt from PATH ('-': this command's stdin), for large prompts")
    p.add_argument("--file", action="append", default=[], metavar="PATH",
                   help="attach PATH's contents to the agent's prompt (repeatable; each at most 128 KB, "
                        "256 KB in all)")


def add_run_options(p: argparse.ArgumentParser, group_default: str = "none") -> None:
    """How a supervised session runs and is labelled: shared by ``launch`` and ``resume``."""
    p.add_argument("--fuse-ttl", type=types.duration, default=None, metavar="DURATION",
                   help="fuse lifetime; the supervisor heartbeats every TTL/3 "
                        "(default: fuse_ttl in the configuration, else 30s)")
    p.add_argument("--heartbeat-every", type=types.duration, default=None, metavar="DURATION",
                   help="supervisor heartbeat interval, at most TTL/2 (default TTL/3)")
    p.add_argument("--timeout", type=types.duration, default=None, metavar="DURATION",
                   help="master timeout: when it passes, SIGTERM the process group (SIGKILL "
                        f"{format_duration(DEFAULT_TERMINATION_GRACE)} later) and record the stop as 'timeout'")
    p.add_argument("--on-stop", default=None, metavar="CMD",
                   help="shell command run once after the session stops, with AGENTLEDGER_SESSION_ID, "
                        "_EXIT_CODE, _STOP_REASON, _CWD, _ADAPTER (and _SIGNAL) set; its outcome is logged "
                        "(default: on_stop in the configuration; '' for none)")
    p.add_argument("--on-stop-timeout", type=types.duration, default=None, metavar="DURATION",
                   help="SIGTERM (then SIGKILL) the on-stop command after this long "
                        "(default: on_stop_timeout in the configuration, else 60s)")
    p.add_argument("--unset-env", action="append", default=[], type=types.variable_name, metavar="NAME",
                   help="do not pass the variable NAME on to the agent (repeatable; added to unset_env in the "
                        "configuration), e.g. ANTHROPIC_API_KEY so that Claude Code uses its own login")
    p.add_argument("--name", help="a label for people")
    p.add_argument("--group", help=f"group this session belongs to ('list --group G' shows them; default: "
                                   f"{group_default})")
    p.add_argument("--label", type=types.label, action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    json_flag(p)


def cmd_launch(context: Context, args: argparse.Namespace) -> int:
    from uuid import uuid4

    from agentledger.adapters import registry
    from agentledger.adapters.base import LaunchRequest
    from agentledger.application.errors import UsageError
    from agentledger.application.launching import LaunchSpec

    argv = args.argv
    agent = None
    if argv[:1] == ["--"]:
        argv = argv[1:]
    elif argv and argv[0] in registry.agent_names():
        agent, argv = argv[0], []
        _merge_agent_options(args, args.argv[1:])
    if agent is None and (not argv or not argv[0]):
        raise UsageError("launch needs an agent or a command: agentledger launch AGENT -p PROMPT, "
                         f"or agentledger launch [OPTIONS] -- ARGV... (agents: {', '.join(registry.agent_names())})")
    if agent is None and (args.file or args.prompt_file):
        raise UsageError("--file and --prompt-file give an agent its prompt: agentledger launch AGENT --file PATH ...")
    if agent is not None and args.adapter not in (None, agent):
        raise UsageError(f"--adapter {args.adapter} does not go with 'launch {agent}'")
    adapter_name = agent or args.adapter or registry.DEFAULT
    run = _run_options(args)  # a bad configuration stops the launch before anything starts
    cwd = os.path.abspath(args.cwd or os.getcwd())
    if not os.path.isdir(cwd):
        raise UsageError(f"--cwd {args.cwd!r} is not a directory")
    session_id = uuid4().hex
    prompt = args.prompt
    stdin_path = native_session_id = None
    if agent is not None:
        text = _read_text(args.prompt, args.prompt_file, what=f"launch {agent}", inline="-p PROMPT",
                          from_file="--prompt-file FILE")
        prompt, stdin_path = _prompt_file(text, args.file, session_id, what=f"launch {agent}")
        plan = registry.get(agent).build_launch(
            LaunchRequest(session_id=session_id, cwd=cwd, prompt_path=stdin_path, model=args.model, name=args.name))
        argv, stdin_path, native_session_id = plan.argv, plan.stdin_path, plan.native_session_id
        run["env"] = {**run["env"], **plan.env}
    spec = LaunchSpec(
        session_id=session_id,
        argv=argv,
        cwd=cwd,
        adapter=adapter_name,
        name=args.name,
        model=args.model,
        prompt=prompt,
        group=args.group,
        labels=dict(args.label),
        stdin_path=stdin_path,
        native_session_id=native_session_id,
        **_session_files(session_id),
        **run,
    )
    return _start(context, spec, json=args.json)


def cmd_resume(context: Context, args: argparse.Namespace) -> int:
    """A new session running the agent's own resume command on the old session's native id, in its cwd."""
    from uuid import uuid4

    import orjson

    from agentledger.adapters import registry
    from agentledger.application.errors import LedgerError, UsageError
    from agentledger.application.launching import LaunchSpec
    from agentledger.projections.queries import current_status, get_session

    db = context.fresh_db()
    old = get_session(db, context.resolve(args.session, db))
    short = old["id"][:12]
    adapter = registry.for_session(old["adapter"])
    if adapter.binary is None:
        raise UsageError(f"session {short} ran a plain command (adapter {old['adapter']}): "
                         f"only an agent's conversation can be resumed (agents: {', '.join(registry.agent_names())})")
    status = current_status(old, now_epoch())
    if status != "stopped":
        raise LedgerError(f"session {short} is still {status}: two agents must not write one conversation; "
                          f"stop it first (agentledger stop {short}) or wait for it to end")
    native = old["native_session_id"]
    if not native:
        raise UsageError(f"session {short}: its {adapter.name} adapter never found the agent's own session, "
                         "so there is no conversation to resume")
    if not os.path.isdir(old["cwd"]):
        raise UsageError(f"session {short}'s directory {old['cwd']} is gone: the agent's session belongs to it")
    text = _read_text(args.message, args.message_file, what=f"resume {short}", inline="MESSAGE",
                      from_file="--message-file FILE")
    run = _run_options(args)
    session_id = uuid4().hex
    prompt, stdin_path = _prompt_file(text, args.file, session_id, what=f"resume {short}")
    spec = LaunchSpec(
        session_id=session_id,
        argv=adapter.resume_argv(native),
        cwd=old["cwd"],
        adapter=adapter.name,
        name=args.name or old["name"],
        model=old["model"],
        prompt=prompt,
        group=args.group or old["group_name"],
        labels={**orjson.loads(old["labels"] or "{}"), **dict(args.label)},
        stdin_path=stdin_path,
        native_session_id=native,
        resumed_from=old["id"],
        **_session_files(session_id),
        **run,
    )
    return _start(context, spec, json=args.json)


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``LaunchSpec`` fields from the shared run options and the configuration's defaults."""
    from agentledger.application.launching import heartbeat_interval
    from agentledger.infrastructure.agent_env import agent_environment
    from agentledger.infrastructure.settings import load_settings

    settings = load_settings()
    fuse_ttl = settings.fuse_ttl if args.fuse_ttl is None else args.fuse_ttl
    heartbeat_interval(fuse_ttl, args.heartbeat_every)  # refuses one that would let the fuse lapse
    on_stop = (settings.on_stop if args.on_stop is None else args.on_stop.strip()) or None  # '' turns it off
    return {
        "env": agent_environment(os.environ, [*settings.unset_env, *args.unset_env]),
        "fuse_ttl": fuse_ttl,
        "heartbeat_every": args.heartbeat_every,
        "timeout": args.timeout,
        "on_stop": on_stop,
        "on_stop_timeout": (args.on_stop_timeout or settings.on_stop_timeout) if on_stop else None,
    }


def _session_files(session_id: str) -> dict[str, Any]:
    """The session's output log (under the ledger's home) and who launches it, for its ``LaunchSpec``."""
    from agentledger.infrastructure.config import logs_dir, private_directory
    from agentledger.infrastructure.host import os_user

    logs = logs_dir()
    private_directory(logs)
    return {"log_path": str(logs / f"{session_id}.log"), "launched_by": os_user()}


def _start(context: Context, spec: Any, *, json: bool) -> int:
    """Start the supervisor for ``spec`` and print the new session's id (the supervisor records the launch)."""
    from agentledger.application.errors import LedgerError, UsageError
    from agentledger.infrastructure.config import home_dir, logs_dir
    from agentledger.infrastructure.launcher import start_supervisor

    store = context.store  # creates the store now rather than in the supervisor
    env = dict(os.environ, AGENTLEDGER_HOME=str(home_dir()), AGENTLEDGER_DB=store.location.connect_url)
    answer = start_supervisor(spec, env, logs_dir() / f"{spec.session_id}.supervisor.log")
    if not answer["ok"]:
        if answer.get("kind") == "spawn-failed":
            raise UsageError(f"{answer['error']} (recorded as session {spec.session_id[:12]}, spawn-failed)")
        raise LedgerError(answer["error"])
    from agentledger.entrypoints.reconcile_commands import ensure_daemon

    notice = ensure_daemon(store)  # a reconciler for when this supervisor dies
    if notice:
        print(f"agentledger: {notice}", file=sys.stderr)
    if json:
        from agentledger.entrypoints.render import write_json

        write_json({"id": spec.session_id, "pid": answer["pid"], "log_path": spec.log_path, "adapter": spec.adapter,
                    "argv": spec.argv, "prompt_path": spec.stdin_path, "resumed_from": spec.resumed_from})
    else:
        print(spec.session_id)
    return 0


#: How much of an agent's prompt the ``Launched`` event keeps (the whole prompt is in the prompt file).
RECORDED_PROMPT_CHARS = 2000


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


def _prompt_file(text: str, files: list[str], session_id: str, *, what: str) -> tuple[str, str]:
    """Write the prompt (with attached files) to a 0600 file for the agent's stdin: (text to record, its path)."""
    from agentledger.adapters.prompts import PromptTooLarge, compose_prompt, write_prompt_file
    from agentledger.application.errors import UsageError
    from agentledger.infrastructure.config import home_dir

    if not text.strip() and not files:
        raise UsageError(f"{what}: the {'message' if what.startswith('resume') else 'prompt'} is empty")
    try:
        data = compose_prompt(text, files)
    except PromptTooLarge as error:
        raise UsageError(str(error)) from None
    path = write_prompt_file(home_dir() / "prompts", session_id, data)
    recorded = text if len(text) <= RECORDED_PROMPT_CHARS else (
        text[:RECORDED_PROMPT_CHARS] + f"… ({len(text.encode())} bytes in all; see {path})")
    return recorded, str(path)
