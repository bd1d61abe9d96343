"""One request budget per API key: every create, poll and list waits here for its slot.

VoiceDock allows 100 requests a minute per API key, all endpoints together (voicedock-api.md §9),
and answers 429 with ``Retry-After`` beyond that. A :class:`RequestBudget` is shared by every
request one API key makes from this process::

    budget = RequestBudget(100)                     # 95 a minute: 5 % kept in reserve
    await budget.acquire(Priority.CREATE)           # then send the request
    budget.observe(response.headers)                # steer by X-RateLimit-Remaining / -Reset
    budget.pause_for(45)                            # after a 429 with Retry-After: 45

Rules, in the order they are checked for the next waiter:

1. a pause (429 ``Retry-After``) or hold (``X-RateLimit-Remaining`` at the reserve, until
   ``X-RateLimit-Reset``) stops all traffic of the key; both only ever extend;
2. at most ``rate_per_minute`` slots in ANY 60 s window (a sliding-window log), so neither a
   fixed-minute nor a sliding-window counter on the server can be exceeded by us;
3. waiting CREATEs before waiting POLLs, first come first served within a priority: a due call
   should not slip behind polls, and polling adapts to fewer answers.

Why not aiolimiter's ``AsyncLimiter``, the library we would rather build on: it cannot fit.

- Its only time source is ``loop.time()``; the injected ``clock`` that pauses, wall-clock resets
  and the tests are measured in cannot drive it, so tests would have to wait in real time.
- It is a leaky bucket whose capacity is also its burst: ``AsyncLimiter(95, 60)`` lets through
  95 at once and then 95 more over the next minute, up to 190 in one 60 s window — a certain 429
  against a per-minute limit. Only ``AsyncLimiter(1, 60 / 95)`` is safe, and then every request
  is spaced 0.63 s apart, even the first ones after an idle hour.
- Its waiters are ordered by (amount, arrival): no priorities; no pause; and a slot handed to a
  waiter that is cancelled before it resumes stays consumed. Adding those means reaching into
  its private ``_level`` / ``_waiters`` / ``_wake_next``.

What would remain of it is three lines of arithmetic, so the budget keeps its own sliding-window
log and one dispatcher task, the only coroutine that ever sleeps: that is also what makes a fake
``clock`` + ``sleep`` pair give exact, instant tests (see ``tests/test_ratelimit.py``).

Several daemons sharing one key must also share a budget; the store's GCRA row does that.
This class is the in-process part, and ``observe`` is how it notices the others' traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from heapq import heappop, heappush
from itertools import count
from typing import Any, Protocol

import structlog

from dialer.errors import StoreUnavailable
from dialer.policy.backoff import Backoff

__all__ = [
    "MAX_HOLD_S",
    "MAX_RETRY_AFTER_S",
    "WINDOW_S",
    "Priority",
    "RequestBudget",
    "budget_rate",
    "retry_after_seconds",
    "seconds_until_reset",
    "spaced_burst",
]

log = structlog.get_logger("dialer.ratelimit")

WINDOW_S = 60.0
"""The server counts requests per minute."""

MAX_HOLD_S = 120.0
"""Longest hold taken from an ``X-RateLimit-Reset`` header. The window is a minute: a reset
further away than two is a skewed clock or a misread unit, and obeying it could stall the
dialer for hours."""

MAX_RETRY_AFTER_S = 3600.0
"""Longest pause taken from a 429's ``Retry-After``, which is honoured in full up to this. A
longer one (a day, a number that is really an epoch) would freeze every daemon on the key,
across restarts on PostgreSQL; past an hour, the next request asks the server again."""

# Below this a "unix timestamp" is really a number of seconds (some servers send a delta); above
# _MS_EPOCH it is in milliseconds. Neither is documented for VoiceDock; both are cheap to accept.
_DELTA_BELOW = 1e9
_MS_EPOCH = 1e11


class Priority(IntEnum):
    """Lower is served first."""

    CREATE = 0
    POLL = 1


def seconds_until_reset(value: str | None, *, now_wall: float) -> float | None:
    """Seconds from ``now_wall`` until an ``X-RateLimit-Reset`` header value, within
    ``[0, MAX_HOLD_S]``; ``None`` if the header is absent or not a number.

    >>> seconds_until_reset("1702479645", now_wall=1702479600.0)
    45.0
    """
    if value is None:
        return None
    try:
        reset = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(reset) or reset < 0:
        return None
    if reset > _MS_EPOCH:
        reset /= 1000.0
    delta = reset if reset < _DELTA_BELOW else reset - now_wall
    return min(max(delta, 0.0), MAX_HOLD_S)


def _header_count(text: str) -> int | None:
    """A header's whole number ("42", "42.0"); None when it is not a finite number."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return int(value) if math.isfinite(value) else None


def retry_after_seconds(value: str | None, *, now_wall: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date (RFC 9110),
    a number that is really a unix time read as one; at most ``MAX_RETRY_AFTER_S``. None when
    absent or unreadable.

    >>> retry_after_seconds("300", now_wall=1702479600.0)
    300.0
    >>> retry_after_seconds("1702479645", now_wall=1702479600.0)
    45.0
    """
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(text).timestamp() - now_wall
        except (TypeError, ValueError, OverflowError):
            return None
    else:
        if not math.isfinite(seconds):
            return None
        if seconds > _MS_EPOCH:
            seconds /= 1000.0
        if seconds >= _DELTA_BELOW:
            seconds -= now_wall  # a unix time, not a number of seconds
    if seconds > MAX_RETRY_AFTER_S:
        log.warning("dialer.budget.retry_after_capped", retry_after=text, cap_s=MAX_RETRY_AFTER_S)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def budget_rate(requests_per_minute: int, margin: float) -> int:
    """Requests a minute a budget grants: the limit less its margin, at least one.

    >>> budget_rate(100, 0.29)
    71
    """
    # round() first: 100 * (1 - 0.29) is 70.99999999999999, which must not floor to 70
    return max(1, math.floor(round(requests_per_minute * (1 - margin), 9)))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # httpx.Headers is case-insensitive; a plain dict (tests, webhooks) may not be.
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, item in headers.items():
        if key.lower() == lowered:
            return item
    return None


class RequestBudget:
    """The request slots of one API key, shared by creates, polls and lists.

    ``rate_per_minute = max(1, floor(requests_per_minute * (1 - margin)))``. ``clock`` is
    monotonic seconds, ``wall_clock`` unix seconds (for ``X-RateLimit-Reset``), ``sleep`` the
    coroutine the dispatcher waits with; tests pass a fake trio of them. ``reserve`` is the
    ``X-RateLimit-Remaining`` at or below which traffic holds until the reset; by default the
    margin in requests, so another user of the key keeps that share. ``time_scale``: the
    key's minute lasts ``60 / time_scale`` seconds of ``clock`` (the time-scaled simulator of
    the bench, whose limit counts simulated minutes); 1 everywhere else. ``burst``: at most
    this many slots in any ``burst`` x (minute / rate), so no window holds more than its
    share of the rate plus ``burst``; None: the whole rate at once. A window short enough
    that the requests' own latency is a share of it (time-scaled) needs it: a full window's
    burst arriving late meets the next window's at the server.
    """

    def __init__(
        self,
        requests_per_minute: int,
        *,
        margin: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        reserve: int | None = None,
        time_scale: float = 1.0,
        burst: int | None = None,
    ) -> None:
        if requests_per_minute < 1:
            raise ValueError(f"requests_per_minute must be >= 1, not {requests_per_minute}")
        if not 0 <= margin < 1:
            raise ValueError(f"margin must be in [0, 1), not {margin}")
        self._rate = budget_rate(requests_per_minute, margin)
        self._reserve = requests_per_minute - self._rate if reserve is None else reserve
        self._margin = margin
        self._margin_reserve = reserve is None
        if self._reserve < 0:
            raise ValueError(f"reserve must be >= 0, not {self._reserve}")
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, not {time_scale}")
        self._window = WINDOW_S / time_scale
        self._time_scale = time_scale
        if burst is not None and burst < 1:
            raise ValueError(f"burst must be >= 1, not {burst}")
        self._spaced_burst = burst
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._granted: deque[float] = deque()  # clock() of each slot granted in the last window
        self._heap: list[tuple[int, int, asyncio.Future[float]]] = []
        self._order = count()
        self._waiting: Counter[Priority] = Counter()
        self._paused_until: float | None = None
        self._sent_total = 0
        self._server_remaining: int | None = None
        self._dispatcher: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return (
            f"RequestBudget(rate_per_minute={self._rate}, sent_total={self._sent_total}, "
            f"waiting={sum(self._waiting.values())}, paused_until={self.paused_until})"
        )

    # ------------------------------------------------------------------ status
    @property
    def rate_per_minute(self) -> int:
        """Slots per 60 s window after the margin."""
        return self._rate

    @property
    def window_s(self) -> float:
        """The length of the key's minute by ``clock`` (60 s unless time-scaled)."""
        return self._window

    @property
    def paused_until(self) -> float | None:
        """``clock()`` time until which all traffic is held, or ``None`` if it is not."""
        if self._paused_until is None or self._paused_until <= self._clock():
            return None
        return self._paused_until

    @property
    def sent_total(self) -> int:
        """Slots granted and not given back by a cancelled waiter."""
        return self._sent_total

    def wall_time(self) -> float:
        """Unix seconds by the budget's wall clock, to read ``X-RateLimit-Reset`` against."""
        return self._wall_clock()

    def remaining(self) -> int:
        """Requests this window still has: VoiceDock's own count when its last answer gave
        one (it sees every user of the key), else what our own grants leave of the rate."""
        if self._server_remaining is not None:
            return self._server_remaining
        now = self._clock()
        return max(0, self._rate - sum(1 for t in self._granted if t + self._window > now))

    def waiting(self, priority: Priority | None = None) -> int:
        """How many acquirers wait (of one priority, or all)."""
        if priority is None:
            return sum(self._waiting.values())
        return self._waiting[priority]

    # ------------------------------------------------------------------ steering
    def pause_for(self, seconds: float) -> None:
        """Hold every request of the key for ``seconds`` (a 429's ``Retry-After``; a
        time-scaled budget reads them as the simulator's: whole real seconds are simulated
        minutes, and the simulator means the seconds left of its minute)."""
        self._hold(seconds / self._time_scale, reason="retry_after")

    def observe(self, headers: Mapping[str, str]) -> None:
        """Hold traffic until ``X-RateLimit-Reset`` once ``X-RateLimit-Remaining`` is at or
        below the reserve. Headers that are absent or unreadable change nothing."""
        remaining_text = _header(headers, "X-RateLimit-Remaining")
        if remaining_text is None:
            return
        remaining = _header_count(remaining_text)
        if remaining is None:
            return
        self._server_remaining = remaining
        if self._time_scale != 1.0:
            # A reset in whole real seconds is a simulated minute: held to it, a time-scaled
            # budget would stall; its own window is exact, and a 429 still pauses it.
            return
        reserve = self._reserve
        limit_text = _header(headers, "X-RateLimit-Limit")
        limit = None if limit_text is None else _header_count(limit_text)
        if limit is not None and self._margin_reserve:
            # The server's own limit is the truth about its window; a configured rate that
            # differs (another key's settings, a time-scaled test) must not hold traffic early.
            reserve = min(reserve, math.ceil(limit * self._margin))
        if remaining > reserve:
            return
        seconds = seconds_until_reset(
            _header(headers, "X-RateLimit-Reset"), now_wall=self._wall_clock()
        )
        if seconds is not None:
            self._hold(seconds, reason="remaining", remaining=remaining)

    def _hold(self, seconds: float, *, reason: str, **detail: object) -> None:
        if not seconds > 0:  # also rejects NaN
            return
        seconds = min(seconds, MAX_RETRY_AFTER_S)
        until = self._clock() + seconds
        if self._paused_until is not None and until <= self._paused_until:
            return  # pauses only extend
        self._paused_until = until
        log.info("dialer.budget.paused", seconds=round(seconds, 3), reason=reason, **detail)

    # ------------------------------------------------------------------ slots
    async def acquire(self, priority: Priority) -> None:
        """Wait for one request slot. Cancelling the wait gives up the place in line and, if
        the slot was already handed over, gives the slot back."""
        priority = Priority(priority)
        now = self._clock()
        if not self._waiting and self._delay(now) <= 0 and self._shared_wait() <= 0:
            self._grant(now)
            return
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        heappush(self._heap, (priority, next(self._order), future))
        self._waiting[priority] += 1

        def left(_: asyncio.Future[float]) -> None:
            self._waiting[priority] -= 1
            if not self._waiting[priority]:
                del self._waiting[priority]

            if not self._waiting and self._dispatcher is not None:
                # Everyone gave up: stop the dispatcher's sleep rather than leave a task behind.
                self._dispatcher.cancel()

        future.add_done_callback(left)
        self._ensure_dispatcher()
        try:
            await future
        except asyncio.CancelledError:
            # Granted, then cancelled before this task resumed: nothing was sent on it.
            if future.done() and not future.cancelled():
                self._refund(future.result())
            raise

    def _delay(self, now: float) -> float:
        """Seconds until a slot may be granted at ``now`` (0 when one may be now)."""
        while self._granted and self._granted[0] + self._window <= now:
            self._granted.popleft()
        delay = 0.0
        if self._paused_until is not None:
            delay = self._paused_until - now
        if len(self._granted) >= self._rate:
            delay = max(delay, self._granted[0] + self._window - now)
        burst = self._spaced_burst
        if burst is not None and len(self._granted) >= burst:
            spaced = self._granted[-burst] + burst * self._window / self._rate
            delay = max(delay, spaced - now)
        return max(delay, 0.0)

    def _shared_wait(self) -> float:
        """Seconds until the slot other processes share is free; 0: it is free, and taken.

        Asked only once this process's own rules allow a grant, so pauses and priorities
        hold whatever the others do. Nothing is shared by this class."""
        return 0.0

    def _grant(self, now: float) -> None:
        self._granted.append(now)
        self._sent_total += 1

    def _refund(self, granted_at: float) -> None:
        self._sent_total -= 1
        with contextlib.suppress(ValueError):  # already slid out of the window
            self._granted.remove(granted_at)

    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(
                self._dispatch(), name="dialer.budget.dispatch"
            )

    async def _dispatch(self) -> None:
        """Hand out slots to waiters in priority order; the only place that sleeps, so a new
        CREATE arriving during a wait is first in line when the wait ends."""
        try:
            while True:
                while self._heap and self._heap[0][2].done():
                    heappop(self._heap)  # cancelled waiters
                if not self._heap:
                    return
                now = self._clock()
                delay = self._delay(now) or self._shared_wait()
                if delay > 0:
                    await self._sleep(delay)
                    continue
                future = heappop(self._heap)[2]
                self._grant(now)
                future.set_result(now)
        except BaseException as exc:
            # Waiters must not hang on a dead dispatcher: hand them its failure.
            for _, _, future in self._heap:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            self._heap.clear()
            raise


MAX_BURST = 5


def spaced_burst(requests_per_minute: int, rate_per_minute: int) -> int:
    """How many slots may go back to back: half the margin (the limit less the rate), at
    least 1, at most MAX_BURST.

    A window of VoiceDock's holds at most the rate, plus the burst, plus what latency moves
    into it: a request that took d seconds longer to arrive than those after it brings
    rate x d / 60 more. With the whole margin as the burst (5 of 100 at the default 5 %), any
    latency at all could make 101; half of it leaves ~2 s of spread to the other half.
    """
    margin = requests_per_minute - rate_per_minute
    return max(1, min(margin // 2, MAX_BURST))


#: while the database cannot give a slot of the shared row, it is asked again after these
#: waits (the requests wait meanwhile); they grow, since each try may hold the event loop for
#: a connect timeout
SHARED_ROW_BACKOFF = Backoff(base=timedelta(seconds=0.5), cap=timedelta(seconds=10))


class SlotSource(Protocol):
    """Where a budget shared between processes takes its slots (dialer.store.Store does)."""

    def take_request_slot(
        self, key_name: str, *, now: datetime, interval: timedelta, burst: int
    ) -> timedelta: ...

    def hold_request_slots(
        self, key_name: str, *, until: datetime, interval: timedelta, burst: int
    ) -> None: ...


class SharedBudget(RequestBudget):
    """A key's budget shared by every daemon: this process's queue (priorities, pauses, header
    steering) first, then one slot of the key's GCRA row in the database.

    With the burst half of ``requests_per_minute - rate`` (spaced_burst), any 60 s window
    holds at most the rate plus the burst, within the limit with room for latency, however
    many daemons send.
    """

    def __init__(
        self,
        requests_per_minute: int,
        *,
        slots: SlotSource,
        key_name: str = "default",
        margin: float = 0.05,
        wall_now: Callable[[], datetime] = lambda: datetime.now(UTC),
        **kwargs: Any,
    ) -> None:
        super().__init__(requests_per_minute, margin=margin, **kwargs)
        self._slots = slots
        self._key_name = key_name
        self._interval = timedelta(seconds=WINDOW_S / self.rate_per_minute)
        # A small burst keeps requests evenly spaced, which is safe whatever window VoiceDock
        # counts in (fixed or sliding minute): any window W holds at most W/interval + burst.
        self._burst = spaced_burst(requests_per_minute, self.rate_per_minute)
        self._wall_now = wall_now
        #: tries in a row the shared row could not be read (said once, until it can again)
        self._row_failures = 0
        self._jitter = random.Random()

    def _shared_wait(self) -> float:
        """The shared row's answer; while the database cannot give one, nothing is sent: the
        others' share cannot be known, and a request past it could be over the limit."""
        try:
            wait = self._slots.take_request_slot(
                self._key_name, now=self._wall_now(), interval=self._interval, burst=self._burst
            )
        except StoreUnavailable as exc:
            if not self._row_failures:
                log.warning(
                    "dialer.budget.shared_row_unavailable", key=self._key_name, error=str(exc)
                )
            self._row_failures += 1
            return SHARED_ROW_BACKOFF.delay(self._row_failures, self._jitter).total_seconds()
        if self._row_failures:
            log.info("dialer.budget.shared_row_back", key=self._key_name)
            self._row_failures = 0
        return max(wait.total_seconds(), 0.0)

    def _hold(self, seconds: float, *, reason: str, **detail: object) -> None:
        """A 429's pause or a header's hold is the server's word about the whole key: the
        other daemons on it hold too (through the shared row), not only this one. With the
        database away, only this daemon holds; the others hear the 429 themselves."""
        super()._hold(seconds, reason=reason, **detail)
        if seconds > 0:  # also rejects NaN
            try:
                self._slots.hold_request_slots(
                    self._key_name,
                    until=self._wall_now() + timedelta(seconds=min(seconds, MAX_RETRY_AFTER_S)),
                    interval=self._interval,
                    burst=self._burst,
                )
            except StoreUnavailable as exc:
                log.warning("dialer.budget.hold_not_shared", key=self._key_name, error=str(exc))
