"""The environment an agent (or an on-stop command) runs in: the user's, without agentledger's secrets.

An agent runs whatever the model asks for, and prints what it likes into its
captured output, so it must not inherit what only agentledger needs: the
store password and the webhook secret and URL (a webhook URL is often a
bearer token itself). What stays is everything else the user's shell had, so
the agent finds its own keys, PATH and configuration as if started by hand,
plus ``AGENTLEDGER_SESSION_ID`` (set by the supervisor).

``AGENTLEDGER_DB`` is kept without its password rather than dropped: an agent
that runs ``agentledger`` itself then still talks to the same ledger (and
authenticates the way the user's other tools do, e.g. ``~/.pgpass``) instead
of silently writing to a different, default one.

Users drop more with ``unset_env`` in the configuration or ``launch
--unset-env NAME`` (e.g. ``ANTHROPIC_API_KEY``, so that Claude Code uses the
subscription login).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: agentledger's variables that carry a secret: never passed on.
SECRET_VARIABLES = frozenset({"AGENTLEDGER_WEBHOOK_SECRET", "AGENTLEDGER_WEBHOOK_URL"})
#: Set by the supervisor for the process it starts; an inherited one would name another session.
OWN_VARIABLES = frozenset({"AGENTLEDGER_SESSION_ID"})
#: What ``--unset-env`` and ``unset_env`` accept: a variable name.
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def agent_environment(env: Mapping[str, str], unset: Iterable[str] = ()) -> dict[str, str]:
    """``env`` without agentledger's secrets and the ``unset`` names; the store URL without its password."""
    dropped = SECRET_VARIABLES | OWN_VARIABLES | set(unset)
    result = {name: value for name, value in env.items() if name not in dropped}
    if result.get("AGENTLEDGER_DB"):
        result["AGENTLEDGER_DB"] = without_password(result["AGENTLEDGER_DB"])
    return result


def without_password(url: str) -> str:
    """A store URL with no password, in its user part or as a ``password=`` query parameter."""
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
    except ValueError:  # not a URL we can take apart: keep none of it rather than leak it
        return ""
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not has_password and all(key != "password" for key, _ in pairs):
        return url  # untouched (urlunsplit would also lose the empty host of sqlite:////PATH)
    netloc = parts.netloc
    if has_password:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}@{host}"
    query = urlencode([(key, value) for key, value in pairs if key != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
