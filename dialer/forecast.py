"""When each contact of a campaign will first be called: a pure forecast for `dialer plan`.

The model mirrors the dispatcher without its I/O: contacts are taken in the order of the first
instant the policy allows them (their local calling window, ``call_at`` / ``appointment_at``),
and a dial starts at the earliest instant that is allowed for the contact and fits three
limits: at most ``max_concurrent`` calls at once (each assumed to hold its line for
``call_duration``: the call itself and the time until the dialer sees it end),
``calls_per_minute`` and the share of ``requests_per_minute`` a call needs
(``requests_per_call``: the create plus its polls). It is a forecast, not a promise: real calls
end early or late, retries and other campaigns compete for the same budget.

    >>> from datetime import UTC, datetime
    >>> from zoneinfo import ZoneInfo
    >>> from dialer.policy import CallingWindow
    >>> now = datetime(2027, 3, 1, 7, 0, tzinfo=UTC)
    >>> plan = forecast(
    ...     [Demand(key="a", not_before=None, deadline=None, zone=ZoneInfo("Europe/Amsterdam"))],
    ...     window=CallingWindow.default(),
    ...     capacity=Capacity(max_concurrent=1),
    ...     now=now,
    ... )
    >>> plan["a"].first_call.isoformat()
    '2027-03-01T08:00:00+00:00'
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dialer.policy.windows import CallingWindow

__all__ = ["Capacity", "Demand", "Forecast", "dial_spacing", "forecast"]

#: a call takes its create, a first look and a few polls while it rings and talks
DEFAULT_REQUESTS_PER_CALL = 4.0
DEFAULT_CALL_DURATION = timedelta(seconds=90)


@dataclass(frozen=True, kw_only=True)
class Capacity:
    """The limits a campaign's dials share."""

    max_concurrent: int
    calls_per_minute: float | None = None
    requests_per_minute: int = 100
    requests_per_call: float = DEFAULT_REQUESTS_PER_CALL
    call_duration: timedelta = DEFAULT_CALL_DURATION

    def __post_init__(self) -> None:
        if self.max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, not {self.max_concurrent}")
        if self.requests_per_minute < 1 or self.requests_per_call <= 0:
            raise ValueError("requests_per_minute and requests_per_call must be positive")
        if self.calls_per_minute is not None and self.calls_per_minute <= 0:
            raise ValueError(f"calls_per_minute must be > 0, not {self.calls_per_minute}")


@dataclass(frozen=True, kw_only=True)
class Demand:
    """One contact to forecast: the bounds from its timing and its resolved zone."""

    key: str
    not_before: datetime | None
    deadline: datetime | None
    zone: ZoneInfo
    #: further zones the contact may be in (its window must be open there too)
    also: tuple[ZoneInfo, ...] = ()
    #: the contact's own window (the campaign's with its public holidays) when it differs
    #: from the forecast's ``window``
    window: CallingWindow | None = None

    @property
    def zones(self) -> tuple[ZoneInfo, ...]:
        return (self.zone, *self.also)


@dataclass(frozen=True, kw_only=True)
class Forecast:
    """``first_call`` is None when no allowed instant fits before the deadline (``reason``)."""

    first_call: datetime | None
    reason: str | None = None


def dial_spacing(capacity: Capacity) -> timedelta:
    """The least time between two dial starts that both rates allow."""
    per_minute = capacity.requests_per_minute / capacity.requests_per_call
    if capacity.calls_per_minute is not None:
        per_minute = min(per_minute, capacity.calls_per_minute)
    return timedelta(minutes=1) / per_minute


def forecast(
    demands: Sequence[Demand] | Iterable[Demand],
    *,
    window: CallingWindow,
    capacity: Capacity,
    now: datetime,
) -> dict[str, Forecast]:
    """The first dial time of every contact, by ``key`` (a pure function of its arguments)."""
    results: dict[str, Forecast] = {}
    queue: list[tuple[datetime, int, Demand]] = []
    for order, demand in enumerate(demands):
        start = max(now, demand.not_before) if demand.not_before is not None else now
        if demand.deadline is not None and start >= demand.deadline:
            results[demand.key] = Forecast(first_call=None, reason="deadline")
            continue
        opens = (demand.window or window).next_allowed_everywhere(
            start, demand.zones, deadline=demand.deadline
        )
        if opens is None:
            results[demand.key] = Forecast(first_call=None, reason="no window before deadline")
            continue
        queue.append((opens, order, demand))
    heapq.heapify(queue)
    spacing = dial_spacing(capacity)
    ends: list[datetime] = []  # end times of the calls already placed, sorted
    next_slot = now
    while queue:
        allowed, order, demand = heapq.heappop(queue)
        # Every later dial starts at or after next_slot: calls ended by then no longer count.
        del ends[: bisect.bisect_right(ends, next_slot)]
        at = max(allowed, next_slot)
        if len(ends) >= capacity.max_concurrent:
            # fewer than max_concurrent calls outlast ``at`` once the max_concurrent-th last ends
            at = max(at, ends[-capacity.max_concurrent])
        own = demand.window or window
        if at > allowed and not own.allows_everywhere(at, demand.zones):
            # Pushed out of its window by the others: back in line at its next opening, as the
            # dispatcher's deferral would put it.
            opens = own.next_allowed_everywhere(at, demand.zones, deadline=demand.deadline)
            if opens is None:
                results[demand.key] = Forecast(first_call=None, reason="no window before deadline")
            else:
                heapq.heappush(queue, (opens, order, demand))
            continue
        if demand.deadline is not None and at >= demand.deadline:
            results[demand.key] = Forecast(first_call=None, reason="deadline")
            continue
        results[demand.key] = Forecast(first_call=at)
        bisect.insort(ends, at + capacity.call_duration)
        next_slot = at + spacing
    return results
