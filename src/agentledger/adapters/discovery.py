"""Which adapter, if any, a running command line belongs to: ``discover`` and ``adopt`` ask this.

Agents are often started through an interpreter or a wrapper: ``node
/usr/bin/codex exec ...`` (which runs the native ``.../bin/codex``), a
``claude.exe`` behind the ``claude`` symlink, a Python stand-in. So the
command is recognised by the base name of its program, or of the script an
interpreter runs, with a ``.exe``/``.js`` suffix dropped, compared to each
adapter's ``binary``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from agentledger.adapters import registry
from agentledger.adapters.base import Adapter

#: Programs that run the agent's script given as their first argument.
_INTERPRETER = re.compile(r"^(node|nodejs|bun|deno|python\d*(\.\d+)?)$")
_SUFFIX = re.compile(r"\.(exe|js|cjs|mjs)$")


def program_name(cmdline: Sequence[str]) -> str | None:
    """The name the command line runs as: its program's, or its script's when an interpreter runs one."""
    if not cmdline:
        return None
    name = _base(cmdline[0])
    if _INTERPRETER.match(name):
        script = next((arg for arg in cmdline[1:] if not arg.startswith("-")), None)
        return _base(script) if script else name
    return name


def adapter_for_command(cmdline: Sequence[str]) -> Adapter | None:
    """The agent adapter whose binary ``cmdline`` runs, or None (not an agent we know)."""
    name = program_name(cmdline)
    for adapter_name in registry.agent_names():
        adapter = registry.get(adapter_name)
        if adapter.binary and name == adapter.binary:
            return adapter
    return None


def _base(path: str) -> str:
    return _SUFFIX.sub("", os.path.basename(path))
