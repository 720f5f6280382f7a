"""Webhooks, the pure part: which hooks an event yields, their bodies, when to retry, signatures.

Everything here is a function of values: the event and the session's state
at that event's version (so a body is exact however late it is built), the
HTTP outcome and the clock reading handed in, a random source for jitter.
The outbox (``application/webhooks.py``) stores and schedules; the sender
(``infrastructure/webhook_sender.py``) talks HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
import signal as signals
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from agentledger.domain.durations import format_duration
from agentledger.domain.session import Session
from agentledger.domain.vocabulary import StopCause, StopReason
from agentledger.domain.webhook_endpoint import STARTED, STOPPED, TIMEOUT, UNWATCHED

#: Namespace of event ids: uuid5(this, "<session id hex>/<version>") is the same in every process, forever.
EVENT_ID_NAMESPACE = UUID("5b0f4d8e-8a9c-5a57-9f1e-6167656e746c")
SIGNATURE_PREFIX = "sha256="


def event_id(session_id: UUID, version: int) -> str:
    """The idempotency key of a session's event: stable across retries, restarts and re-enqueues."""
    return str(uuid5(EVENT_ID_NAMESPACE, f"{session_id.hex}/{version}"))


# -- which hooks -------------------------------------------------------------------------------------


def hook_types(event: Any, state: Session | None) -> tuple[str, ...]:
    """The hook types ``event`` yields; ``state`` is its session at the event's version.

    A launch whose spawn failed (no pid) is no start, but its ``Stopped`` is a
    stop. Only the first timeout stop request of a session is a timeout: a
    later one (the SIGKILL after the grace period) is the same timeout.
    """
    if isinstance(event, Session.Launched):
        return (STARTED,) if event.pid is not None else ()
    if isinstance(event, Session.Stopped):
        return (STOPPED,)
    if isinstance(event, Session.FuseExpired):
        return (UNWATCHED,)
    if isinstance(event, Session.StopRequested) and event.cause == StopCause.TIMEOUT.value:
        requests = state.stop_requests if state is not None else []
        timeouts = [r for r in requests if r.get("cause") == StopCause.TIMEOUT.value]
        return (TIMEOUT,) if len(timeouts) <= 1 else ()
    return ()


# -- bodies ------------------------------------------------------------------------------------------


def body(hook_type: str, event: Any, state: Session, position: int) -> dict[str, Any]:
    """The JSON body (without ``sent_at``, which each attempt adds) of ``hook_type`` for ``event``."""
    common = {
        "hook_type": hook_type,
        "session_id": state.id.hex,
        "cwd": state.cwd,
        "adapter": state.adapter,
        "meta": meta(state),
        "timestamp": _utc(event.timestamp),
        "position": position,
    }
    if hook_type == STOPPED:
        return {**common, **_stopped(event, state)}
    if hook_type == STARTED:
        return {**common, "pid": state.pid, "supervisor_pid": state.supervisor_pid, "log_path": state.log_path,
                "timeout_seconds": state.timeout,
                "summary": f"session {_label(state)} started: {' '.join(state.argv)[:200]}"}
    if hook_type == UNWATCHED:
        return {**common, "expired_at": _utc(event.expired_at), "decided_by": event.decided_by,
                "evidence": event.evidence,
                "summary": f"session {_label(state)}: fuse lapsed at {_utc(event.expired_at)} with PID "
                           f"{state.pid} alive; nobody watches it now"}
    if hook_type == TIMEOUT:
        deadline = state.deadline
        return {**common, "timeout_seconds": state.timeout, "deadline": _utc(deadline) if deadline else None,
                "signal": event.signal, "grace_seconds": event.grace, "requested_by": event.requested_by,
                "note": event.note,
                "summary": f"session {_label(state)}: its timeout"
                           f"{f' ({format_duration(state.timeout)})' if state.timeout else ''} passed, "
                           f"{event.signal} sent to its process group"}
    raise ValueError(f"unknown hook type {hook_type!r}")


def meta(state: Session) -> dict[str, Any]:
    """What a receiver may want to route on: who, where, which model, which process."""
    return {"name": state.name, "group": state.group, "labels": dict(state.labels), "model": state.model,
            "host": state.host, "pid": state.pid, "argv": list(state.argv), "launched_by": state.launched_by,
            "started_at": _utc(state.created_on)}


def exit_status(exit_code: int | None, signal_name: str | None) -> int | None:
    """The shell's exit status: the code, or 128 + the signal's number; None when nobody saw the exit."""
    if exit_code is not None:
        return exit_code
    if signal_name:
        try:
            return 128 + signals.Signals[signal_name].value
        except KeyError:
            return None
    return None


def _stopped(event: Any, state: Session) -> dict[str, Any]:
    duration = (event.timestamp - state.created_on).total_seconds()
    status = exit_status(event.exit_code, event.signal)
    return {
        "duration_seconds": round(duration, 3),
        "exit_status": status,
        "signal": event.signal,
        "summary": stop_summary(state, event.reason, status, event.signal, duration, event.note),
        "stop_reason": event.reason,
        "decided_by": event.decided_by,
        "evidence": event.evidence,
        "note": event.note,
    }


def stop_summary(state: Session, reason: str, status: int | None, signal_name: str | None, duration: float,
                 note: str | None) -> str:
    """One line a person reads in a chat channel: which session, how it ended, after how long."""
    how = {
        StopReason.EXITED.value: f"exited with status {status}",
        StopReason.SIGNALLED.value: f"was killed by {signal_name}",
        StopReason.USER.value: "was stopped on request",
        StopReason.TIMEOUT.value: "was stopped by its timeout",
        StopReason.RECONCILED.value: "was found gone by the reconciler (no live fuse, PID dead)",
        StopReason.SPAWN_FAILED.value: "could not be started",
        StopReason.SETUP_FAILED.value: "was not started: its --on-create command failed",
        StopReason.HOST_LOST.value: "was written off with its host",
    }.get(reason, f"stopped ({reason})")
    if reason in (StopReason.USER.value, StopReason.TIMEOUT.value, StopReason.SIGNALLED.value) and status is not None:
        how += f" (exit status {status})"
    text = f"session {_label(state)} {how} after {format_duration(max(duration, 0.0))}"
    if note and reason in (StopReason.SPAWN_FAILED.value, StopReason.SETUP_FAILED.value, StopReason.HOST_LOST.value, StopReason.USER.value,
                           StopReason.EXITED.value):  # an exit's note is its final error message
        text += f": {note}"
    return " ".join(text.split())[:300]


def _label(state: Session) -> str:
    return f"{state.id.hex[:12]} ({state.name})" if state.name else state.id.hex[:12]


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def attempt_body(payload: str, sent_at: int) -> bytes:
    """The stored payload (a JSON object) with ``"sent_at"`` added: the bytes that are signed and sent.

    Spliced as text rather than parsed and re-serialised: the payload is ours
    and always a non-empty object, and this runs once per attempt.
    """
    text = payload.rstrip()
    if not text.endswith("}") or text == "{}":
        raise ValueError("a webhook payload is a non-empty JSON object")
    return f'{text[:-1]},"sent_at":{int(sent_at)}}}'.encode()


# -- retries -----------------------------------------------------------------------------------------


def backoff_delay(attempt: int, *, initial: float, maximum: float, random: Callable[[], float]) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 = the first).

    Exponential from ``initial``, doubling up to ``maximum``, with "equal
    jitter": half the step is fixed, the other half random, so retries from
    many deliveries spread out but none comes back at once.
    ``random()`` returns a float in [0, 1).
    """
    step = min(maximum, initial * (1 << min(max(attempt - 1, 0), 62)))
    return step / 2 + random() * step / 2


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True)
class HttpOutcome:
    """What one POST came to: a status, or an error before any status (refused, timed out, reset)."""

    status: int | None
    error: str | None = None
    retry_after: float | None = None  # seconds, from a Retry-After header


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    retry_at: float | None = None  # epoch seconds, for RETRY
    why: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    initial: float
    maximum: float
    give_up_after: float


def judge(outcome: HttpOutcome, *, attempts: int, first_attempt_at: float, now: float, policy: RetryPolicy,
          random: Callable[[], float]) -> Decision:
    """Delivered, retry at a time, or dead-letter, after attempt number ``attempts`` ended at ``now``.

    2xx is delivered. A 4xx other than 408 and 429 will not get better by
    asking again: dead at once. Everything else (3xx, 5xx, 408, 429, no answer)
    is retried with backoff (or after Retry-After on 429/503) until
    ``give_up_after`` has passed since the first attempt; the last retry is
    held to that moment, so a delivery is tried for its whole allowance.
    """
    status = outcome.status
    if status is not None and 200 <= status < 300:
        return Decision(Verdict.DELIVERED, why=f"HTTP {status}")
    what = f"HTTP {status}" if status is not None else (outcome.error or "no answer")
    if status is not None and 400 <= status < 500 and status not in (408, 429):
        return Decision(Verdict.DEAD, why=f"{what}: the receiver refused it")
    deadline = first_attempt_at + policy.give_up_after
    if now >= deadline:
        return Decision(Verdict.DEAD, why=f"{what}: still failing after {format_duration(policy.give_up_after)}")
    if status in (429, 503) and outcome.retry_after is not None:
        delay = max(0.0, outcome.retry_after)
    else:
        delay = backoff_delay(attempts, initial=policy.initial, maximum=policy.maximum, random=random)
    return Decision(Verdict.RETRY, retry_at=min(now + delay, deadline), why=what)


# -- signatures --------------------------------------------------------------------------------------


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the raw body under the endpoint's secret."""
    # surrogateescape: a secret read from argv or the environment keeps its raw bytes
    return SIGNATURE_PREFIX + hmac.new(secret.encode("utf-8", "surrogateescape"), body, hashlib.sha256).hexdigest()


class InvalidSignature(ValueError):
    """Why a body, signature and timestamp do not check out (one line)."""


def verify(secret: str, body: bytes, signature: str, *, timestamp: int | None = None, now: float | None = None,
           tolerance: float = 300.0) -> None:
    """Raise :class:`InvalidSignature` unless ``signature`` signs ``body`` and, given ``timestamp``
    (the ``X-Agentledger-Timestamp`` header), the body's ``sent_at`` equals it and it is within
    ``tolerance`` seconds of ``now``. The timestamp is trusted only once the signature is."""
    if not signature.startswith(SIGNATURE_PREFIX) or not signature.isascii():  # compare_digest takes ASCII only
        raise InvalidSignature(f"the signature must be {SIGNATURE_PREFIX!r} and hexadecimal digits")
    if not hmac.compare_digest(sign(secret, body), signature.strip()):
        raise InvalidSignature("the signature does not match the body (wrong secret, or the body was changed)")
    if timestamp is None:
        return
    import json

    try:
        sent_at = json.loads(body).get("sent_at")
    except (ValueError, AttributeError, RecursionError):  # RecursionError: nested too deep
        raise InvalidSignature("the body is not a JSON object") from None
    if sent_at != timestamp:
        raise InvalidSignature(f"the timestamp {timestamp} is not the body's sent_at ({sent_at})")
    if now is None:
        return
    distance = abs(now - min(max(timestamp, -2**62), 2**62))  # clamped: a float can hold it
    if distance > tolerance:
        raise InvalidSignature(f"the timestamp is {format_duration(distance)} away from now "
                               f"(tolerance {format_duration(tolerance)}): a replay?")
