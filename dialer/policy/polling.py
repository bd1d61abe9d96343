"""When to look at a call again: pure maths, no I/O.

Every poll costs one request of the same budget that places calls, so a poll should land when
the answer is likely to have changed: soon while the phone rings (a ring ends within seconds
to tens of seconds), then spaced by the expected length of a conversation, and tighter again
once the call is older than expected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "KeyLoad",
    "PollPlan",
    "creates_per_minute",
    "list_interval",
    "list_spare",
    "next_poll_at",
    "useful_interval",
]


@dataclass(frozen=True, kw_only=True)
class PollPlan:
    """How the follow loop spaces its looks at one call.

    ``first_look``: after the create, before the first GET (ringing rarely ends sooner).
    ``ringing``: between looks while ``connecting``.
    ``expected_talk``: typical conversation length; the first in-progress look waits about this.
    ``minimum`` / ``maximum``: bounds on any interval.
    ``late``: interval for calls already declared ``unknown`` (a late result is still recorded).
    ``list_threshold``: from this many calls in flight on, one list request observes them all...
    ``list_interval``: ...this often (each list page costs one request, whatever it holds), or
    more often when the key's budget has room (see :func:`list_interval`), but never more
    often than ``list_interval_min``; ``list_share`` is the part of the key's spare requests
    lists may take (the rest absorbs a burst of ends and other traffic), and
    ``lists_per_end`` caps how many lists an expected end may cost (see :func:`useful_interval`).
    """

    first_look: timedelta = timedelta(seconds=8)
    ringing: timedelta = timedelta(seconds=5)
    expected_talk: timedelta = timedelta(seconds=90)
    minimum: timedelta = timedelta(seconds=2)
    maximum: timedelta = timedelta(seconds=60)
    late: timedelta = timedelta(minutes=10)
    list_threshold: int = 3
    list_interval: timedelta = timedelta(seconds=20)
    list_interval_min: timedelta = timedelta(seconds=2)
    list_share: float = 0.5
    lists_per_end: float = 1.0

    def scaled(self, factor: float) -> PollPlan:
        """The same plan on a faster clock (the time-scaled simulator)."""
        # Any: the dataclass plugin checks ** against every field's type, ints included.
        changes: dict[str, Any] = {
            name: value / factor
            for name, value in self.__dict__.items()
            if isinstance(value, timedelta)
        }
        return replace(self, **changes)


def next_poll_at(
    plan: PollPlan,
    *,
    status: str | None,
    now: datetime,
    dialed_at: datetime,
    answered_at: datetime | None = None,
) -> datetime:
    """The instant of the next look at a call last seen with ``status`` (None: never seen)."""
    if status is None:
        delay = plan.first_look
    elif status == "in-progress":
        talking = now - (answered_at or dialed_at)
        remaining = plan.expected_talk - talking
        if remaining > plan.minimum * 2:
            delay = remaining * 0.8  # before the expected end: wait most of what remains
        else:
            # Past it, call lengths are long-tailed: the longer a call has overrun, the less
            # likely it ends in the next few seconds, so the looks slow with the overrun.
            overrun = max(talking - plan.expected_talk, timedelta(0))
            delay = max(plan.expected_talk / 6, overrun / 2)
    else:
        delay = plan.ringing
    delay = max(plan.minimum, min(plan.maximum, delay))
    return now + delay


@dataclass(frozen=True, kw_only=True)
class KeyLoad:
    """What one API key's list interval is chosen from, as the follower sees it now.

    ``rate_per_minute``: the key's budget after its margin (``requests_per_minute`` minus
    ``budget_margin``). ``in_flight``: calls of the key being followed. ``creates_waiting``:
    creates queued for the key's budget now (it binds). ``line_wanted``: every line is taken
    and contacts wait for one, so an end seen sooner is a dial sooner. ``pages``: requests the
    key's last list took. ``daemons``: how many daemons share the key (each lists every call
    in flight, so each takes its share of the spare).
    """

    rate_per_minute: int
    in_flight: int
    creates_waiting: int = 0
    line_wanted: bool = False
    pages: int = 1
    daemons: int = 1


def creates_per_minute(plan: PollPlan, load: KeyLoad) -> float:
    """Creates the key needs over the next minute: those queued now, and, while a freed line
    is dialled at once, one per call expected to end (a call lasts about ``first_look`` of
    ringing plus ``expected_talk``)."""
    ends = 0.0
    if load.line_wanted:
        call_s = (plan.first_look + plan.expected_talk).total_seconds()
        ends = load.in_flight * 60.0 / max(call_s, 1e-9)
    return load.creates_waiting + ends


def list_spare(plan: PollPlan, load: KeyLoad) -> float:
    """Requests a minute this daemon's lists may take without taking a create's slot: its
    share (of ``daemons``) of ``list_share`` of what the creates leave of the rate (0 when
    they need it all)."""
    left = load.rate_per_minute - creates_per_minute(plan, load)
    return max(0.0, plan.list_share * left / max(load.daemons, 1))


def useful_interval(plan: PollPlan, load: KeyLoad) -> timedelta:
    """The shortest interval at which another list still pays for itself, whatever the spare.

    While contacts wait for a line, a list pays for itself when it finds an end: n calls of
    about L (``first_look`` + ``expected_talk``) end one every L / n, so lists closer than
    L / (``lists_per_end`` x n) mostly find nothing (a line then waits about L / 2n to be seen
    free, 1 % of a call at 50 lines, 10 % at 5).

    When nobody waits for a line (the tail of a run), seeing an end sooner frees nothing: only
    the run's last end, when it is seen, decides when the run is over. With n calls left the
    last is likely far off, so the interval is ``list_interval_min`` x n: every
    ``list_interval_min`` once a single call is left, the slowest look while ten or more are.

    Both are for the key's lists from all its ``daemons`` together (each lists every call).
    """
    calls = max(load.in_flight, 1)
    # each of the daemons sharing the key lists every call of it: together they look D times
    # as often as one does, so each takes 1 / D of the lists an end is worth
    daemons = max(load.daemons, 1)
    if load.line_wanted:
        call_s = (plan.first_look + plan.expected_talk).total_seconds()
        return _rounded_up(call_s * daemons / (max(plan.lists_per_end, 1e-9) * calls))
    return plan.list_interval_min * calls * daemons


def _rounded_up(seconds: float) -> timedelta:
    """``seconds`` to the microsecond above: an interval rounded down would list a hair more
    often than it may."""
    return timedelta(microseconds=math.ceil(seconds * 1e6))


def list_interval(plan: PollPlan, load: KeyLoad) -> timedelta:
    """How long the key's next list waits: ``list_interval`` when the spare affords no more
    (the creates queued and due take the budget), else as often as the spare pays for
    (``pages`` requests a list), but at most every ``list_interval_min``.

    Interval I, spare S requests a minute, P pages, U the :func:`useful_interval`:
    I = max(list_interval_min, 60 s x P / S, U), at most ``list_interval``. Lists then take
    P x 60 s / I <= S requests a minute, unless I is ``list_interval`` itself (the slowest look
    there is, taken whatever the spare). A create queued for a moment (the budget spaces its
    slots) is demand, not a sign that it binds.
    """
    slowest = plan.list_interval
    fastest = min(plan.list_interval_min, slowest)
    spare = list_spare(plan, load)
    if spare <= 0:
        return slowest
    paid = _rounded_up(60.0 * max(load.pages, 1) / spare)
    return min(slowest, max(fastest, paid, useful_interval(plan, load)))
