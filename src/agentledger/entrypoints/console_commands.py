"""``agentledger console``: serve the web console over the configured store until interrupted.

Translation only: the address and flags become an :mod:`console.serving`
plan; what the pages show is :mod:`console.pages`'. Starlette, Jinja2 and
uvicorn are imported only here, when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentledger.entrypoints.args import Parser

if TYPE_CHECKING:
    from agentledger.entrypoints.cli import Context

#: Default console ports: one per user, as the metrics port is (see ``settings.default_metrics_addr``).
CONSOLE_PORT_BASE = 8201
CONSOLE_PORT_SPAN = 799


def default_addr() -> str:
    import os

    return f"127.0.0.1:{CONSOLE_PORT_BASE + os.getuid() % CONSOLE_PORT_SPAN}"


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("console", "serve a live web console of the sessions, their timelines, why they stopped and the "
                           "audit, with a time control, until Ctrl-C")
    p.add_argument("--addr", default=None, metavar="HOST:PORT",
                   help="where to listen (default: 127.0.0.1:8201 + your uid mod 799, for root 127.0.0.1:8201; "
                        "port 0: any free port). An address other than loopback needs the token for every page")
    p.add_argument("--open", action="store_true", help="open the console in a web browser once it listens")
    p.add_argument("--actions", action="store_true",
                   help="allow stopping sessions, setting and cancelling fuses and retrying webhooks from the console "
                        "(default: read-only); they need the per-run token this prints (also kept in the home's "
                        "console.token, readable by you only)")
    assert isinstance(p, Parser)
    p.set_defaults(handler=cmd_console)


def parse_addr(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6); a usage error naming the form otherwise."""
    from agentledger.application.errors import UsageError

    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 <= int(port) < 65536:
        raise UsageError(f"--addr {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8201 (port 0: any free port)")
    return host, int(port)


def cmd_console(context: Context, args: argparse.Namespace) -> int:
    from agentledger.application.errors import LedgerError
    from agentledger.bootstrap import configured_location
    from agentledger.entrypoints.console import serving
    from agentledger.infrastructure.config import home_dir

    address = serving.Address(*parse_addr(args.addr or default_addr()))
    _ = context.store  # create or check the store here, with its errors reported as the CLI's
    guard, token_file, warnings = serving.plan_guard(address, actions=args.actions, home=home_dir())
    try:
        sock = serving.bind(address)
    except OSError as error:
        raise LedgerError(f"cannot listen on {address.host}:{address.port}: {error.strerror or error}") from None
    url = address.url(sock.getsockname()[1])
    for warning in warnings:
        print(f"agentledger: warning: {warning}", file=sys.stderr)
    print(f"agentledger console: {url}", flush=True)
    if guard.token is not None:
        print(f"  with this run's token ({'actions on' if guard.actions else 'read-only'}; kept in {token_file}): "
              f"{url}login?token={guard.token}", flush=True)
    else:
        print("  read-only ('--actions' to stop sessions and set fuses from it); Ctrl-C to stop", flush=True)
    if args.open:
        import webbrowser

        if not webbrowser.open(f"{url}login?token={guard.token}" if guard.token else url):
            print("agentledger: no web browser to open here: open the address above in yours", file=sys.stderr)
    serving.server(configured_location(), guard, sock).run()
    return 0
