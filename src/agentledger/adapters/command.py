"""The default adapter: any program, run as given. It has no native storage to observe."""

from __future__ import annotations

from agentledger.adapters.base import Adapter, LaunchPlan, LaunchRequest


class CommandAdapter(Adapter):
    name = "command"
    binary = None
    observes = "nothing (the process and its exit only)"

    def build_launch(self, request: LaunchRequest) -> LaunchPlan:
        return LaunchPlan(argv=list(request.argv), stdin_path=request.prompt_path)
