"""What the read models' extensions share: the handlers of other aggregates' events on the sessions projection.

The directory locks (``locks.py``) and the worktrees' Workspace aggregates
(``workspaces.py``) each keep rows of their own, written by handlers that
``SessionsProjection`` (``sessions.py``) loads when the first such event is
projected (its ``_EXTENSIONS``). So catch-up, ``db rebuild``, ``--as-of`` and
``verify`` project them with everything else, in the same transaction as the
tracking position. Each handler gets the projection: only its open cursor.
"""

from __future__ import annotations

from typing import Any, Protocol


class Projecting(Protocol):
    """The sessions projection, as an extension's handler sees it (no import of it: it loads the extensions)."""

    cursor: Any
