"""What a webhook endpoint is: where to POST which hook types, and how hard to try.

Apart from ``domain/webhooks.py`` (the hooks an event yields, their bodies),
so that reading the configuration, at every command's start, imports no
aggregate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STARTED, STOPPED, UNWATCHED, TIMEOUT = "session.started", "session.stopped", "session.unwatched", "session.timeout"
#: Every hook type, in the order of a session's life.
HOOK_TYPES = (STARTED, STOPPED, UNWATCHED, TIMEOUT)


@dataclass(frozen=True)
class WebhookEndpoint:
    """Where to POST which session events, and how hard to try."""

    name: str
    url: str
    secret: str | None = field(default=None, repr=False)
    events: tuple[str, ...] = HOOK_TYPES
    timeout: float = 10.0  # per request
    give_up_after: float = 86400.0  # then dead-letter
    retry_initial: float = 1.0  # first backoff; doubles, with jitter
    retry_max: float = 600.0  # longest backoff
    start: str = "now"  # or "beginning": where a new endpoint starts reading the log (now: no flood of old stops)
