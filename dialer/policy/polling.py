"""When to look at a call again: pure maths, no I/O.

Every poll costs one request of the same budget that places calls, so a poll should land when
the answer is likely to have changed: soon while the phone rings (a ring ends within seconds
to tens of seconds), then spaced by the expected length of a conversation, and tighter again
once the call is older than expected.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

__all__ = ["PollPlan", "next_poll_at"]


@dataclass(frozen=True, kw_only=True)
class PollPlan:
    """How the follow loop spaces its looks at one call.

    ``first_look``: after the create, before the first GET (ringing rarely ends sooner).
    ``ringing``: between looks while ``connecting``.
    ``expected_talk``: typical conversation length; the first in-progress look waits about this.
    ``minimum`` / ``maximum``: bounds on any interval.
    ``late``: interval for calls already declared ``unknown`` (a late result is still recorded).
    ``list_threshold``: from this many calls in flight on, one list request observes them all...
    ``list_interval``: ...this often (each list page costs one request, whatever it holds).
    """

    first_look: timedelta = timedelta(seconds=8)
    ringing: timedelta = timedelta(seconds=5)
    expected_talk: timedelta = timedelta(seconds=90)
    minimum: timedelta = timedelta(seconds=2)
    maximum: timedelta = timedelta(seconds=60)
    late: timedelta = timedelta(minutes=10)
    list_threshold: int = 3
    list_interval: timedelta = timedelta(seconds=20)

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
