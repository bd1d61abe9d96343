"""Signed VoiceDock webhooks: an accelerator for call tracking, never the only source of truth.

A verified `status-update` or `end-of-call-report` becomes a call object the engine records the
same way as a poll result; duplicates are harmless because recording an outcome is a
compare-and-set in the store. Polling stays the fallback for webhooks that never come.

Signature (voicedock-api.md §8): ``X-Webhook-Signature: sha256=<hex HMAC-SHA256(secret,
"{X-Webhook-Timestamp}.{raw body}")>``; we compare in constant time and reject timestamps more
than ``max_age_s`` away from our clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dialer.errors import StoreUnavailable, WebhookRejected

log = structlog.get_logger("dialer.webhooks")

MAX_AGE_S = 300.0
#: Largest body read. A long call's report (its transcript) is tens of kilobytes; a body past
#: this is refused unread, so no stranger can make the daemon's process run out of memory
#: (the outcome of a real call whose report this was is still read by polling).
MAX_BODY_BYTES = 4 * 1024 * 1024
#: status-update statuses that end a call, and the call-object status each one stands for
TERMINAL_UPDATES = {"ended": "ended", "ended-with-error": "failed"}


async def _body(request: Request) -> bytes:
    """The body, refused (413) past ``MAX_BODY_BYTES`` whatever Content-Length claims."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise WebhookRejected(f"body of {declared} bytes is too large", status=413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise WebhookRejected("body is too large", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The header value VoiceDock sends (and the simulator produces)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: str,
    *,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    max_age_s: float = MAX_AGE_S,
) -> None:
    """Raise WebhookRejected unless the signature is right and the timestamp fresh."""
    check_headers(timestamp=timestamp, signature=signature, now=now, max_age_s=max_age_s)
    assert timestamp is not None and signature is not None
    if not hmac.compare_digest(sign(secret, timestamp, body), signature.strip()):
        raise WebhookRejected("signature does not match")


def check_headers(
    *, timestamp: str | None, signature: str | None, now: float, max_age_s: float = MAX_AGE_S
) -> None:
    """The checks that need no body: both headers there, the timestamp a fresh one."""
    if not timestamp or not signature:
        raise WebhookRejected("missing X-Webhook-Timestamp or X-Webhook-Signature")
    try:
        sent = float(timestamp)
    except ValueError:
        raise WebhookRejected("X-Webhook-Timestamp is not a unix timestamp") from None
    if not abs(now - sent) <= max_age_s:  # also refuses nan and inf
        raise WebhookRejected(f"timestamp {timestamp} is more than {max_age_s:g}s from now")


@dataclass(frozen=True, kw_only=True)
class WebhookEvent:
    """What a webhook told us about one call, as a call object the engine understands."""

    kind: str
    call_id: str | None
    attempt_id: int | None
    terminal: bool
    call: dict[str, Any]

    @property
    def awaits_report(self) -> bool:
        """An `ended` status-update: the end-of-call-report with the call's data follows it
        (§8); an `ended-with-error` one carries its error and may have no report."""
        return self.kind == "status-update" and self.terminal and self.call["status"] == "ended"


def parse_event(payload: object) -> WebhookEvent:
    if not isinstance(payload, Mapping):
        raise WebhookRejected("body is not a JSON object")
    message = payload.get("message")
    if not isinstance(message, Mapping):
        raise WebhookRejected("body has no 'message' object")
    kind = str(message.get("type") or "")
    call_info = message.get("call") if isinstance(message.get("call"), Mapping) else {}
    assert isinstance(call_info, Mapping)
    call_id = call_info.get("id")
    assistant = message.get("assistant") if isinstance(message.get("assistant"), Mapping) else {}
    assert isinstance(assistant, Mapping)
    metadata = assistant.get("metadata") if isinstance(assistant.get("metadata"), Mapping) else {}
    assert isinstance(metadata, Mapping)
    attempt_id = metadata.get("dialer_attempt_id")
    customer = message.get("customer") if isinstance(message.get("customer"), Mapping) else {}
    assert isinstance(customer, Mapping)
    call: dict[str, Any] = {"id": call_id, "caller_phone": customer.get("number")}
    if kind == "status-update":
        status = str(message.get("status") or call_info.get("status") or "")
        terminal = status in TERMINAL_UPDATES
        call.update(
            status=TERMINAL_UPDATES.get(status, status),
            error=message.get("error"),
            end_reason=message.get("end_reason") or call_info.get("end_reason"),
        )
    elif kind == "end-of-call-report":
        status = str(call_info.get("status") or "ended")
        terminal = True
        call.update(
            status=TERMINAL_UPDATES.get(status, status),
            error=message.get("error"),
            end_reason=message.get("end_reason") or call_info.get("end_reason"),
            duration_seconds=message.get("duration_seconds"),
            summary=message.get("summary"),
            analysis_result=message.get("analysis"),
            messages=message.get("messages"),
            recording_url=message.get("recording_url"),
            started_at=call_info.get("started_at"),
            ended_at=call_info.get("ended_at"),
        )
    else:
        terminal = False
    return WebhookEvent(
        kind=kind,
        call_id=str(call_id) if call_id else None,
        attempt_id=_as_int(attempt_id),
        terminal=terminal,
        call=call,
    )


def _as_int(value: object) -> int | None:
    """Our own attempt id, echoed back in the assistant metadata (UNCONFIRMED that it is)."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def webhook_app(
    secret: str,
    on_event: Callable[[WebhookEvent], Awaitable[None]],
    *,
    clock: Callable[[], float] = time.time,
    path: str = "/webhooks/voicedock",
) -> Starlette:
    """The receiver: verify, parse, hand over, answer 2xx fast (VoiceDock ignores the body)."""

    async def receive(request: Request) -> Response:
        timestamp = request.headers.get("x-webhook-timestamp")
        signature = request.headers.get("x-webhook-signature")
        try:
            # Before reading a byte of the body: a stranger's request costs us nothing.
            check_headers(timestamp=timestamp, signature=signature, now=clock())
            body = await _body(request)
            verify(secret, timestamp=timestamp, signature=signature, body=body, now=clock())
        except WebhookRejected as exc:
            log.warning("dialer.webhook.rejected", reason=str(exc))
            return JSONResponse({"error": "rejected"}, status_code=exc.status)
        try:
            event = parse_event(json.loads(body))
        except (WebhookRejected, json.JSONDecodeError, UnicodeDecodeError) as exc:
            log.warning("dialer.webhook.unreadable", reason=str(exc))
            return JSONResponse({"error": "unreadable"}, status_code=400)
        log.info(
            "dialer.webhook.received",
            kind=event.kind,
            call_id=event.call_id,
            terminal=event.terminal,
        )
        try:
            await on_event(event)
        except StoreUnavailable:
            # Not recorded: ask for the delivery again; our polls read the call meanwhile.
            log.warning("dialer.webhook.deferred", kind=event.kind, call_id=event.call_id)
            return JSONResponse({"error": "unavailable"}, status_code=503)
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route(path, receive, methods=["POST"])])
