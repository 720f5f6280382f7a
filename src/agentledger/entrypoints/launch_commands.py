"""``agentledger launch``: an agent by its adapter's name (``launch opencode -p PROMPT``) or any ``-- ARGV``.

Translation only: options and the configuration's defaults become a
``LaunchSpec``; an agent's adapter (``adapters/``) builds its command line and
the prompt file fed on its stdin; the supervisor does the rest. Heavy modules
are imported inside the handler.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from agentledger.domain.durations import format_duration
from agentledger.domain.policy import DEFAULT_TERMINATION_GRACE
from agentledger.entrypoints import args as types
from agentledger.entrypoints.args import Parser, json_flag


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("launch", "start an agent (opencode, claude-code, codex) or ARGV under a supervisor; print its id")
    add_launch_options(p)
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="AGENT [OPTIONS] | -- ARGV...",
                   help="an agent adapter's name followed by options (e.g. 'opencode -p PROMPT'), "
                        "or -- and the command to run")
    p.set_defaults(handler=cmd_launch)


def add_launch_options(p: argparse.ArgumentParser) -> None:
    """``launch``'s options: before the agent's name or ``--``, and again after an agent's name."""
    p.add_argument("--cwd", default=None, help="working directory (default: the current one)")
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
    p.add_argument("--name", help="a label for people")
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
    p.add_argument("--group", help="group this session belongs to ('list --group G' shows them)")
    p.add_argument("--label", type=types.label, action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    json_flag(p)


def cmd_launch(context: Any, args: argparse.Namespace) -> int:
    from uuid import uuid4

    from agentledger.adapters import registry
    from agentledger.application.errors import UsageError
    from agentledger.infrastructure.config import home_dir, logs_dir
    from agentledger.infrastructure.host import os_user
    from agentledger.infrastructure.launcher import start_supervisor
    from agentledger.infrastructure.settings import load_settings
    from agentledger.infrastructure.supervisor import LaunchSpec

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
    settings = load_settings()  # a bad configuration stops the launch before anything starts
    if args.fuse_ttl is None:
        args.fuse_ttl = settings.fuse_ttl
    if args.heartbeat_every is not None and args.heartbeat_every > args.fuse_ttl / 2:
        raise UsageError(
            f"--heartbeat-every {format_duration(args.heartbeat_every)} is more than half the fuse TTL "
            f"({format_duration(args.fuse_ttl)}): one late heartbeat would let the fuse lapse"
        )
    cwd = os.path.abspath(args.cwd or os.getcwd())
    if not os.path.isdir(cwd):
        raise UsageError(f"--cwd {args.cwd!r} is not a directory")
    on_stop = (settings.on_stop if args.on_stop is None else args.on_stop.strip()) or None  # '' turns it off
    session_id = uuid4().hex
    prompt = args.prompt
    stdin_path = native_session_id = None
    if agent is not None:
        prompt, stdin_path, argv, native_session_id = _agent_launch(agent, args, session_id, cwd)
    store = context.store  # creates the store now rather than in the supervisor
    logs = logs_dir()
    logs.mkdir(parents=True, exist_ok=True, mode=0o700)
    spec = LaunchSpec(
        session_id=session_id,
        argv=argv,
        cwd=cwd,
        fuse_ttl=args.fuse_ttl,
        log_path=str(logs / f"{session_id}.log"),
        launched_by=os_user(),
        adapter=adapter_name,
        name=args.name,
        model=args.model,
        prompt=prompt,
        group=args.group,
        labels=dict(args.label),
        heartbeat_every=args.heartbeat_every,
        timeout=args.timeout,
        on_stop=on_stop,
        on_stop_timeout=(args.on_stop_timeout or settings.on_stop_timeout) if on_stop else None,
        stdin_path=stdin_path,
        native_session_id=native_session_id,
    )
    env = dict(os.environ, AGENTLEDGER_HOME=str(home_dir()), AGENTLEDGER_DB=store.location.connect_url)
    answer = start_supervisor(spec, env, logs / f"{session_id}.supervisor.log")
    if not answer["ok"]:
        if answer.get("kind") == "spawn-failed":
            raise UsageError(f"{answer['error']} (recorded as session {session_id[:12]}, spawn-failed)")
        from agentledger.application.errors import LedgerError

        raise LedgerError(answer["error"])
    if args.json:
        from agentledger.entrypoints.render import write_json

        write_json({"id": session_id, "pid": answer["pid"], "log_path": spec.log_path, "adapter": adapter_name,
                    "argv": argv, "prompt_path": stdin_path})
    else:
        print(session_id)
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


def _agent_launch(agent: str, args: argparse.Namespace, session_id: str, cwd: str) -> tuple[Any, ...]:
    """Write the prompt file and build the agent's command: (prompt to record, stdin path, argv, native id)."""
    from agentledger.adapters import registry
    from agentledger.adapters.base import LaunchRequest
    from agentledger.adapters.prompts import PromptTooLarge, compose_prompt, write_prompt_file
    from agentledger.application.errors import UsageError
    from agentledger.infrastructure.config import home_dir

    if (args.prompt is None) == (args.prompt_file is None):
        raise UsageError(f"launch {agent} needs one prompt: -p PROMPT or --prompt-file FILE ('-' reads stdin)")
    if args.prompt_file is not None:
        try:
            if args.prompt_file == "-":
                text = sys.stdin.buffer.read().decode("utf-8", "replace")
            else:
                with open(args.prompt_file, "rb") as handle:
                    text = handle.read().decode("utf-8", "replace")
        except OSError as error:
            raise UsageError(f"--prompt-file {args.prompt_file}: {error.strerror or error}") from None
    else:
        text = args.prompt
    if not text.strip() and not args.file:
        raise UsageError(f"launch {agent}: the prompt is empty")
    try:
        data = compose_prompt(text, args.file)
    except PromptTooLarge as error:
        raise UsageError(str(error)) from None
    path = write_prompt_file(home_dir() / "prompts", session_id, data)
    plan = registry.get(agent).build_launch(
        LaunchRequest(session_id=session_id, cwd=cwd, prompt_path=str(path), model=args.model))
    recorded = text if len(text) <= RECORDED_PROMPT_CHARS else (
        text[:RECORDED_PROMPT_CHARS] + f"… ({len(text.encode())} bytes in all; see {path})")
    return recorded, plan.stdin_path, plan.argv, plan.native_session_id
