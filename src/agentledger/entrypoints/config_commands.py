"""``agentledger config show``: the effective configuration, where each value came from, secrets masked.

Translation only: ``infrastructure/settings.py`` reads and validates; this
prints. A bad configuration fails here exactly as it fails every other command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentledger.entrypoints.args import Parser, json_flag

if TYPE_CHECKING:
    from agentledger.entrypoints.cli import Context


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("config", "the configuration: $AGENTLEDGER_HOME/config.toml and AGENTLEDGER_* variables")
    actions = p.add_subparsers(dest="config_command", metavar="ACTION", parser_class=Parser)
    actions.required = True
    show_help = "print the effective configuration and where each value came from"
    sp = actions.add_parser("show", help=show_help, description=show_help)
    json_flag(sp)
    p.set_defaults(handler=cmd_config)


def cmd_config(context: Context, args: argparse.Namespace) -> int:
    from agentledger.entrypoints.render import table, write_json
    from agentledger.infrastructure.settings import load_settings, shown

    settings = load_settings()
    for warning in settings.warnings:
        sys.stderr.write(f"agentledger: warning: {warning}\n")
    view = shown(settings)
    if args.json:
        write_json(view)
        return 0
    print(f"home  {view['home']}")
    print(f"file  {view['file'] or '(none: ' + view['home'] + '/config.toml does not exist)'}")
    print()
    rows = [(key, _text(entry["value"]), entry["source"]) for key, entry in view["settings"].items()]
    for name, endpoint in view["webhooks"].items():
        rows += [(f"webhooks.{name}.{key}", _text(entry["value"]), entry["source"]) for key, entry in endpoint.items()]
    table(("KEY", "VALUE", "FROM"), rows)
    return 0


def _text(value: Any) -> str:
    """A value as the file writes it: ``true``/``false`` as TOML spells them, a list joined, none as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return ", ".join(value) if isinstance(value, list) else str(value)
