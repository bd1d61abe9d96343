"""The VoiceDock client against httpx.MockTransport: a scripted server routed on the URL path.

The budget runs on virtual time (see test_ratelimit.py), so Retry-After pauses cost nothing, and
backoff is zero, so retries are immediate.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import structlog

from dialer.errors import (
    AmbiguousCreate,
    DialerError,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    ProviderError,
    RateLimited,
    ServerError,
    TransportFailure,
    Unauthorized,
)
from dialer.ratelimit import MAX_RETRY_AFTER_S, RequestBudget
from dialer.voicedock import TERMINAL_STATUSES, Call, VoiceDockClient
from tests.clock import FakeClock

KEY = "fl_live_s3cr3t_8f2a41c9d0e7"
BASE = "https://api.voicedock.test/api/v1"
WALL0 = 1_700_000_000.0

CREATE_PATH = "/api/v1/calls/outbound"
BODY = {"destination": "+31612345678", "assistant_id": "6f1c0d4e-assistant", "number_id": "n-1"}
CREATED = {"success": True, "call_id": "call-outbound-abc123", "status": "dialing"}

# the GET /calls/{id} example of the docs (§5), plus a field we do not model
CALL = {
    "id": "call-_+31623731537_XqaQxRRgAzYc",
    "caller_phone": "+31623731537",
    "assistant_phone": "+31850835037",
    "status": "ended",
    "direction": "outbound",
    "end_reason": "customer-ended-call",
    "error": None,
    "started_at": "2025-12-13T12:00:05.000Z",
    "ended_at": "2025-12-13T12:02:05.000Z",
    "duration_seconds": 120,
    "summary": "Confirmed the appointment.",
    "analysis_result": {"summary": "confirmed", "sentiment": 8},
    "messages": [{"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Hi"}],
    "room_name": "outbound-abc12345",
    "recording_url": None,
    "agent_id": "6f1c0d4e-assistant",
    "agent_name": "Reminders",
    "number_id": "n-1",
    "phone_number": "+31850835037",
    "created_at": "2025-12-13T12:00:00.000Z",
    "updated_at": "2025-12-13T12:02:06.000Z",
}
CALL_PATH = "/api/v1/calls/call-_+31623731537_XqaQxRRgAzYc"


Reply = httpx.Response | type[httpx.HTTPError]


class Server:
    """Scripted replies per (method, path); every request seen is kept with its virtual time."""

    def __init__(self, time: FakeClock) -> None:
        self.time = time
        self.scripts: dict[tuple[str, str], list[Reply]] = {}
        self.seen: list[tuple[float, httpx.Request]] = []

    def on(self, method: str, path: str, *replies: Reply) -> None:
        self.scripts.setdefault((method, path), []).extend(replies)

    def count(self, method: str, path: str) -> int:
        return sum(1 for _, r in self.seen if (r.method, r.url.path) == (method, path))

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((self.time.monotonic(), request))
        # the key in a local of a frame that raises: a traceback printed with locals shows it
        authorization = request.headers["Authorization"]
        assert authorization == f"Bearer {KEY}"
        script = self.scripts.get((request.method, request.url.path), [])
        if not script:
            return httpx.Response(418, json={"error": f"unscripted {request.url.path}"})
        reply = script.pop(0) if len(script) > 1 else script[0]  # the last reply repeats
        if isinstance(reply, type):
            raise reply(f"simulated {reply.__name__}")
        return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)


@pytest.fixture
def fake() -> FakeClock:
    """Virtual monotonic and wall clocks; the budget's sleep jumps ahead (it is the only
    sleeper), after letting whoever it just granted a slot run."""
    return FakeClock(datetime.fromtimestamp(WALL0, UTC))


@pytest.fixture
def server(fake: FakeClock) -> Server:
    return Server(fake)


def budget_for(fake: FakeClock, rpm: int = 6000) -> RequestBudget:
    return RequestBudget(
        rpm, margin=0, clock=fake.monotonic, wall_clock=fake.unix, sleep=fake.sleep
    )


def client_for(
    server: Server, *, budget: RequestBudget | None = None, **kwargs: Any
) -> VoiceDockClient:
    kwargs.setdefault("backoff_base_s", 0.0)
    return VoiceDockClient(
        base_url=BASE,
        api_key=KEY,
        budget=budget or budget_for(server.time),
        transport=httpx.MockTransport(server.handler),
        **kwargs,
    )


def reply(status: int, body: Any = None, **headers: str) -> httpx.Response:
    fixed = {k.replace("_", "-"): v for k, v in headers.items()}
    if isinstance(body, str):
        return httpx.Response(status, text=body, headers=fixed)
    return httpx.Response(status, json=body if body is not None else {}, headers=fixed)


def rate_limited(retry_after: str | None = "7", reset_in: float | None = 7) -> httpx.Response:
    headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0"}
    if reset_in is not None:
        headers["X-RateLimit-Reset"] = str(int(WALL0 + reset_in))
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    body = {"error": {"code": "rate_limit_exceeded", "message": "Too many requests."}}
    return httpx.Response(429, json=body, headers=headers)


# ---------------------------------------------------------------------------- create
@pytest.mark.parametrize("status", [200, 201, 202])
async def test_create_accepts_any_2xx(server: Server, status: int) -> None:
    server.on("POST", CREATE_PATH, reply(status, CREATED))
    async with client_for(server) as client:
        created = await client.create_call(BODY)
    assert (created.call_id, created.status, created.raw) == (
        "call-outbound-abc123",
        "dialing",
        CREATED,
    )
    (_, request), *_ = server.seen
    assert str(request.url) == f"{BASE}/calls/outbound"
    assert json.loads(request.content) == BODY
    assert request.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    "answer",
    [
        reply(200, {"success": True}),
        reply(201, "<html>created</html>"),
        reply(200, {"call_id": ""}),
    ],
)
async def test_a_2xx_without_a_call_id_is_ambiguous(server: Server, answer: httpx.Response) -> None:
    server.on("POST", CREATE_PATH, answer)
    async with client_for(server) as client:
        with pytest.raises(AmbiguousCreate, match="without a call_id"):
            await client.create_call(BODY)
    assert server.count("POST", CREATE_PATH) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_create_is_never_resent_after_a_5xx(server: Server, status: int) -> None:
    server.on("POST", CREATE_PATH, reply(status, {"error": "Internal error", "message": "boom"}))
    async with client_for(server) as client:
        with pytest.raises(AmbiguousCreate) as caught:
            await client.create_call(BODY)
    assert caught.value.status_code == status
    assert server.count("POST", CREATE_PATH) == 1


@pytest.mark.parametrize(
    "exc_type",
    [httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError],
)
async def test_create_is_never_resent_once_it_may_have_been_sent(
    server: Server, exc_type: type[httpx.HTTPError]
) -> None:
    server.on("POST", CREATE_PATH, exc_type, reply(201, CREATED))
    async with client_for(server) as client:
        with pytest.raises(AmbiguousCreate) as caught:
            await client.create_call(BODY)
    assert isinstance(caught.value.__cause__, exc_type)
    assert server.count("POST", CREATE_PATH) == 1


@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_create_is_resent_when_nothing_was_sent(
    server: Server, exc_type: type[httpx.HTTPError]
) -> None:
    server.on("POST", CREATE_PATH, exc_type, reply(201, CREATED))
    async with client_for(server) as client:
        created = await client.create_call(BODY)
    assert created.call_id == "call-outbound-abc123"
    assert server.count("POST", CREATE_PATH) == 2


async def test_create_is_resent_after_a_429_once_retry_after_has_passed(
    server: Server, fake: FakeClock
) -> None:
    server.on("POST", CREATE_PATH, rate_limited(retry_after="7"), reply(201, CREATED))
    async with client_for(server) as client:
        created = await client.create_call(BODY)
    assert created.call_id == "call-outbound-abc123"
    assert [t for t, _ in server.seen] == [0.0, 7.0]


async def test_create_gives_up_on_safe_resends_with_the_right_error(server: Server) -> None:
    server.on("POST", CREATE_PATH, httpx.ConnectError)
    async with client_for(server, get_retries=2) as client:
        with pytest.raises(TransportFailure, match="not sent"):
            await client.create_call(BODY)
    assert server.count("POST", CREATE_PATH) == 3

    server.scripts.clear()
    server.on("POST", CREATE_PATH, rate_limited(retry_after="12"))
    async with client_for(server, get_retries=2) as client:
        with pytest.raises(RateLimited) as caught:
            await client.create_call(BODY)
    assert caught.value.retry_after == 12.0
    assert server.count("POST", CREATE_PATH) == 6


# ---------------------------------------------------------------------------- error mapping
NESTED = {
    "error": {
        "code": "missing_field",
        "message": "destination is required",
        "param": "destination",
        "type": "invalid_request_error",
    }
}
FLAT_401 = {"error": "Unauthorized", "message": "Invalid or missing API key"}
FLAT_403 = {"error": "Forbidden", "message": "You don't have access to this resource"}
CREDITS = {
    "error": {
        "code": "insufficient_credits",
        "message": "Insufficient credits to make outbound call.",
    }
}
ERRORS = [
    (400, NESTED, InvalidRequest, "destination is required (code=missing_field, param=destination"),
    (401, FLAT_401, Unauthorized, "Unauthorized: Invalid or missing API key"),
    (402, CREDITS, InsufficientCredits, "Insufficient credits to make outbound call."),
    (403, FLAT_403, Unauthorized, "Forbidden: You don't have access to this resource"),
    (
        404,
        {"error": "Not found", "message": "Call not found"},
        NotFound,
        "Not found: Call not found",
    ),
    (409, {"error": {"code": "conflict", "message": "Duplicate"}}, InvalidRequest, "Duplicate"),
    (
        422,
        {"error": "Unprocessable", "message": "bad number", "details": ["not E.164"]},
        InvalidRequest,
        "Unprocessable: bad number (details=not E.164)",
    ),
    (400, "plain text: destination missing", InvalidRequest, "plain text: destination missing"),
    (400, [1, 2], InvalidRequest, "[1, 2]"),
    (413, "", InvalidRequest, "Request Entity Too Large"),
]


@pytest.mark.parametrize(("status", "body", "error", "message"), ERRORS)
async def test_create_maps_4xx_to_errors_with_a_readable_message(
    server: Server, status: int, body: Any, error: type[ProviderError], message: str
) -> None:
    server.on("POST", CREATE_PATH, reply(status, body))
    async with client_for(server) as client:
        with pytest.raises(error) as caught:
            await client.create_call(BODY)
    assert type(caught.value) is error
    assert message in str(caught.value)
    assert caught.value.status_code == status
    assert server.count("POST", CREATE_PATH) == 1


@pytest.mark.parametrize(("status", "body", "error", "message"), ERRORS)
async def test_get_maps_4xx_to_errors_and_does_not_repeat_them(
    server: Server, status: int, body: Any, error: type[ProviderError], message: str
) -> None:
    server.on("GET", CALL_PATH, reply(status, body))
    async with client_for(server) as client:
        with pytest.raises(error) as caught:
            await client.get_call(CALL["id"])
    assert type(caught.value) is error
    assert message in str(caught.value)
    assert server.count("GET", CALL_PATH) == 1


async def test_a_redirect_is_not_followed_but_reported(server: Server) -> None:
    server.on("GET", CALL_PATH, reply(301, "", Location="https://elsewhere.test/"))
    async with client_for(server) as client:
        with pytest.raises(InvalidRequest, match="check base_url"):
            await client.get_call(CALL["id"])


# ---------------------------------------------------------------------------- get
async def test_get_parses_the_documented_call_object(server: Server) -> None:
    server.on("GET", CALL_PATH, reply(200, CALL))
    async with client_for(server) as client:
        call = await client.get_call(CALL["id"])
    assert call.id == CALL["id"] and call.status == "ended" and call.terminal
    assert call.started_at == datetime(2025, 12, 13, 12, 0, 5, tzinfo=UTC)
    assert call.ended_at is not None and call.created_at is not None
    assert (call.duration_seconds, call.end_reason, call.direction) == (
        120,
        "customer-ended-call",
        "outbound",
    )
    assert call.analysis_result == {"summary": "confirmed", "sentiment": 8}
    assert call.messages is not None and call.messages[1]["content"] == "Hi"
    assert (call.agent_id, call.number_id, call.room_name) == (
        "6f1c0d4e-assistant",
        "n-1",
        CALL["room_name"],
    )
    assert call.raw == CALL
    assert call.model_extra == {"agent_name": "Reminders"}  # unknown fields are kept
    assert "raw" not in call.model_dump()


def test_a_call_field_we_cannot_read_becomes_none_and_stays_in_raw() -> None:
    data = {
        "id": "c1",
        "status": "connecting",
        "started_at": "yesterday-ish",
        "created_at": "2025-12-13T12:00:00",  # naive: taken as UTC
        "duration_seconds": "a while",
        "messages": "not a list",
        "error": {"code": "sip"},
    }
    call = Call.from_api(data)
    assert (call.started_at, call.duration_seconds, call.messages, call.error) == (None,) * 4
    assert call.created_at == datetime(2025, 12, 13, 12, tzinfo=UTC)
    assert call.raw == data and not call.terminal


async def test_terminal_statuses_can_be_widened_by_the_caller(server: Server) -> None:
    server.on("GET", "/api/v1/calls/c1", reply(200, {"id": "c1", "status": "completed"}))
    async with client_for(server) as client:
        assert not (await client.get_call("c1")).terminal
    wider = TERMINAL_STATUSES | {"completed"}
    async with client_for(server, terminal_statuses=wider) as client:
        assert (await client.get_call("c1")).terminal


async def test_call_ids_are_quoted_only_where_they_would_break_the_path(server: Server) -> None:
    server.on("GET", CALL_PATH, reply(200, CALL))
    server.on("GET", "/api/v1/calls/a/b?c#d", reply(200, {"id": "a/b?c#d", "status": "ended"}))
    async with client_for(server) as client:
        await client.get_call(CALL["id"])
        await client.get_call("a/b?c#d")
    assert [r.url.raw_path for _, r in server.seen] == [
        b"/api/v1/calls/call-_+31623731537_XqaQxRRgAzYc",
        b"/api/v1/calls/a%2Fb%3Fc%23d",
    ]


async def test_get_is_repeated_on_5xx_and_dropped_connections(server: Server) -> None:
    server.on(
        "GET",
        CALL_PATH,
        reply(503, "<html><body>Service Unavailable</body></html>"),
        httpx.RemoteProtocolError,
        httpx.ReadTimeout,
        httpx.ConnectError,
        reply(200, CALL),
    )
    async with client_for(server, get_retries=4) as client:
        call = await client.get_call(CALL["id"])
    assert call.id == CALL["id"]
    assert server.count("GET", CALL_PATH) == 5


@pytest.mark.parametrize(
    ("script", "error", "message"),
    [
        ([reply(502, "<html><h1>502 Bad Gateway</h1></html>")], ServerError, "502 Bad Gateway"),
        (
            [reply(500, {"error": "Internal", "message": "db down"})],
            ServerError,
            "Internal: db down",
        ),
        ([httpx.ReadError], TransportFailure, "ReadError"),
        ([httpx.ConnectTimeout], TransportFailure, "ConnectTimeout"),
        ([rate_limited(retry_after="3")], RateLimited, "Too many requests"),
    ],
)
async def test_get_gives_up_after_the_retries_with_our_error(
    server: Server, script: list[Reply], error: type[ProviderError], message: str
) -> None:
    server.on("GET", CALL_PATH, *script)
    async with client_for(server, get_retries=3) as client:
        with pytest.raises(error, match=message) as caught:
            await client.get_call(CALL["id"])
    assert not isinstance(caught.value, httpx.HTTPError)
    assert server.count("GET", CALL_PATH) == 4


async def test_a_200_we_cannot_read_is_a_server_error_and_not_repeated(server: Server) -> None:
    server.on("GET", CALL_PATH, reply(200, {"status": "ended"}))
    server.on("GET", "/api/v1/calls/c2", reply(200, "<html>"))
    async with client_for(server) as client:
        with pytest.raises(ServerError, match="id: Field required"):
            await client.get_call(CALL["id"])
        with pytest.raises(ServerError, match="not JSON"):
            await client.get_call("c2")
    assert len(server.seen) == 2


@pytest.mark.parametrize(
    ("answer", "paused_for"),
    [
        (rate_limited(retry_after="7", reset_in=30), 30.0),  # the longer of the two holds
        (rate_limited(retry_after="7", reset_in=None), 7.0),
        (rate_limited(retry_after=None, reset_in=9), 9.0),
        (
            rate_limited(
                retry_after=email.utils.formatdate(WALL0 + 20, usegmt=True), reset_in=None
            ),
            20.0,
        ),
        (httpx.Response(429, text="slow down"), 1.0),
        # honoured in full, however far past the minute's reset
        (rate_limited(retry_after="300", reset_in=60), 300.0),
        # a unix time where seconds belong: read as one
        (rate_limited(retry_after=str(int(WALL0) + 30), reset_in=None), 30.0),
        # a day, a number beyond any date: capped (the next request asks the server again)
        (rate_limited(retry_after="86400", reset_in=None), MAX_RETRY_AFTER_S),
        (rate_limited(retry_after="1e300", reset_in=None), MAX_RETRY_AFTER_S),
        (
            rate_limited(retry_after="Fri, 31 Dec 9999 23:59:59 GMT", reset_in=None),
            MAX_RETRY_AFTER_S,
        ),
    ],
)
async def test_a_429_pauses_the_key_for_retry_after_then_repeats_the_get(
    server: Server, fake: FakeClock, answer: httpx.Response, paused_for: float
) -> None:
    server.on("GET", CALL_PATH, answer, reply(200, CALL))
    async with client_for(server) as client:
        await client.get_call(CALL["id"])
    assert [t for t, _ in server.seen] == [0.0, paused_for]


# ---------------------------------------------------------------------------- list
def page_of(ids: Iterable[int], *, total: int, offset: int, limit: int) -> httpx.Response:
    calls = [{**CALL, "id": f"call-{i}"} for i in ids]
    return reply(
        200, {"calls": calls, "pagination": {"total": total, "limit": limit, "offset": offset}}
    )


async def test_list_reads_every_page_with_the_filters(server: Server) -> None:
    server.on(
        "GET",
        "/api/v1/calls",
        page_of([0, 1], total=5, offset=0, limit=2),
        page_of([2, 3], total=5, offset=2, limit=2),
        httpx.ReadError,  # a page is repeated like any GET
        page_of([4], total=5, offset=4, limit=2),
    )
    start = datetime(2025, 3, 30, 1, 30, tzinfo=ZoneInfo("Europe/Amsterdam"))
    end = start + timedelta(hours=3)  # local time across the DST change: +01:00, then +02:00
    async with client_for(server) as client:
        calls = await client.list_calls(start_date=start, end_date=end, status="ended", page_size=2)
    assert [c.id for c in calls] == [f"call-{i}" for i in range(5)]
    params = [dict(r.url.params) for _, r in server.seen]
    assert [p["offset"] for p in params] == ["0", "2", "4", "4"]
    assert {p["limit"] for p in params} == {"2"}
    assert {p["status"] for p in params} == {"ended"}
    assert {p["start_date"] for p in params} == {"2025-03-30T01:30:00+01:00"}
    assert {p["end_date"] for p in params} == {"2025-03-30T04:30:00+02:00"}
    assert b"start_date=2025-03-30T01%3A30%3A00%2B01%3A00" in server.seen[0][1].url.query


async def test_list_stops_on_a_short_answer_and_counts_each_call_once(server: Server) -> None:
    server.on(
        "GET",
        "/api/v1/calls",
        page_of([0, 1, 2], total=9, offset=0, limit=3),
        page_of([2, 3, 4], total=9, offset=3, limit=3),  # a new call shifted the pages
        page_of([], total=9, offset=6, limit=3),  # rows vanished: stop, do not spin
    )
    async with client_for(server) as client:
        calls = await client.list_calls(page_size=3)
    assert [c.id for c in calls] == [f"call-{i}" for i in range(5)]
    assert len(server.seen) == 3


async def test_list_of_only_some_calls_still_pages_by_every_item(server: Server) -> None:
    server.on(
        "GET",
        "/api/v1/calls",
        page_of([0, 1, 2], total=5, offset=0, limit=3),
        page_of([3, 4], total=5, offset=3, limit=3),
    )
    async with client_for(server) as client:
        calls = await client.list_calls(page_size=3, only={"call-1", "call-4", "call-9"})
    assert [c.id for c in calls] == ["call-1", "call-4"]
    assert [r.url.params["offset"] for _, r in server.seen] == ["0", "3"]


async def test_list_of_only_some_calls_still_fails_on_an_item_without_id(server: Server) -> None:
    server.on("GET", "/api/v1/calls", reply(200, {"calls": [CALL, {"status": "ended"}]}))
    async with client_for(server) as client:
        with pytest.raises(ServerError, match="unreadable"):
            await client.list_calls(only={"call-elsewhere"})


async def test_list_without_pagination_is_one_page(server: Server) -> None:
    server.on("GET", "/api/v1/calls", reply(200, {"calls": [CALL]}))
    async with client_for(server) as client:
        calls = await client.list_calls()
    assert [c.id for c in calls] == [CALL["id"]]
    assert server.seen[0][1].url.params["limit"] == "1000"


async def test_list_fails_whole_rather_than_drop_a_call_it_cannot_read(server: Server) -> None:
    server.on("GET", "/api/v1/calls", reply(200, {"calls": [CALL, {"status": "ended"}]}))
    server.on("GET", "/api/v1/calls", reply(200, {"data": []}))
    async with client_for(server) as client:
        with pytest.raises(ServerError, match="unreadable"):
            await client.list_calls()
        with pytest.raises(ServerError, match="no `calls` list"):
            await client.list_calls()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start_date": datetime(2025, 1, 1)},
        {"end_date": datetime(2025, 1, 1)},
        {"page_size": 0},
        {"page_size": 1001},
    ],
)
async def test_list_refuses_ambiguous_arguments(server: Server, kwargs: dict[str, Any]) -> None:
    async with client_for(server) as client:
        with pytest.raises(ValueError, match=r"timezone-aware|page_size"):
            await client.list_calls(**kwargs)
    assert server.seen == []


# ---------------------------------------------------------------------------- the budget
async def test_creates_gets_and_lists_share_one_budget(server: Server, fake: FakeClock) -> None:
    server.on("POST", CREATE_PATH, reply(201, CREATED))
    server.on("GET", CALL_PATH, reply(200, CALL))
    server.on("GET", "/api/v1/calls", reply(200, {"calls": []}))
    budget = budget_for(fake, rpm=3)
    async with client_for(server, budget=budget) as client:
        await client.create_call(BODY)
        await client.get_call(CALL["id"])
        await client.list_calls()
        await client.create_call(BODY)
    assert [t for t, _ in server.seen] == [0.0, 0.0, 0.0, 60.0]
    assert budget.sent_total == 4


async def test_a_due_create_is_sent_before_waiting_polls(server: Server, fake: FakeClock) -> None:
    server.on("POST", CREATE_PATH, reply(201, CREATED))
    server.on("GET", CALL_PATH, reply(200, CALL))
    async with client_for(server, budget=budget_for(fake, rpm=1)) as client:
        await asyncio.gather(
            client.get_call(CALL["id"]),
            client.get_call(CALL["id"]),
            client.get_call(CALL["id"]),
            client.create_call(BODY),
        )
    assert [(t, r.method) for t, r in server.seen] == [
        (0.0, "GET"),
        (60.0, "POST"),
        (120.0, "GET"),
        (180.0, "GET"),
    ]


async def test_a_429_on_a_poll_holds_the_creates_too(server: Server, fake: FakeClock) -> None:
    server.on("GET", CALL_PATH, rate_limited(retry_after="30", reset_in=None), reply(200, CALL))
    server.on("POST", CREATE_PATH, reply(201, CREATED))
    async with client_for(server) as client:
        poll = asyncio.create_task(client.get_call(CALL["id"]))
        for _ in range(1000):  # until the 429 is in, whatever number of steps that takes
            if client.budget.paused_until is not None:
                break
            await asyncio.sleep(0)
        await client.create_call(BODY)
        await poll
    assert [(t, r.method) for t, r in server.seen] == [(0.0, "GET"), (30.0, "POST"), (30.0, "GET")]


async def test_every_response_steers_the_budget(server: Server, fake: FakeClock) -> None:
    low = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(WALL0 + 25))}
    server.on("GET", CALL_PATH, httpx.Response(200, json=CALL, headers=low))
    budget = budget_for(fake)
    async with client_for(server, budget=budget) as client:
        await client.get_call(CALL["id"])
        assert budget.paused_until == 25.0
        await client.get_call(CALL["id"])
    assert [t for t, _ in server.seen] == [0.0, 25.0]


# ---------------------------------------------------------------------------- observability
async def test_one_log_line_and_one_count_per_request(server: Server) -> None:
    server.on("GET", CALL_PATH, reply(503, "down"), httpx.ConnectError, reply(200, CALL))
    server.on("POST", CREATE_PATH, reply(201, CREATED))
    async with client_for(server) as client:
        with structlog.testing.capture_logs() as logs:
            await client.get_call(CALL["id"])
            await client.create_call(BODY)
        assert client.requests_sent == Counter(
            {
                ("GET", "/calls/{id}", 503): 1,
                ("GET", "/calls/{id}", "error"): 1,
                ("GET", "/calls/{id}", 200): 1,
                ("POST", "/calls/outbound", 201): 1,
            }
        )
    lines = [entry for entry in logs if entry["event"] == "dialer.api.request"]
    assert [(e["method"], e["path"], e["status"], e["attempt"]) for e in lines] == [
        ("GET", "/calls/{id}", 503, 1),
        ("GET", "/calls/{id}", "error", 2),
        ("GET", "/calls/{id}", 200, 3),
        ("POST", "/calls/outbound", 201, 1),
    ]
    assert all(e["log_level"] == "info" and e["latency_ms"] >= 0 for e in lines)
    assert lines[1]["error"] == "ConnectError"


@pytest.mark.parametrize("key", ["sk_one\nsk_two", "sk one", "sk_é", "sk_\x00"])
def test_a_key_no_header_can_carry_is_refused_before_any_request(key: str) -> None:
    # httpx would raise on the first request, with the whole header value in its message
    with pytest.raises(ValueError, match="cannot carry") as info:
        VoiceDockClient(base_url="http://sim/api/v1", api_key=key, budget=RequestBudget(100))
    assert "sk" not in str(info.value)


async def test_the_api_key_appears_nowhere_we_print(server: Server) -> None:
    echo = {"error": "Invalid API key", "message": f"key {KEY} is revoked"}
    get = CALL_PATH
    scenarios: list[tuple[str, str, Callable[[VoiceDockClient], Any], list[Reply]]] = [
        ("POST", CREATE_PATH, lambda c: c.create_call(BODY), [reply(401, echo)]),
        ("POST", CREATE_PATH, lambda c: c.create_call(BODY), [httpx.ReadTimeout]),
        ("POST", CREATE_PATH, lambda c: c.create_call(BODY), [httpx.ConnectError]),
        ("POST", CREATE_PATH, lambda c: c.create_call(BODY), [reply(503, f"saw Bearer {KEY}")]),
        ("POST", CREATE_PATH, lambda c: c.create_call(BODY), [reply(200, {"ok": True})]),
        ("POST", CREATE_PATH, lambda c: c.create_call(BODY), [rate_limited()]),
        ("GET", get, lambda c: c.get_call(CALL["id"]), [reply(402, CREDITS)]),
        ("GET", get, lambda c: c.get_call(CALL["id"]), [reply(500, echo)]),
        ("GET", get, lambda c: c.get_call(CALL["id"]), [httpx.RemoteProtocolError]),
        ("GET", get, lambda c: c.get_call(CALL["id"]), [reply(200, [])]),
        ("GET", "/api/v1/calls", lambda c: c.list_calls(), [reply(422, NESTED)]),
    ]
    printed: list[str] = []
    with structlog.testing.capture_logs() as logs:
        for method, path, call, script in scenarios:
            server.scripts.clear()
            server.on(method, path, *script)
            async with client_for(server, get_retries=1) as client:
                printed += [repr(client), str(client), repr(client.budget), repr(vars(client))]
                with pytest.raises(DialerError) as caught:
                    await call(client)
            exc = caught.value
            # from the client down: this test's own frame holds the key, in `echo`
            assert exc.__traceback__ is not None
            exc.with_traceback(exc.__traceback__.tb_next)
            printed += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
            printed += traceback.TracebackException.from_exception(
                exc, capture_locals=True
            ).format()
    printed += [repr(entry) for entry in logs]

    assert len(printed) > 100
    assert repr(client) == f"VoiceDockClient(base_url='{BASE}')"
    assert any("[redacted]" in text for text in printed)  # the echoed key was there to leak
    assert not [text for text in printed if KEY in text]
