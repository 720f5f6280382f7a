"""Agent adapters: how each coding agent is launched, and where its own records of a run are.

One module per agent (``opencode``, ``claude_code``, ``codex``), plus ``command``
for any other program; ``registry`` maps names to them; ``messages`` serves
``agentledger logs`` from the agents' own transcripts. Adapters only feed
facts into the log (``Session.AgentObserved``): they never decide that a
session stopped. See ``docs/adapters.md``.
"""

#: How many of an agent's own messages ``logs`` shows without ``-n`` (here, not in ``messages``: the CLI's
#: help quotes it, and building the parser must not import the adapters).
DEFAULT_MESSAGES = 50
