"""agentledger: an event-sourced control plane for AI coding-agent sessions."""

__version__ = "0.1.0"
