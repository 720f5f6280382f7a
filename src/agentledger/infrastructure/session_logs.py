"""A session's output log (the file its agent's output goes to): notes appended there by the supervisor and the daemon.

The notes say what ran around the agent (``--on-create``, ``--check``) and how
it ended, with its output's tail, where ``agentledger logs`` shows them in order
with the agent's own output.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("agentledger.session_logs")


def append_note(path: str | None, text: str) -> None:
    """Append ``text`` (and a newline, if it has none) to the log at ``path``; best effort: a log that cannot be
    written is said in this process's log, never raised (the note's facts are recorded in the ledger too)."""
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8", errors="replace") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")
    except OSError as error:
        log.warning("could not write to the session's log %s: %s", path, error)
