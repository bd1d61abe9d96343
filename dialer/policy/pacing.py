"""A campaign's pace: ``calls_per_minute`` as evenly spaced create slots. Pure maths, no I/O.

    >>> from datetime import UTC
    >>> pace = Pace(12)
    >>> pace.interval
    datetime.timedelta(seconds=5)
    >>> t0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
    >>> first = take_slot(None, now=t0, pace=pace)
    >>> first.granted, first.tat.time()
    (True, datetime.time(9, 0, 5))
    >>> take_slot(t0 + timedelta(seconds=5), now=t0 + timedelta(seconds=2), pace=pace).wait
    datetime.timedelta(seconds=3)
    >>> Pace(0.5).interval, Pace(0.5).most_in(timedelta(seconds=60))
    (datetime.timedelta(seconds=120), 1)

It is GCRA (the generic cell rate algorithm, as the request budget's row in
dialer.store.budget) with a burst of one: the whole state is the theoretical arrival time
``tat``, the earliest instant the next create may start. A create asked for at ``now >= tat``
is granted and moves ``tat`` to ``now + interval``; one asked for earlier is told to wait
``tat - now``. An idle spell earns no credit, so nothing is ever sent back to back.

What is guaranteed of the granted instants, whatever the instants asked for (and proved by
hypothesis in tests/policy/test_pacing.py):

- consecutive grants are at least ``interval >= 60 s / pace`` apart (the interval is 60/pace
  rounded UP to the microsecond a datetime holds: rounded down, eleven slots of a pace of 11
  would fit in 59.999995 s, and a 60 s window could hold twelve);
- so any half-open window ``[t, t + W)`` holds at most ``ceil(W / interval)`` grants, and a
  60 s window at most ``ceil(pace)``: exactly ``pace`` for a whole pace (12 → 12), one for
  any pace up to 1 (0.5 → one create in any 120 s), and for a fractional pace above one the
  next whole number (2.5 → 3 in some 60 s windows, 5 in every 120 s): an average of 2.5 a
  minute cannot keep every minute at two.

Several daemons share one ``tat`` per campaign (a row of the store), read and written under
its row lock, so the bound holds for all of them together. It is a bound on the instants the
slots were granted at: a create that then waits (the request budget, a 429 pause) starts later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["PACE_WINDOW", "Pace", "Slot", "pace_key", "take_slot"]

#: calls_per_minute counts creates in this window
PACE_WINDOW = timedelta(seconds=60)

_MICROSECONDS_PER_WINDOW = 60_000_000


@dataclass(frozen=True)
class Pace:
    """At most ``per_minute`` creates in any 60 s window, one every ``60 / per_minute`` s.

    ``per_minute`` must be a finite number above zero; fractions are paces slower than one a
    minute (0.5: one create every two minutes)."""

    per_minute: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.per_minute) and self.per_minute > 0):
            raise ValueError(f"a pace must be a finite number > 0, not {self.per_minute}")

    @property
    def interval(self) -> timedelta:
        """The spacing of slots: 60 s / pace, rounded up to the microsecond (never shorter)."""
        return timedelta(microseconds=math.ceil(_MICROSECONDS_PER_WINDOW / self.per_minute))

    def most_in(self, window: timedelta) -> int:
        """The most slots any half-open window of this length can hold."""
        if window <= timedelta(0):
            return 0
        return math.ceil(window / self.interval)


@dataclass(frozen=True)
class Slot:
    """The answer to one ask: granted or not, and the theoretical arrival time after it."""

    granted: bool
    #: the earliest instant the next slot may be granted (after this grant, if granted)
    tat: datetime
    #: refused: how long from the ask until a slot may be granted; granted: zero
    wait: timedelta = timedelta(0)


def take_slot(tat: datetime | None, *, now: datetime, pace: Pace) -> Slot:
    """One create asked for at ``now`` against the theoretical arrival time ``tat`` (None: no
    create was ever granted). Granted when ``tat <= now``; the caller stores the answer's
    ``tat`` when granted (a refusal changes nothing)."""
    if tat is None or tat <= now:
        return Slot(granted=True, tat=now + pace.interval)
    return Slot(granted=False, tat=tat, wait=tat - now)


def pace_key(campaign: str) -> str:
    """The name of a campaign's pace row in the store's budget table. A campaign name has no
    ``:`` (dialer.campaign.loader), so no campaign's row is another's."""
    return f"pace:{campaign}"
