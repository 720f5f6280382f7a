"""Adapters by name. Adding an agent is adding its module and one line here."""

from __future__ import annotations

from agentledger.adapters.base import Adapter
from agentledger.adapters.claude_code import ClaudeCodeAdapter
from agentledger.adapters.codex import CodexAdapter
from agentledger.adapters.command import CommandAdapter
from agentledger.adapters.opencode import OpencodeAdapter
from agentledger.adapters.pi import PiAdapter

DEFAULT = "command"

_ADAPTERS: dict[str, Adapter] = {a.name: a for a in (
    CommandAdapter(), OpencodeAdapter(), ClaudeCodeAdapter(), CodexAdapter(), PiAdapter(),
)}


class UnknownAdapter(KeyError):
    def __str__(self) -> str:
        return f"unknown adapter {self.args[0]!r} (one of: {', '.join(names())})"


def names() -> list[str]:
    return list(_ADAPTERS)


def agent_names() -> list[str]:
    """The adapters that launch an agent from a prompt (all but ``command``)."""
    return [name for name in _ADAPTERS if name != DEFAULT]


def get(name: str | None) -> Adapter:
    """The adapter called ``name``; ``command`` for None or a name recorded by an older version."""
    try:
        return _ADAPTERS[name or DEFAULT]
    except KeyError:
        raise UnknownAdapter(name) from None


def for_session(name: str | None) -> Adapter:
    """The adapter to observe a session with: an unknown name (a label, say) observes nothing."""
    return _ADAPTERS.get(name or DEFAULT, _ADAPTERS[DEFAULT])
