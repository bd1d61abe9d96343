"""A VoiceDock simulator on loopback, for the demo, the end-to-end/fault/crash tests and the bench.

It mirrors voicedock-api.md: ``POST /calls/outbound``, ``GET /calls/{id}``, ``GET /calls`` with
offset paging, Bearer auth, both error-body shapes, 402 after a credit budget, and the
100 requests/minute/key limit with ``X-RateLimit-*`` on every response and ``Retry-After`` on 429.

Call lifecycles are computed lazily from the clock (no background work): connecting while the
phone rings, in-progress once answered, then ended or failed. How VoiceDock reports an
unanswered, busy or invalid call is UNCONFIRMED; this simulator's contract (which the default
outcome rules classify) is:

    answered          ended,  end_reason customer-ended-call
    voicemail         ended,  end_reason voicemail, summary "Voicemail detected. ..."
    no_answer         failed, error no-answer,        end_reason customer-did-not-answer
    busy              failed, error busy,             end_reason customer-busy
    invalid_number    failed, error invalid-number,   end_reason invalid-destination
    declined          failed, error call-rejected,    end_reason customer-declined
    failed_transient  failed, error sip-503-service-unavailable, end_reason pipeline-error
    stuck (fault)     in-progress forever

``Simulator.created`` records every call it ever created, including those whose response was
lost: tests judge double dials against this record, never against the dialer's own database.

Outages, for the tests that ride them out: ``answer_after(seconds)`` makes every answer come
that many simulated seconds late; served with ``serve(sim, network=True)``, a
:class:`LoopbackProxy` stands in front of it and ``refuse_connections()`` takes it off the
network (nothing listens: connections are refused, and those open are cut) until
``accept_connections()``. The same proxy can stand in front of anything a test needs to take
away (PostgreSQL).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import math
import random
import re
import string
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import uvicorn
from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from dialer.webhooks import sign

OutcomeName = Literal[
    "answered", "voicemail", "no_answer", "busy", "invalid_number", "declined", "failed_transient"
]
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class OutcomeMix(BaseModel):
    """Relative weights of what happens to a placed call."""

    model_config = ConfigDict(frozen=True)

    answered: float = 0.6
    voicemail: float = 0.1
    no_answer: float = 0.15
    busy: float = 0.07
    invalid_number: float = 0.03
    declined: float = 0.03
    failed_transient: float = 0.02

    @classmethod
    def only(cls, outcome: str) -> OutcomeMix:
        """Every placed call ends the same way (benchmarks, forecasts)."""
        weights = dict.fromkeys(cls.model_fields, 0.0)
        if outcome not in weights:
            raise ValueError(f"no outcome {outcome!r} in the mix")
        return cls(**{**weights, outcome: 1.0})


class Faults(BaseModel):
    """Probabilities (0..1) of injected faults, per request or per call."""

    model_config = ConfigDict(frozen=True)

    rate_limited: float = 0.0  # a spurious 429 on any request; nothing is done
    server_error: float = 0.0  # a 503 on any request; nothing is done
    ambiguous_create: float = 0.0  # the call IS created, but the answer is lost, late or a 5xx
    ambiguous_kinds: tuple[Literal["lost", "late", "error"], ...] = ("lost", "late", "error")
    late_response_s: float = 40.0
    drop_get: float = 0.0  # the connection drops mid-answer on a GET
    slow: float = 0.0
    slow_response_s: float = 2.0
    stuck_call: float = 0.0  # the call never ends


class SimulatorConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    api_key: str = "sim_test_key"
    #: further keys the simulator accepts, each with its own rate limit (several child orgs)
    extra_api_keys: tuple[str, ...] = ()
    requests_per_minute: int = 100
    #: a limit of its own for some keys (child organizations on other plans); others get the above
    key_requests_per_minute: Mapping[str, int] = Field(default_factory=dict)
    #: count 429'd requests against the limit too (VoiceDock's behaviour is UNCONFIRMED)
    count_rejected: bool = False
    #: simulated seconds per real second
    time_scale: float = 1.0
    #: apply requests_per_minute per SIMULATED minute (the rate limit scaled like the calls)
    scale_rate_limit: bool = False
    credit_budget_calls: int | None = None
    ring_seconds: tuple[float, float] = (2.0, 20.0)
    no_answer_ring_seconds: float = 30.0
    talk_seconds_mean: float = 90.0
    talk_seconds_sigma: float = 0.5
    voicemail_seconds: float = 25.0
    mix: OutcomeMix = Field(default_factory=OutcomeMix)
    faults: Faults = Field(default_factory=Faults)
    seed: int | None = None
    #: force outcomes: destination -> outcome, or a list used call by call (the last repeats)
    destination_outcomes: Mapping[str, OutcomeName | list[OutcomeName]] = Field(
        default_factory=dict
    )
    invalid_prefixes: tuple[str, ...] = ()
    #: send signed status-update / end-of-call-report webhooks here (loopback only)
    webhook_url: str | None = None
    webhook_secret: str = "whsec_simulator"  # noqa: S105 - the simulator's own test secret
    webhook_drop: float = 0.0  # probability a webhook is never sent
    #: the assistants the account has: a create naming another assistant_id is answered 404
    #: (empty: every id is known)
    assistant_ids: tuple[str, ...] = ()
    #: the assistant_override keys accepted: a create with another key is answered 422
    #: (None: any key; VoiceDock's own checking of the override is UNCONFIRMED)
    override_fields: tuple[str, ...] | None = None
    webhook_duplicate: float = 0.0  # probability a webhook is sent twice


@dataclass
class SimCall:
    id: str
    destination: str
    body: dict[str, Any]
    api_key: str
    outcome: str
    stuck: bool
    created_sim: float  # simulated seconds since the simulator started
    created_wall: datetime
    ring_s: float
    talk_s: float

    def phase(self, now_sim: float) -> tuple[str, float | None, float | None]:
        """(status, answered at, ended at) in simulated seconds since start."""
        age = now_sim - self.created_sim
        answered_after: float | None = None
        ends_after: float
        if self.outcome in ("answered", "voicemail"):
            answered_after = self.ring_s
            ends_after = self.ring_s + self.talk_s
        elif self.outcome == "no_answer":
            ends_after = self.ring_s
        elif self.outcome == "busy":
            ends_after = min(self.ring_s, 3.0)
        elif self.outcome == "invalid_number":
            ends_after = 0.5
        else:  # declined, failed_transient
            ends_after = self.ring_s / 2
        if self.stuck:
            answered_after = answered_after if answered_after is not None else min(self.ring_s, 5.0)
            return ("in-progress" if age >= answered_after else "connecting"), answered_after, None
        if age >= ends_after:
            return (
                ("ended" if self.outcome in ("answered", "voicemail") else "failed"),
                answered_after,
                ends_after,
            )
        if answered_after is not None and age >= answered_after:
            return "in-progress", answered_after, None
        return "connecting", None, None


@dataclass(frozen=True)
class CreatedRecord:
    call_id: str
    destination: str
    body: dict[str, Any]
    created_at: datetime
    outcome: str
    api_key: str
    response: str  # ok | lost | late | error
    created_real: float
    ends_real: float | None  # None: never ends (stuck)


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    status: int
    at: float  # the simulator clock (real seconds)
    api_key: str | None


@dataclass
class _KeyWindow:
    sent: deque[float] = field(default_factory=deque)


class Simulator:
    """The simulated VoiceDock; ``app`` is an ASGI app, ``serve()`` puts it on loopback."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config or SimulatorConfig()
        self._clock = clock or time.monotonic
        self._t0 = self._clock()
        self._wall0 = datetime.now(UTC)
        self._wall_clock = wall_clock or (
            lambda: self._wall0 + timedelta(seconds=self._clock() - self._t0)
        )
        self._rng = random.Random(self.config.seed)
        self._faults = self.config.faults
        self._credits = self.config.credit_budget_calls
        self._calls: dict[str, SimCall] = {}
        self._order: list[SimCall] = []
        self._windows: dict[str, _KeyWindow] = defaultdict(_KeyWindow)
        self._forced_seen: dict[str, int] = defaultdict(int)
        self._revoked: set[str] = set()
        self._advanced = 0.0
        #: every answer comes this many simulated seconds late (0: at once)
        self._answer_delay_s = 0.0
        #: set by aclose: answers held back go out at once (a server shutting down)
        self._closing = asyncio.Event()
        #: the proxy in front of the served simulator (``serve(..., network=True)``)
        self._network: LoopbackProxy | None = None
        self._webhook_tasks: set[asyncio.Task[None]] = set()
        self._webhook_client: httpx.AsyncClient | None = None
        self.webhooks_sent = 0
        self.created: list[CreatedRecord] = []
        self.request_log: list[RequestRecord] = []
        self.app = Starlette(
            routes=[
                Route("/api/v1/calls/outbound", self._create, methods=["POST"]),
                Route("/api/v1/calls/{call_id:path}", self._get, methods=["GET"]),
                Route("/api/v1/calls", self._list, methods=["GET"]),
                Route("/api/v1/health", self._health, methods=["GET"]),
            ]
        )

    # ------------------------------------------------------------------ control
    def now(self) -> float:
        """Real seconds since start (plus anything advanced by tests)."""
        return self._clock() - self._t0 + self._advanced

    def sim_now(self) -> float:
        return self.now() * self.config.time_scale

    def wall_now(self) -> datetime:
        return self._wall_clock() + timedelta(seconds=self._advanced)

    def advance(self, seconds: float) -> None:
        """Move the simulator's time forward (tests with no real waiting)."""
        self._advanced += seconds

    def top_up(self, calls: int) -> None:
        self._credits = (self._credits or 0) + calls

    def set_faults(self, faults: Faults) -> None:
        self._faults = faults

    def answer_after(self, seconds: float) -> None:
        """Answer every request ``seconds`` (simulated) late from now on; 0 ends it. A create
        is placed when its answer goes out, so a client that gives up first cannot see it yet
        (the slower case for reconciliation)."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, not {seconds}")
        self._answer_delay_s = seconds

    async def refuse_connections(self) -> None:
        """Off the network: connections are refused (nothing listens) and open ones are cut,
        until ``accept_connections``. Needs ``serve(sim, network=True)``."""
        await self._proxy().refuse()

    async def accept_connections(self) -> None:
        """Back on the network, on the same address."""
        await self._proxy().accept()

    def _proxy(self) -> LoopbackProxy:
        if self._network is None:
            raise RuntimeError("serve the simulator with network=True to take it off the network")
        return self._network

    @property
    def api_keys(self) -> set[str]:
        return {self.config.api_key, *self.config.extra_api_keys} - self._revoked

    def revoke(self, key: str) -> None:
        """From now on ``key`` is answered 401 (revoked in the dashboard while a daemon runs)."""
        self._revoked.add(key)

    # ------------------------------------------------------------------ records
    def created_by_destination(self) -> dict[str, list[CreatedRecord]]:
        out: dict[str, list[CreatedRecord]] = defaultdict(list)
        for record in self.created:
            out[record.destination].append(record)
        return dict(out)

    def max_live_calls_per_destination(self) -> int:
        """The most calls any one destination ever had live at the same moment."""
        worst = 0
        for records in self.created_by_destination().values():
            events = []
            for r in records:
                events.append((r.created_real, 1))
                events.append((r.ends_real if r.ends_real is not None else math.inf, -1))
            live = 0
            for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
                live += delta
                worst = max(worst, live)
        return worst

    def peak_requests_in_window(self, seconds: float = 60.0, *, api_key: str | None = None) -> int:
        """The most requests received in any window of ``seconds`` (real time)."""
        times = sorted(r.at for r in self.request_log if api_key is None or r.api_key == api_key)
        peak = 0
        for i, start in enumerate(times):
            peak = max(peak, bisect.bisect_left(times, start + seconds) - i)
        return peak

    def count_status(self, status: int) -> int:
        return sum(1 for r in self.request_log if r.status == status)

    # ------------------------------------------------------------------ plumbing
    def _window_s(self) -> float:
        return 60.0 / self.config.time_scale if self.config.scale_rate_limit else 60.0

    def limit_of(self, key: str | None) -> int:
        """The requests per minute ``key`` is allowed."""
        return self.config.key_requests_per_minute.get(key or "", self.config.requests_per_minute)

    def _limit_headers(self, key: str | None) -> dict[str, str]:
        window = self._windows[key or ""]
        now = self.now()
        self._expire(window, now)
        reset_at = (window.sent[0] if window.sent else now) + self._window_s()
        reset_wall = self.wall_now() + timedelta(seconds=reset_at - now)
        limit = self.limit_of(key)
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - len(window.sent))),
            "X-RateLimit-Reset": self._reset_header(reset_wall.timestamp()),
        }

    def _reset_header(self, reset: float) -> str:
        """VoiceDock's unix time in whole seconds; with the limit scaled, in whole SIMULATED
        seconds: a client that holds until the reset would otherwise wait up to a real second
        too long, ``time_scale`` simulated seconds, and lose a sixth of a minute's budget at x10
        (the bench's budget-bound runs measured 82 creates a minute instead of ~97)."""
        if not self.config.scale_rate_limit or self.config.time_scale == 1:
            return str(math.ceil(reset))
        scale = self.config.time_scale
        return f"{math.ceil(reset * scale) / scale:.3f}"

    def _expire(self, window: _KeyWindow, now: float) -> None:
        while window.sent and window.sent[0] <= now - self._window_s():
            window.sent.popleft()

    def _respond(
        self,
        request: Request,
        key: str | None,
        status: int,
        body: Any,
        extra: Mapping[str, str] | None = None,
    ) -> Response:
        self.request_log.append(
            RequestRecord(request.method, request.url.path, status, self.now(), key)
        )
        headers = self._limit_headers(key)
        headers.update(extra or {})
        return JSONResponse(body, status_code=status, headers=headers)

    def _gate(self, request: Request) -> tuple[str | None, Response | None]:
        """Auth, rate limit and per-request faults; returns (key, refusal or None)."""
        auth = request.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        if key not in self.api_keys:
            return None, self._respond(
                request,
                None,
                401,
                {"error": "Unauthorized", "message": "Invalid or missing API key"},
            )
        window = self._windows[key]
        now = self.now()
        self._expire(window, now)
        if len(window.sent) >= self.limit_of(key):
            if self.config.count_rejected:
                window.sent.append(now)
            retry = max(1, math.ceil(window.sent[0] + self._window_s() - now))
            return key, self._respond(
                request,
                key,
                429,
                _nested(
                    "rate_limit_exceeded", f"Too many requests. Please retry after {retry} seconds."
                ),
                {"Retry-After": str(retry)},
            )
        window.sent.append(now)
        if self._rng.random() < self._faults.rate_limited:
            return key, self._respond(
                request,
                key,
                429,
                _nested("rate_limit_exceeded", "Too many requests. Please retry after 1 seconds."),
                {"Retry-After": "1"},
            )
        if self._rng.random() < self._faults.server_error:
            return key, self._respond(
                request,
                key,
                503,
                {"error": "Service Unavailable", "message": "upstream unavailable"},
            )
        return key, None

    async def _maybe_slow(self) -> None:
        if self._answer_delay_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._closing.wait(), timeout=self._answer_delay_s / self.config.time_scale
                )
        if self._faults.slow and self._rng.random() < self._faults.slow:
            await asyncio.sleep(self._faults.slow_response_s)

    # ------------------------------------------------------------------ endpoints
    async def _health(self, request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "timestamp": self.wall_now().isoformat(), "version": "sim"}
        )

    async def _create(self, request: Request) -> Response:
        key, refusal = self._gate(request)
        if refusal is not None:
            return refusal
        assert key is not None
        try:
            body = await request.json()
        except ValueError:
            return self._respond(request, key, 400, _nested("invalid_request", "body is not JSON"))
        if not isinstance(body, dict):
            return self._respond(
                request, key, 400, _nested("invalid_request", "body must be an object")
            )
        destination = body.get("destination")
        if not destination:
            return self._respond(
                request,
                key,
                400,
                _nested("missing_field", "destination is required", param="destination"),
            )
        if not isinstance(destination, str) or not E164.match(destination):
            return self._respond(
                request,
                key,
                400,
                _nested(
                    "invalid_request", "destination must be an E.164 number", param="destination"
                ),
            )
        if ("assistant_id" in body) == ("assistant" in body):
            return self._respond(
                request,
                key,
                400,
                _nested(
                    "invalid_request",
                    "exactly one of assistant_id or assistant is required",
                    param="assistant_id",
                ),
            )
        refusal = self._refuse_body(request, key, body)
        if refusal is not None:
            return refusal
        if self._credits is not None and self._credits <= 0:
            return self._respond(
                request,
                key,
                402,
                _nested(
                    "insufficient_credits",
                    "Insufficient credits to make outbound call. "
                    "Please add credits in your billing dashboard.",
                ),
            )
        if self._credits is not None:
            self._credits -= 1
        await self._maybe_slow()
        call = self._new_call(destination, body, key)
        fault = None
        if self._rng.random() < self._faults.ambiguous_create:
            fault = self._rng.choice(self._faults.ambiguous_kinds)
        self._record(call, fault or "ok")
        if self.config.webhook_url:
            task = asyncio.create_task(self._send_webhooks(call), name=f"webhooks-{call.id}")
            self._webhook_tasks.add(task)
            task.add_done_callback(self._webhook_tasks.discard)
        answer = {"success": True, "call_id": call.id, "status": "dialing"}
        if fault == "late":
            await asyncio.sleep(self._faults.late_response_s)
            return self._respond(request, key, 201, answer)
        if fault == "error":
            return self._respond(
                request, key, 502, {"error": "Bad Gateway", "message": "upstream error"}
            )
        if fault == "lost":
            self.request_log.append(RequestRecord("POST", request.url.path, 0, self.now(), key))
            return _Dropped()
        return self._respond(request, key, 201, answer)

    def _refuse_body(self, request: Request, key: str, body: dict[str, Any]) -> Response | None:
        """What every create of a badly set-up campaign gets: 404 for an assistant the account
        does not have (flat body, as the API reference's 404s), 422 for an override key the
        assistant does not take (nested body naming the field)."""
        known = self.config.assistant_ids
        if known and "assistant_id" in body and body["assistant_id"] not in known:
            return self._respond(
                request, key, 404, {"error": "Not Found", "message": "Assistant not found"}
            )
        fields = self.config.override_fields
        override = body.get("assistant_override")
        if fields is not None and isinstance(override, dict):
            for name in sorted(override):
                if name not in fields:
                    return self._respond(
                        request,
                        key,
                        422,
                        _nested(
                            "invalid_request",
                            f"Unknown field in assistant_override: {name}",
                            param=f"assistant_override.{name}",
                        ),
                    )
        return None

    async def _get(self, request: Request) -> Response:
        key, refusal = self._gate(request)
        if refusal is not None:
            return refusal
        await self._maybe_slow()
        call = self._calls.get(request.path_params["call_id"])
        if call is None or call.api_key != key:
            return self._respond(
                request, key, 404, {"error": "Not Found", "message": "Call not found"}
            )
        if self._faults.drop_get and self._rng.random() < self._faults.drop_get:
            self.request_log.append(RequestRecord("GET", request.url.path, 0, self.now(), key))
            return _Dropped()
        return self._respond(request, key, 200, self._view(call))

    async def _list(self, request: Request) -> Response:
        key, refusal = self._gate(request)
        if refusal is not None:
            return refusal
        params = request.query_params
        try:
            limit = int(params.get("limit", "100"))
            offset = int(params.get("offset", "0"))
            start = _parse_when(params.get("start_date"))
            end = _parse_when(params.get("end_date"))
        except ValueError as exc:
            return self._respond(request, key, 400, _nested("invalid_request", str(exc)))
        if not 1 <= limit <= 1000 or offset < 0:
            return self._respond(
                request,
                key,
                400,
                _nested("invalid_request", "limit must be 1..1000 and offset >= 0", param="limit"),
            )
        status = params.get("status")
        if status is not None and status not in ("connecting", "in-progress", "ended", "failed"):
            return self._respond(
                request, key, 400, _nested("invalid_request", "unknown status", param="status")
            )
        await self._maybe_slow()
        views = []
        for call in reversed(self._order):  # newest first
            if call.api_key != key:
                continue
            if start is not None and call.created_wall < start:
                continue
            if end is not None and call.created_wall > end:
                continue
            view = self._view(call)
            if status is not None and view["status"] != status:
                continue
            views.append(view)
        page = views[offset : offset + limit]
        return self._respond(
            request,
            key,
            200,
            {"calls": page, "pagination": {"total": len(views), "limit": limit, "offset": offset}},
        )

    # ------------------------------------------------------------------ calls
    def _new_call(self, destination: str, body: dict[str, Any], key: str) -> SimCall:
        suffix = "".join(self._rng.choices(string.ascii_letters, k=12))
        call_id = f"call-_{destination}_{suffix}"
        outcome = self._draw_outcome(destination)
        low, high = self.config.ring_seconds
        ring = (
            self.config.no_answer_ring_seconds
            if outcome == "no_answer"
            else self._rng.uniform(low, high)
        )
        if outcome == "voicemail":
            talk = self.config.voicemail_seconds
        else:
            talk = self._rng.lognormvariate(
                math.log(self.config.talk_seconds_mean), self.config.talk_seconds_sigma
            )
        call = SimCall(
            id=call_id,
            destination=destination,
            body=body,
            api_key=key,
            outcome=outcome,
            stuck=self._rng.random() < self._faults.stuck_call,
            created_sim=self.sim_now(),
            created_wall=self.wall_now(),
            ring_s=ring,
            talk_s=max(5.0, talk),
        )
        self._calls[call_id] = call
        self._order.append(call)
        return call

    def _draw_outcome(self, destination: str) -> str:
        forced = self.config.destination_outcomes.get(destination)
        if forced is not None:
            if isinstance(forced, str):
                return forced
            index = min(self._forced_seen[destination], len(forced) - 1)
            self._forced_seen[destination] += 1
            return forced[index]
        if any(destination.startswith(p) for p in self.config.invalid_prefixes):
            return "invalid_number"
        mix = self.config.mix.model_dump()
        return self._rng.choices(list(mix), weights=list(mix.values()))[0]

    def _record(self, call: SimCall, response: str) -> None:
        _, _, ends = call.phase(call.created_sim + 1e12) if not call.stuck else (None, None, None)
        ends_real = None if ends is None else self.now() + ends / self.config.time_scale
        self.created.append(
            CreatedRecord(
                call_id=call.id,
                destination=call.destination,
                body=call.body,
                created_at=call.created_wall,
                outcome="stuck" if call.stuck else call.outcome,
                api_key=call.api_key,
                response=response,
                created_real=self.now(),
                ends_real=ends_real,
            )
        )

    # ------------------------------------------------------------------ webhooks
    async def _send_webhooks(self, call: SimCall) -> None:
        """Deliver the call's lifecycle as VoiceDock would, at the moments it happens."""
        scale = self.config.time_scale
        _, answered, _ = call.phase(call.created_sim + 1e12)
        if call.outcome in ("answered", "voicemail") or call.stuck:
            answered_after = answered if answered is not None else min(call.ring_s, 5.0)
            await asyncio.sleep(answered_after / scale)
            await self._webhook(call, "status-update", {"status": "in-progress"})
        if call.stuck:
            return
        while True:
            view = self._view(call)
            if view["status"] in ("ended", "failed"):
                break
            await asyncio.sleep(0.05 / scale + 0.01)
        if view["status"] == "failed":
            await self._webhook(
                call,
                "status-update",
                {
                    "status": "ended-with-error",
                    "error": view["error"],
                    "end_reason": view["end_reason"],
                },
            )
            return
        await self._webhook(
            call, "status-update", {"status": "ended", "end_reason": view["end_reason"]}
        )
        await self._webhook(
            call,
            "end-of-call-report",
            {
                "end_reason": view["end_reason"],
                "duration_seconds": view["duration_seconds"],
                "summary": view["summary"],
                "analysis": view["analysis_result"],
                "messages": view["messages"],
                "recording_url": None,
            },
        )

    async def _webhook(self, call: SimCall, kind: str, fields: dict[str, Any]) -> None:
        if self._rng.random() < self.config.webhook_drop:
            return
        assert self.config.webhook_url is not None
        view = self._view(call)
        metadata = (
            _dig(call.body, "assistant_override", "metadata")
            or _dig(call.body, "assistant", "metadata")
            or {}
        )
        message = {
            "type": kind,
            "timestamp": _iso(self.wall_now()),
            "call": {
                "id": call.id,
                "type": "outbound_phone_call",
                "status": view["status"],
                "started_at": view["started_at"],
                "ended_at": view["ended_at"],
            },
            "phone_number": {"number": "+31850835037", "name": "Simulator"},
            "customer": {"number": call.destination},
            "assistant": {"metadata": metadata},
            **fields,
        }
        body = json.dumps({"message": message}).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Webhook-Event": kind,
            "X-Webhook-Timestamp": timestamp,
            "X-Webhook-Signature": sign(self.config.webhook_secret, timestamp, body),
        }
        if self._webhook_client is None:
            self._webhook_client = httpx.AsyncClient(timeout=5.0)
        copies = 2 if self._rng.random() < self.config.webhook_duplicate else 1
        for _ in range(copies):
            with contextlib.suppress(httpx.HTTPError):
                await self._webhook_client.post(
                    self.config.webhook_url, content=body, headers=headers
                )
                self.webhooks_sent += 1

    async def aclose(self) -> None:
        """Stop pending webhook deliveries; answer what is held back (``answer_after``)."""
        self._closing.set()
        for task in list(self._webhook_tasks):
            task.cancel()
        await asyncio.gather(*self._webhook_tasks, return_exceptions=True)
        if self._webhook_client is not None:
            await self._webhook_client.aclose()

    def _view(self, call: SimCall) -> dict[str, Any]:
        status, answered, ended = call.phase(self.sim_now())
        scale = self.config.time_scale

        def wall(sim_offset: float | None) -> str | None:
            if sim_offset is None:
                return None
            return _iso(call.created_wall + timedelta(seconds=sim_offset / scale))

        ended_ok = status == "ended"
        failed = status == "failed"
        errors = {
            "no_answer": "no-answer",
            "busy": "busy",
            "invalid_number": "invalid-number",
            "declined": "call-rejected",
            "failed_transient": "sip-503-service-unavailable",
        }
        reasons = {
            "answered": "customer-ended-call",
            "voicemail": "voicemail",
            "no_answer": "customer-did-not-answer",
            "busy": "customer-busy",
            "invalid_number": "invalid-destination",
            "declined": "customer-declined",
            "failed_transient": "pipeline-error",
        }
        name = str(_dig(call.body, "assistant_override", "metadata", "name") or "there")
        talk = ended_ok and call.outcome == "answered"
        return {
            "id": call.id,
            "caller_phone": call.destination,
            "assistant_phone": "+31850835037",
            "status": status,
            "direction": "outbound",
            "end_reason": reasons[call.outcome] if (ended_ok or failed) else None,
            "error": errors.get(call.outcome) if failed else None,
            "started_at": wall(answered),
            "ended_at": wall(ended),
            "duration_seconds": round(call.talk_s) if ended_ok else (0 if failed else None),
            "summary": (
                "Voicemail detected. Left message: please call us back."
                if ended_ok and call.outcome == "voicemail"
                else "The customer confirmed the appointment."
                if talk
                else None
            ),
            "analysis_result": {"summary": "Confirmed", "sentiment": 8} if talk else None,
            "messages": [
                {"role": "assistant", "content": f"Hello {name}, this is a reminder call."},
                {"role": "user", "content": "Yes, I will be there."},
            ]
            if talk
            else None,
            "agent_id": call.body.get("assistant_id"),
            "number_id": call.body.get("number_id"),
            "agent_name": "Simulated assistant",
            "business_name": "Simulator",
            "phone_number": "+31850835037",
            "room_name": f"outbound-{call.id[-8:]}",
            "recording_url": None,
            "created_at": _iso(call.created_wall),
            "updated_at": wall(ended) or wall(answered) or _iso(call.created_wall),
        }


class _Dropped(Response):
    """Start a response, then drop the connection: the client sees a broken answer."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"512")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"success": tr', "more_body": True})
        raise ConnectionAbortedError("simulated dropped connection")


def _nested(code: str, message: str, *, param: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "type": "invalid_request_error"}
    if param:
        error["param"] = param
    return {"error": error}


def _dig(data: Any, *keys: str) -> Any:
    for k in keys:
        data = data.get(k) if isinstance(data, Mapping) else None
    return data


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_when(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class LoopbackProxy:
    """A TCP front on loopback that forwards each connection to ``target`` and can take the
    target off the network: ``refuse()`` stops listening (a connect is refused, as when the
    server is down) and cuts the open connections, until ``accept()`` listens again on the
    same port; ``cut()`` drops the open connections alone.

        proxy = LoopbackProxy(("127.0.0.1", 5432))
        await proxy.start()               # then connect to ("127.0.0.1", proxy.port)
    """

    def __init__(self, target: tuple[str, int], *, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in LOOPBACK:
            raise ValueError(f"the proxy only listens on loopback, not {host!r}")
        self.target = target
        self.host = host
        self.port = port
        #: connections accepted so far
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def refusing(self) -> bool:
        return self._server is None

    async def start(self) -> None:
        await self.accept()

    async def accept(self) -> None:
        """Listen (again, on the same port once one was bound)."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._connected, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def refuse(self) -> None:
        """Stop listening and cut every open connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.cut()  # before waiting: a server's close waits for its connections (3.12+)
        if server is not None:
            await server.wait_closed()

    def cut(self) -> int:
        """Drop every open connection (both ends see it reset); how many there were."""
        open_ = list(self._open)
        for writer in open_:
            writer.transport.abort()
        self._open.clear()
        return len(open_) // 2

    async def aclose(self) -> None:
        await self.refuse()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, upstream))
        pipes = [
            asyncio.create_task(_pipe(reader, upstream), name="proxy-up"),
            asyncio.create_task(_pipe(upstream_reader, writer), name="proxy-down"),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._pipes.difference_update(pipes)
            for end in (writer, upstream):
                self._open.discard(end)
                end.transport.abort()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until either side ends; then end the other."""
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        sink.transport.abort()


@asynccontextmanager
async def serve(
    sim: Simulator, host: str = "127.0.0.1", port: int = 0, *, network: bool = False
) -> AsyncIterator[str]:
    """Serve the simulator on loopback; yields the base URL (``http://127.0.0.1:PORT/api/v1``).

    ``network``: behind a :class:`LoopbackProxy` on that address, which
    ``sim.refuse_connections()`` takes off the network (a hop costs CPU, so only when asked).
    """
    if host not in LOOPBACK:
        raise ValueError(f"the simulator only listens on loopback, not {host!r}")
    server = uvicorn.Server(
        uvicorn.Config(
            sim.app,
            host=host,
            port=0 if network else port,
            log_level="critical",
            lifespan="off",
            access_log=False,
        )
    )
    task = asyncio.create_task(server.serve(), name="simulator")
    proxy: LoopbackProxy | None = None
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()[1]
        if network:
            proxy = LoopbackProxy((host, bound), host=host, port=port)
            await proxy.start()
            sim._network = proxy
            bound = proxy.port
        yield f"http://{host}:{bound}/api/v1"
    finally:
        if proxy is not None:
            sim._network = None
            await proxy.aclose()
        await sim.aclose()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)


def run_simulator(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Blocking: serve until interrupted (``dialer simulate``)."""
    if host not in LOOPBACK:
        raise ValueError(f"the simulator only listens on loopback, not {host!r}")
    uvicorn.run(Simulator(config).app, host=host, port=port, log_level="warning")
