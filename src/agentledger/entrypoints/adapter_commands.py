"""``agentledger adapters``: the agent adapters, and whether each agent's binary is on PATH."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentledger.entrypoints.args import json_flag

if TYPE_CHECKING:
    from agentledger.entrypoints.cli import Context


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("adapters", "list the agent adapters, whether each agent is found on PATH, what each observes")
    json_flag(p)
    p.set_defaults(handler=cmd_adapters)


def adapter_rows() -> list[dict[str, Any]]:
    from agentledger.adapters import registry

    rows = []
    for name in registry.names():
        adapter = registry.get(name)
        path = adapter.which()
        rows.append({
            "name": name,
            "binary": adapter.binary,
            "found": path is not None if adapter.binary else None,
            "path": path,
            "default": name == registry.DEFAULT,
            "observes": adapter.observes,
        })
    return rows


def cmd_adapters(context: Context, args: argparse.Namespace) -> int:
    from agentledger.entrypoints.render import table, write_json_lines

    rows = adapter_rows()
    if args.json:
        write_json_lines(rows)
        return 0

    def found(row: dict[str, Any]) -> str:
        if row["binary"] is None:
            return "(any command)"
        return row["path"] if row["found"] else "not found on PATH"

    table(["ADAPTER", "BINARY", "FOUND", "OBSERVES"],
          [(r["name"] + (" (default)" if r["default"] else ""), r["binary"], found(r), r["observes"]) for r in rows])
    return 0
