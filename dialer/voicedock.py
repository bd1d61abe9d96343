"""The only module that talks to VoiceDock (voicedock-api.md): create a call, read one, list them.

    async with VoiceDockClient(base_url=url, api_key=key, budget=RequestBudget(100)) as client:
        created = await client.create_call({"destination": "+31612345678", "assistant_id": aid})
        call = await client.get_call(created.call_id)
        recent = await client.list_calls(start_date=an_hour_ago)

Every request first takes a slot of the shared :class:`~dialer.ratelimit.RequestBudget` and hands
every response's headers back to it; a 429 pauses the whole key for its ``Retry-After``.

What is repeated, and why (§9: there is no idempotency key, the SDK never re-sends a POST):

=====================  ===========================================  ==========================
failure                GET /calls/{id}, GET /calls (each page)      POST /calls/outbound
=====================  ===========================================  ==========================
429                    repeated (after the budget's pause)           repeated: not processed
connect error/timeout  repeated with backoff                         repeated: nothing was sent
pool timeout           repeated with backoff                         repeated: nothing was sent
5xx                    repeated with backoff, then ServerError       AmbiguousCreate
read/write timeout,    repeated with backoff, then TransportFailure  AmbiguousCreate
dropped connection
4xx                    mapped (dialer.errors), never repeated        mapped, never repeated
2xx without call_id    —                                             AmbiguousCreate
=====================  ===========================================  ==========================

The API key lives only in the httpx client's default headers (whose repr httpx masks); it is in
no attribute, message or log line of ours, and the frames of translated httpx tracebacks have
their locals cleared, because structlog's rich tracebacks print every frame's locals.
"""

from __future__ import annotations

import contextlib
import enum
import json
import time
import traceback
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import structlog
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from dialer.attempts import TERMINAL_STATUSES
from dialer.errors import (
    AmbiguousCreate,
    CreateWithdrawn,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    ProviderError,
    RateLimited,
    ServerError,
    TransportFailure,
    Unauthorized,
)
from dialer.ratelimit import (
    Priority,
    RequestBudget,
    retry_after_seconds,
    seconds_until_reset,
)

__all__ = ["MAX_PAGE_SIZE", "TERMINAL_STATUSES", "Call", "CreatedCall", "VoiceDockClient"]

log = structlog.get_logger("dialer.voicedock")
#: every documented path is under it: https://api.hmsovereign.com/api/v1 (voicedock-api.md §1)
API_PREFIX = "/api/v1"

# TERMINAL_STATUSES (dialer.attempts): the call statuses after which nothing changes (§5);
# override per client if VoiceDock adds one.

MAX_PAGE_SIZE = 1000
"""``GET /calls`` refuses a larger ``limit`` (§6)."""

DEFAULT_RETRY_AFTER_S = 1.0
"""A 429 with neither ``Retry-After`` nor ``X-RateLimit-Reset`` still pauses the key this long."""

#: idle connections kept open per key (see VoiceDockClient.__init__)
KEEPALIVE = 4
_BODY_EXCERPT = 200  # characters of a non-JSON error body worth showing

_SAFE_TO_REPEAT: tuple[type[ProviderError], ...] = (RateLimited, ServerError, TransportFailure)
"""What a GET is repeated on; a create only on RateLimited and TransportFailure (not sent)."""


# ---------------------------------------------------------------------------- records
def _none_if_invalid(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # A field we cannot read must not cost us the call: the outcome is kept whole in `raw`.
    try:
        return handler(value)
    except ValidationError:
        return None


def _utc_if_naive(value: datetime | None) -> datetime | None:
    # The docs show "...Z" timestamps; a naive one is taken as UTC rather than compared with
    # aware datetimes and crashing the engine.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


_Lenient = WrapValidator(_none_if_invalid)
OptStr = Annotated[str | None, _Lenient]
OptTime = Annotated[datetime | None, _Lenient, AfterValidator(_utc_if_naive)]


class Call(BaseModel):
    """The bare call object of ``GET /calls/{id}`` and of each ``GET /calls`` item (§5).

    Unknown fields are kept (``extra="allow"``) and the whole object as received is in ``raw``
    (left out of dumps: it repeats the fields). Build one from JSON with :meth:`from_api`.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str
    status: str
    error: OptStr = None
    end_reason: OptStr = None
    caller_phone: OptStr = None
    assistant_phone: OptStr = None
    phone_number: OptStr = None
    agent_id: OptStr = None
    number_id: OptStr = None
    summary: OptStr = None
    room_name: OptStr = None
    recording_url: OptStr = None
    direction: OptStr = None
    started_at: OptTime = None
    ended_at: OptTime = None
    created_at: OptTime = None
    updated_at: OptTime = None
    duration_seconds: Annotated[int | None, _Lenient] = None
    analysis_result: Annotated[dict[str, Any] | None, _Lenient] = None
    messages: Annotated[list[dict[str, Any]] | None, _Lenient] = None
    raw: dict[str, Any] = Field(default_factory=dict, repr=False, exclude=True)

    _terminal_statuses: frozenset[str] = PrivateAttr(default=TERMINAL_STATUSES)

    @classmethod
    def from_api(
        cls, data: Mapping[str, Any], *, terminal_statuses: frozenset[str] = TERMINAL_STATUSES
    ) -> Call:
        """Parse one call object; raises ``pydantic.ValidationError`` without ``id``/``status``."""
        call = cls.model_validate({**data, "raw": dict(data)})
        call._terminal_statuses = terminal_statuses
        return call

    @property
    def terminal(self) -> bool:
        """The call is over; its outcome will not change."""
        return self.status in self._terminal_statuses


class CreatedCall(BaseModel):
    """The answer to ``POST /calls/outbound``: ``{"success": true, "call_id": …, "status": …}``."""

    model_config = ConfigDict(frozen=True)

    call_id: str
    status: str | None = None
    #: the HTTP status of the answer (201 as documented), kept for the audit log
    http_status: int = 201
    raw: dict[str, Any] = Field(default_factory=dict, repr=False, exclude=True)


def _other_call(item: object, only: Collection[str]) -> bool:
    """A list item that plainly is a call not in ``only`` (anything unreadable is parsed)."""
    call_id = item.get("id") if isinstance(item, dict) else None
    return isinstance(call_id, str) and call_id not in only


def _changed(
    items: list[Any], unchanged: Mapping[str, str | None], seen: set[str] | None
) -> list[Any]:
    """The items not plainly in the status ``unchanged`` knows them in; the ids of all that
    have one go into ``seen``."""
    changed = []
    for item in items:
        call_id = item.get("id") if isinstance(item, dict) else None
        if isinstance(call_id, str):
            if seen is not None:
                seen.add(call_id)
            status = item.get("status")
            if isinstance(status, str) and unchanged.get(call_id, _NEVER) == status:
                continue
        changed.append(item)
    return changed


#: a status no call has: ids ``unchanged`` does not know are always parsed
_NEVER = object()


# ---------------------------------------------------------------------------- the edge
class _Route(enum.Enum):
    """Each request we make: method, path template (for logs and metrics), budget priority."""

    CREATE = ("POST", "/calls/outbound", Priority.CREATE)
    GET = ("GET", "/calls/{id}", Priority.POLL)
    LIST = ("GET", "/calls", Priority.POLL)

    def __init__(self, method: str, template: str, priority: Priority) -> None:
        self.method = method
        self.template = template
        self.priority = priority


# Raised before a byte of the request left us: safe to repeat even for a create.
_NOTHING_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.InvalidURL,
)


@contextlib.contextmanager
def _translate_httpx_errors(route: _Route) -> Iterator[None]:
    """httpx exceptions become ours here and nowhere else (cf. httpx's map_httpcore_exceptions)."""
    try:
        yield
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL is not an HTTPError
        # Frames below us may hold the request headers (httpcore keeps them in locals).
        traceback.clear_frames(exc.__traceback__)
        what = f"{route.method} {route.template}: {type(exc).__name__}: {exc}"
        if isinstance(exc, _NOTHING_SENT):
            raise TransportFailure(f"{what} (not sent)") from exc
        if route is _Route.CREATE:
            raise AmbiguousCreate(
                f"{what} — the call may have been placed; reconcile before dialing again"
            ) from exc
        raise TransportFailure(what) from exc


def _describe_error_body(response: httpx.Response) -> str:
    """A readable message from either error shape (§11), or from a non-JSON body; a server
    that echoes the key back does not get it into our message."""
    text = _describe_body(response)
    secret = response.request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return text.replace(secret, "[redacted]") if secret else text


def _describe_body(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = " ".join(response.text.split())
        if len(text) > _BODY_EXCERPT:
            text = text[:_BODY_EXCERPT] + "…"
        return text or response.reason_phrase or "no body"
    if not isinstance(body, dict):
        return str(body)[:_BODY_EXCERPT]
    error = body.get("error")
    extras: list[str] = []
    if isinstance(error, dict):
        # nested: {"error": {"code", "message", "param", "type"}}
        message = str(error.get("message") or error.get("code") or "no message")
        for name in ("code", "param", "type"):
            if error.get(name):
                extras.append(f"{name}={error[name]}")
    else:
        # flat: {"error": "Invalid API key", "message": "...", "param"?, "details"?}
        parts = [str(part) for part in (error, body.get("message")) if part]
        message = ": ".join(parts) if parts else "no message"
        if body.get("param"):
            extras.append(f"param={body['param']}")
    details = body.get("details") if not isinstance(error, dict) else error.get("details")
    if isinstance(details, list) and details:
        extras.append("details=" + "; ".join(str(d) for d in details))
    return f"{message} ({', '.join(extras)})" if extras else message


def _error_fields(response: httpx.Response) -> dict[str, str | None]:
    """The error body's code, named field and message, as keyword arguments of a
    ProviderError (dialer.policy.rejections reads them); None where the body has none."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"code": None, "param": None, "said": _describe_error_body(response)}
    if not isinstance(body, dict):
        return {"code": None, "param": None, "said": _describe_error_body(response)}
    error = body.get("error")
    if isinstance(error, dict):
        code, param, said = error.get("code"), error.get("param"), error.get("message")
    else:
        code, param = None, body.get("param")
        said = ": ".join(str(part) for part in (error, body.get("message")) if part)
    secret = response.request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    said = str(said or code or "") or None
    if said and secret:
        said = said.replace(secret, "[redacted]")
    return {
        "code": str(code) if code else None,
        "param": str(param) if param else None,
        "said": said[:_BODY_EXCERPT] if said else None,
    }


def _retry_after(response: httpx.Response, *, now_wall: float) -> float:
    """Retry-After (see ``retry_after_seconds``), else X-RateLimit-Reset - now, else a second."""
    seconds = retry_after_seconds(response.headers.get("Retry-After"), now_wall=now_wall)
    if seconds is not None:
        return seconds
    reset = seconds_until_reset(response.headers.get("X-RateLimit-Reset"), now_wall=now_wall)
    return reset if reset is not None else DEFAULT_RETRY_AFTER_S


def _raise_for_status(route: _Route, response: httpx.Response, *, retry_after: float) -> NoReturn:
    """Map a non-2xx answer onto dialer.errors."""
    status = response.status_code
    what = f"{route.method} {route.template} → {status}: {_describe_error_body(response)}"
    if status == 429:
        raise RateLimited(what, retry_after=retry_after)
    if status in (401, 403):
        raise Unauthorized(what, status_code=status, **_error_fields(response))
    if status == 402:
        raise InsufficientCredits(what, status_code=status, **_error_fields(response))
    if status == 404:
        raise NotFound(what, status_code=status, **_error_fields(response))
    if status >= 500:
        if route is _Route.CREATE:
            raise AmbiguousCreate(
                f"{what} — the call may have been placed; reconcile before dialing again",
                status_code=status,
            )
        raise ServerError(what, status_code=status)
    if 300 <= status < 400:
        # No redirects are followed: the endpoint did not act, and base_url is probably wrong.
        location = response.headers.get("Location", "?")
        raise InvalidRequest(f"{what} (redirect to {location}; check base_url)", status_code=status)
    # 400/409/422 by the docs; any other 4xx is as final.
    raise InvalidRequest(what, status_code=status, **_error_fields(response))


def _unreadable(route: _Route, response: httpx.Response, problem: str) -> ServerError:
    return ServerError(
        f"{route.method} {route.template} → {response.status_code}: unreadable answer: {problem}",
        status_code=response.status_code,
    )


# ---------------------------------------------------------------------------- the client
class VoiceDockClient:
    """Async client for the three calls endpoints a dialer needs; use with ``async with``.

    Timeouts are per phase (httpx): ``connect_timeout_s`` to connect or get a pooled connection,
    ``read_timeout_s`` per read/write on GETs, ``create_timeout_s`` per read on the POST, which
    may take as long as placing the call. GETs are repeated ``get_retries`` times (and a create
    as often, only when safe) with full-jitter exponential backoff between ``backoff_base_s``
    and ``backoff_max_s``; ``backoff_base_s=0`` makes retries immediate for tests.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        budget: RequestBudget,
        transport: httpx.AsyncBaseTransport | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 15.0,
        create_timeout_s: float = 30.0,
        get_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        terminal_statuses: frozenset[str] = TERMINAL_STATUSES,
    ) -> None:
        if not api_key.strip():
            raise ValueError("api_key is empty")
        if not all("!" <= c <= "~" for c in api_key):
            # httpx would refuse the header later with the key in its message
            raise ValueError("api_key has a character an HTTP header cannot carry")
        if get_retries < 0:
            raise ValueError(f"get_retries must be >= 0, not {get_retries}")
        if backoff_base_s < 0 or backoff_max_s < 0:
            raise ValueError("backoff_base_s and backoff_max_s must be >= 0")
        self.base_url = base_url.rstrip("/")
        self._create_404_hinted = False
        self.requests_sent: Counter[tuple[str, str, int | str]] = Counter()
        """Requests by (method, path template, status code or "error"), for metrics."""
        self._budget = budget
        self._get_retries = get_retries
        self._backoff = wait_random_exponential(multiplier=backoff_base_s, max=backoff_max_s)
        self._terminal_statuses = frozenset(terminal_statuses)
        self._create_timeout = httpx.Timeout(
            connect=connect_timeout_s,
            read=create_timeout_s,
            write=read_timeout_s,
            pool=connect_timeout_s,
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            # only here: httpx masks Authorization in every repr of headers and requests
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=httpx.Timeout(
                connect=connect_timeout_s,
                read=read_timeout_s,
                write=read_timeout_s,
                pool=connect_timeout_s,
            ),
            # A key's budget is under two requests a second: a few kept-alive connections carry
            # it. httpcore checks every pooled connection (a poll(2) each) on every request, so
            # the 20 idle ones httpx keeps by default after a burst of creates cost CPU on
            # every request that follows.
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=KEEPALIVE),
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"VoiceDockClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> VoiceDockClient:
        await self._http.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def budget(self) -> RequestBudget:
        return self._budget

    # ------------------------------------------------------------------ endpoints
    async def create_call(
        self,
        body: Mapping[str, Any],
        *,
        before_send: Callable[[], bool] | None = None,
        before_wait: Callable[[], None] | None = None,
    ) -> CreatedCall:
        """``POST /calls/outbound``; re-sent only when VoiceDock cannot have acted on it.

        ``before_send`` is asked after each budget wait, just before the bytes go out; False
        withdraws the create (CreateWithdrawn, nothing sent). A wait can be long (a 429 pause),
        and what allowed the dial when it was queued may no longer hold by then.
        ``before_wait`` is told before each budget wait, the first and those before a re-send:
        until ``before_send``, nothing of this create is out.

        Raises AmbiguousCreate when it may have acted (5xx, timeout after sending, dropped
        connection, 2xx without ``call_id``); RateLimited / TransportFailure once the safe
        re-sends are used up; Unauthorized, InsufficientCredits, NotFound, InvalidRequest.
        """
        route = _Route.CREATE
        try:
            response = await self._request(
                route,
                "/calls/outbound",
                retry_on=(RateLimited, TransportFailure),
                body=dict(body),
                timeouts=self._create_timeout,
                before_send=before_send,
                before_wait=before_wait,
            )
        except NotFound:
            self._hint_create_not_found()
            raise
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("call_id"), str)
            or not data["call_id"]
        ):
            raise AmbiguousCreate(
                f"POST {route.template} → {response.status_code} without a call_id — "
                "the call may have been placed; reconcile before dialing again",
                status_code=response.status_code,
            )
        status = data.get("status")
        return CreatedCall(
            call_id=data["call_id"],
            status=status if isinstance(status, str) else None,
            http_status=response.status_code,
            raw=data,
        )

    def _hint_create_not_found(self) -> None:
        """Once per client: what a 404 on the create usually means. A new user's first
        mistake is a base_url without VoiceDock's /api/v1 prefix (every path is then unknown);
        with the prefix, the assistant or the number the body names is."""
        if self._create_404_hinted:
            return
        self._create_404_hinted = True
        if self.base_url.endswith(API_PREFIX):
            hint = (
                f"[voicedock] base_url ends in {API_PREFIX}: check that the campaign's "
                "assistant_id (and number_id) exist in this VoiceDock account"
            )
        else:
            hint = (
                f"[voicedock] base_url should end in {API_PREFIX} (it is {self.base_url}), "
                f"e.g. https://api.hmsovereign.com{API_PREFIX}"
            )
        log.warning("dialer.api.create_not_found", hint=hint, base_url=self.base_url)

    async def get_call(self, call_id: str) -> Call:
        """``GET /calls/{id}``. Raises NotFound, AccountError, or after the retries
        ServerError / TransportFailure / RateLimited."""
        if not call_id:
            raise ValueError("call_id is empty")
        route = _Route.GET
        # quote what would end the path segment; "+" of "call-_+3162…" ids stays literal
        path = "/calls/" + quote(call_id, safe="!$&'()*+,;=:@")
        response = await self._request(route, path, retry_on=_SAFE_TO_REPEAT, call_id=call_id)
        return self._parse_call(route, response, self._json(route, response))

    async def list_calls(
        self,
        *,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        status: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        only: Collection[str] | None = None,
        unchanged: Mapping[str, str | None] | None = None,
        seen: set[str] | None = None,
    ) -> list[Call]:
        """Every call matching the filters, reading all pages (offset paging, §6); each page
        is one request of the budget. Calls seen twice (new calls shift the pages) count once.

        ``only``: return just the calls with these ids. A follower's list holds every recent
        call, mostly ended ones it no longer follows; parsing only those it does is most of
        the CPU of a list. An item without a readable id still fails the whole list.
        ``unchanged``: call id -> the status the caller knows it in; an item still in that
        status is not parsed nor returned (most followed calls, on a list every few seconds).
        ``seen``: filled with the id of every item listed that ``only`` or ``unchanged`` asks
        for, returned or not.
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be in 1..{MAX_PAGE_SIZE}, not {page_size}")
        route = _Route.LIST
        params: dict[str, str | int] = {"limit": page_size}
        if start_date is not None:
            params["start_date"] = _iso(start_date, "start_date")
        if end_date is not None:
            params["end_date"] = _iso(end_date, "end_date")
        if status is not None:
            params["status"] = status
        calls: dict[str, Call] = {}
        offset = 0
        while True:
            page, read, total = await self._list_page(
                route, {**params, "offset": offset}, only, unchanged, seen
            )
            for call in page:
                calls.setdefault(call.id, call)
            offset += read
            # an empty page before `total` would otherwise loop forever
            if total is None or not read or offset >= total:
                return list(calls.values())

    async def probe(self) -> None:
        """One ``GET /calls?limit=1``, sent once: does VoiceDock answer at all? Raises
        TransportFailure when nothing answered, the mapped error of an error answer. The
        engine asks it of a key that stopped answering, instead of its creates and polls."""
        await self._request(_Route.LIST, "/calls", retry_on=(), params={"limit": 1})

    # ------------------------------------------------------------------ plumbing
    async def _list_page(
        self,
        route: _Route,
        params: Mapping[str, str | int],
        only: Collection[str] | None,
        unchanged: Mapping[str, str | None] | None = None,
        seen: set[str] | None = None,
    ) -> tuple[list[Call], int, int | None]:
        """The page's calls (those in ``only``, less those ``unchanged``), how many items it
        had, and the total."""
        response = await self._request(route, "/calls", retry_on=_SAFE_TO_REPEAT, params=params)
        body = self._json(route, response)
        items = body.get("calls") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise _unreadable(route, response, "no `calls` list")
        pagination = body.get("pagination")
        total = pagination.get("total") if isinstance(pagination, dict) else None
        wanted = items if only is None else [i for i in items if not _other_call(i, only)]
        if unchanged is not None or seen is not None:
            wanted = _changed(wanted, unchanged or {}, seen)
        return (
            [self._parse_call(route, response, item) for item in wanted],
            len(items),
            total if isinstance(total, int) else None,
        )

    async def _request(
        self,
        route: _Route,
        path: str,
        *,
        retry_on: tuple[type[ProviderError], ...],
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        timeouts: httpx.Timeout | None = None,
        call_id: str | None = None,
        before_send: Callable[[], bool] | None = None,
        before_wait: Callable[[], None] | None = None,
    ) -> httpx.Response:
        """A 2xx response, sending again on the failures in ``retry_on`` (and only those)."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._get_retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(retry_on),
            reraise=True,  # the caller sees our exception, not tenacity's RetryError
            # the back-off before a re-send is a wait too: nothing of the request is out
            before_sleep=None if before_wait is None else lambda _: before_wait(),
        )
        async for attempt in retrying:
            with attempt:
                return await self._send(
                    route,
                    path,
                    attempt=attempt.retry_state.attempt_number,
                    params=params,
                    body=body,
                    timeouts=timeouts,
                    call_id=call_id,
                    before_send=before_send,
                    before_wait=before_wait,
                )
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    def _wait(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        if outcome is not None and isinstance(outcome.exception(), RateLimited):
            # The budget already holds every request of the key until Retry-After has passed
            # (pause_for in _send); waiting here too would only add the jitter.
            return 0.0
        return float(self._backoff(retry_state))

    async def _send(
        self,
        route: _Route,
        path: str,
        *,
        attempt: int,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        timeouts: httpx.Timeout | None = None,
        call_id: str | None = None,
        before_send: Callable[[], bool] | None = None,
        before_wait: Callable[[], None] | None = None,
    ) -> httpx.Response:
        """One request: a budget slot, the exchange, a log line, a count; non-2xx raises."""
        if before_wait is not None:
            before_wait()
        await self._budget.acquire(route.priority)
        if before_send is not None and not before_send():
            raise CreateWithdrawn(f"{route.method} {route.template} withdrawn before sending")
        started = time.perf_counter()
        status: int | str = "error"
        error: str | None = None
        try:
            with _translate_httpx_errors(route):
                response = await self._http.request(
                    route.method,
                    path,
                    params=params,
                    json=body,
                    timeout=timeouts if timeouts is not None else httpx.USE_CLIENT_DEFAULT,
                )
            status = response.status_code
        except ProviderError as exc:
            error = type(exc.__cause__ or exc).__name__
            raise
        finally:
            self.requests_sent[(route.method, route.template, status)] += 1
            log.info(
                "dialer.api.request",
                method=route.method,
                path=route.template,
                status=status,
                latency_ms=round((time.perf_counter() - started) * 1000, 1),
                attempt=attempt,
                **({"call_id": call_id} if call_id else {}),
                **({"error": error} if error else {}),
            )
        self._budget.observe(response.headers)
        if response.is_success:
            return response
        retry_after = DEFAULT_RETRY_AFTER_S
        if response.status_code == 429:
            retry_after = _retry_after(response, now_wall=self._budget.wall_time())
            self._budget.pause_for(retry_after)
        _raise_for_status(route, response, retry_after=retry_after)

    def _json(self, route: _Route, response: httpx.Response) -> Any:
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _unreadable(route, response, f"not JSON ({exc})") from exc

    def _parse_call(self, route: _Route, response: httpx.Response, data: Any) -> Call:
        if not isinstance(data, dict):
            raise _unreadable(route, response, "a call is not a JSON object")
        try:
            return Call.from_api(data, terminal_statuses=self._terminal_statuses)
        except ValidationError as exc:
            # A listed call we cannot read must fail the list, not vanish from it: reconcile
            # would take its absence as "never placed" and dial again.
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise _unreadable(route, response, problems) from exc


def _iso(value: datetime, name: str) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, not {value!r}")
    return value.isoformat()
