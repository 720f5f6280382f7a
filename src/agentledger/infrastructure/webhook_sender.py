"""POSTing one webhook body: httpx, one keep-alive client per endpoint, every failure an outcome.

httpx is imported when a sender is made (in the daemon), never by the CLI's
start-up. Redirects are not followed: a 3xx is an answer to retry, not a new
address to send a signed body to.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

from agentledger import __version__
from agentledger.domain.webhook_endpoint import WebhookEndpoint
from agentledger.domain.webhooks import HttpOutcome, sign

USER_AGENT = f"agentledger/{__version__}"
#: How much of an error answer to keep in ``last_error``.
ERROR_TEXT = 200


class WebhookSender:
    """Sends bodies to one endpoint over one connection pool, until :meth:`close`."""

    def __init__(self, endpoint: WebhookEndpoint) -> None:
        import socket

        import httpx

        self.endpoint = endpoint
        self._httpx = httpx
        # httpx writes the headers and the body in two sends; without TCP_NODELAY the body can
        # wait on the receiver's delayed ACK. One connection: one request at a time, in order.
        transport = httpx.HTTPTransport(
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        self.client = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(endpoint.timeout),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
        )

    def post(self, body: bytes, *, delivery_id: int, event_id: str, hook_type: str, sent_at: int,
             attempt: int) -> HttpOutcome:
        headers = headers_for(body, self.endpoint.secret, delivery_id=delivery_id, event_id=event_id,
                              hook_type=hook_type, sent_at=sent_at, attempt=attempt)
        try:
            response = self.client.post(self.endpoint.url, content=body, headers=headers)
        except self._httpx.TimeoutException:
            return HttpOutcome(None, f"timed out after {self.endpoint.timeout:g}s")
        except self._httpx.HTTPError as error:
            return HttpOutcome(None, _error_text(error))
        status = response.status_code
        failure = None if 200 <= status < 300 else f"HTTP {status}: {response.text[:ERROR_TEXT].strip()}".rstrip(": ")
        return HttpOutcome(status, failure, retry_after(response.headers.get("retry-after")))

    def close(self) -> None:
        self.client.close()


def headers_for(body: bytes, secret: str | None, *, delivery_id: int, event_id: str, hook_type: str, sent_at: int,
                attempt: int) -> dict[str, str]:
    """The headers of one attempt (``docs/webhooks.md`` lists them)."""
    headers = {
        "Idempotency-Key": event_id,
        "X-Agentledger-Event-Id": event_id,
        "X-Agentledger-Delivery": str(delivery_id),
        "X-Agentledger-Hook": hook_type,
        "X-Agentledger-Timestamp": str(sent_at),
        "X-Agentledger-Attempt": str(attempt),
    }
    if secret:
        signature = sign(secret, body)
        headers["X-Agentledger-Signature"] = signature
        headers["X-Hub-Signature-256"] = signature
    return headers


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - (time.time() if now is None else now))
    except (TypeError, ValueError):
        return None


def _error_text(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return f"{type(error).__name__}: {text}"[:ERROR_TEXT]
