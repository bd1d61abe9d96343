"""Webhook signature checks and parsing, through the real ASGI app."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from dialer.webhooks import (
    MAX_BODY_BYTES,
    WebhookEvent,
    WebhookRejected,
    parse_event,
    sign,
    verify,
    webhook_app,
)

SECRET = "whsec_test"
NOW = 1_764_000_000.0


def report(call_id: str = "call-1", attempt_id: object = 7) -> dict[str, object]:
    return {
        "message": {
            "type": "end-of-call-report",
            "timestamp": "2026-11-25T12:00:00.000Z",
            "call": {"id": call_id, "type": "outbound_phone_call", "status": "ended"},
            "customer": {"number": "+31612345678"},
            "assistant": {"metadata": {"dialer_attempt_id": attempt_id}},
            "duration_seconds": 61,
            "summary": "Confirmed.",
            "analysis": {"sentiment": 9},
            "messages": [{"role": "assistant", "content": "Hello"}],
        }
    }


def test_verify_accepts_a_fresh_correct_signature() -> None:
    body = b'{"a": 1}'
    verify(
        SECRET,
        timestamp=str(int(NOW)),
        signature=sign(SECRET, str(int(NOW)), body),
        body=body,
        now=NOW,
    )


@pytest.mark.parametrize(
    ("timestamp", "signature_for", "body", "reason"),
    [
        (str(int(NOW)), b"other", b"body", "does not match"),
        (str(int(NOW) - 301), b"body", b"body", "from now"),
        (str(int(NOW) + 301), b"body", b"body", "from now"),
        ("yesterday", b"body", b"body", "unix timestamp"),
        ("nan", b"body", b"body", "from now"),
        ("inf", b"body", b"body", "from now"),
        (None, b"body", b"body", "missing"),
    ],
)
def test_verify_rejects(
    timestamp: str | None, signature_for: bytes, body: bytes, reason: str
) -> None:
    signature = sign(SECRET, timestamp or "0", signature_for)
    with pytest.raises(WebhookRejected, match=reason):
        verify(SECRET, timestamp=timestamp, signature=signature, body=body, now=NOW)


def test_verify_rejects_wrong_secret() -> None:
    body = b"{}"
    with pytest.raises(WebhookRejected):
        verify(
            SECRET,
            timestamp=str(int(NOW)),
            signature=sign("other", str(int(NOW)), body),
            body=body,
            now=NOW,
        )


def test_end_of_call_report_becomes_a_terminal_call() -> None:
    event = parse_event(report())
    assert event.terminal and event.call_id == "call-1" and event.attempt_id == 7
    assert event.call["status"] == "ended" and event.call["duration_seconds"] == 61
    assert event.call["analysis_result"] == {"sentiment": 9}


@pytest.mark.parametrize(
    ("status", "terminal", "mapped"),
    [
        ("in-progress", False, "in-progress"),
        ("ended", True, "ended"),
        ("ended-with-error", True, "failed"),
    ],
)
def test_status_updates(status: str, terminal: bool, mapped: str) -> None:
    event = parse_event(
        {
            "message": {
                "type": "status-update",
                "status": status,
                "error": "STT down",
                "call": {"id": "c9"},
            }
        }
    )
    assert (event.terminal, event.call["status"]) == (terminal, mapped)


def test_garbage_metadata_is_ignored() -> None:
    assert parse_event(report(attempt_id="drop table")).attempt_id is None
    with pytest.raises(WebhookRejected):
        parse_event({"nope": 1})


async def test_app_verifies_and_hands_over_each_delivery() -> None:
    seen: list[WebhookEvent] = []

    async def on_event(event: WebhookEvent) -> None:
        seen.append(event)

    app = webhook_app(SECRET, on_event, clock=lambda: NOW)
    body = json.dumps(report()).encode()
    ts = str(int(NOW))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://hook"
    ) as client:
        good = {"X-Webhook-Timestamp": ts, "X-Webhook-Signature": sign(SECRET, ts, body)}
        assert (
            await client.post("/webhooks/voicedock", content=body, headers=good)
        ).status_code == 200
        assert (
            await client.post("/webhooks/voicedock", content=body, headers=good)
        ).status_code == 200
        bad = {"X-Webhook-Timestamp": ts, "X-Webhook-Signature": sign(SECRET, ts, body + b" ")}
        assert (
            await client.post("/webhooks/voicedock", content=body, headers=bad)
        ).status_code == 401
        assert (
            await client.post(
                "/webhooks/voicedock",
                content=b"not json",
                headers={
                    "X-Webhook-Timestamp": ts,
                    "X-Webhook-Signature": sign(SECRET, ts, b"not json"),
                },
            )
        ).status_code == 400
    assert [e.call_id for e in seen] == [
        "call-1",
        "call-1",
    ]  # duplicates reach the engine; it dedupes


async def _ignore(event: WebhookEvent) -> None:
    raise AssertionError(f"handed over: {event}")


def _client() -> httpx.AsyncClient:
    app = webhook_app(SECRET, _ignore, clock=lambda: NOW)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hook")


async def test_an_unsigned_body_is_refused_before_it_is_read() -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(64):  # 64 MiB, if anyone read it
            sent += 1
            yield b"x" * (1024 * 1024)

    async with _client() as client:
        answer = await client.post("/webhooks/voicedock", content=endless())
    assert answer.status_code == 401
    assert sent <= 1  # at most the chunk the transport hands over before the app answers


@pytest.mark.parametrize("declared", [True, False], ids=["content_length", "chunked"])
async def test_a_signed_body_past_the_cap_is_refused_unread(declared: bool) -> None:
    ts = str(int(NOW))
    body = b"x" * (MAX_BODY_BYTES + 1)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    headers = {"X-Webhook-Timestamp": ts, "X-Webhook-Signature": sign(SECRET, ts, body)}
    async with _client() as client:
        answer = await client.post(
            "/webhooks/voicedock", content=body if declared else chunks(), headers=headers
        )
    assert answer.status_code == 413


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"42", b'{"message": []}'])
async def test_a_signed_body_that_is_not_an_event_is_a_400(body: bytes) -> None:
    ts = str(int(NOW))
    headers = {"X-Webhook-Timestamp": ts, "X-Webhook-Signature": sign(SECRET, ts, body)}
    async with _client() as client:
        answer = await client.post("/webhooks/voicedock", content=body, headers=headers)
    assert answer.status_code == 400


async def test_a_delivery_the_database_cannot_take_now_is_asked_for_again() -> None:
    from dialer.errors import DatabaseUnreachable

    async def on_event(event: WebhookEvent) -> None:
        raise DatabaseUnreachable("database error: connection refused")

    app = webhook_app(SECRET, on_event, clock=lambda: NOW)
    body = json.dumps(report()).encode()
    ts = str(int(NOW))
    signed = {"X-Webhook-Timestamp": ts, "X-Webhook-Signature": sign(SECRET, ts, body)}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://hook"
    ) as client:
        answer = await client.post("/webhooks/voicedock", content=body, headers=signed)
    assert answer.status_code == 503  # a sender that retries delivers later; polls read it anyway
