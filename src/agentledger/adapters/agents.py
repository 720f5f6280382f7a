"""The ``Agents`` port (``application/ports.py``) over the adapters' registry, discovery and observer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentledger.adapters import discovery, registry
from agentledger.adapters.base import Adapter, LaunchPlan, LaunchRequest, NativeRef
from agentledger.adapters.observer import Observer
from agentledger.domain.vocabulary import NativeIdSource


class KnownAgents:
    """Every agent in ``registry.py``."""

    def for_command(self, cmdline: Sequence[str]) -> Adapter | None:
        return discovery.adapter_for_command(cmdline)

    def named(self, name: str | None) -> Adapter:
        return registry.get(name)

    def for_session(self, name: str | None) -> Adapter:
        return registry.for_session(name)

    def program_name(self, cmdline: Sequence[str]) -> str | None:
        return discovery.program_name(cmdline)

    def agent_names(self) -> list[str]:
        return registry.agent_names()

    def launch_plan(self, agent: str, *, session_id: str, cwd: str, prompt_path: str, model: str | None,
                    name: str | None) -> LaunchPlan:
        request = LaunchRequest(session_id=session_id, cwd=cwd, prompt_path=prompt_path, model=model, name=name)
        return registry.get(agent).build_launch(request)

    def native_facts(self, adapter: Adapter, native_session_id: str, path: str, run_since: float) -> dict[str, Any]:
        facts: dict[str, Any] = adapter.read_facts(NativeRef(native_session_id, path, run_since=run_since), {})[0]
        return facts

    def observer(self, adapter: Adapter, *, cwd: str, started_at: float, pid: int | None, hint: str | None,
                 hint_source: str, output_path: str | None, argv: Sequence[str],
                 run_started_at: float | None) -> Observer:
        return Observer(adapter, cwd=cwd, started_at=started_at, pid=pid, hint=hint,
                        hint_source=NativeIdSource(hint_source), output_path=output_path, argv=argv,
                        run_started_at=run_started_at)
