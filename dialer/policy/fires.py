"""Missed fires: which scheduled fire of a campaign no daemon was running for, and whether it is
still worth catching up.

APScheduler keeps its jobs in memory: a daemon that starts after a fire only sees the next one.
A daily reminder's 09:00 fire missed while the machine rebooted would be dropped without a word
(and with it the day's new appointments, in a campaign that calls everyone at every fire). At
start the daemon catches up the latest fire it missed, once, when it is no older than the
campaign's ``misfire_grace``; older, it only says so. Earlier missed fires are counted: they
coalesce into the one caught up, as APScheduler's own ``coalesce`` would.

    >>> missed_fire(fires_after, since=last_run, now=now, grace=timedelta(hours=1))
    MissedFire(fire_time=..., earlier=0, catch_up=True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["MissedFire", "missed_fire"]

#: fires looked at between the last run and now, at most (a minutely cron missed for a year
#: is 525,600 fires: the latest of them is what matters, and counting stops here)
MAX_FIRES = 100_000


@dataclass(frozen=True, kw_only=True)
class MissedFire:
    """The latest fire in (since, now] that has no run, and what to do with it."""

    fire_time: datetime
    #: missed fires before it (they coalesce into it; at most MAX_FIRES counted)
    earlier: int
    #: within the grace: caught up now; beyond it: only said
    catch_up: bool

    def late_by(self, now: datetime) -> timedelta:
        return now - self.fire_time


def missed_fire(
    fires_after: Callable[[datetime], datetime | None],
    *,
    since: datetime,
    now: datetime,
    grace: timedelta,
) -> MissedFire | None:
    """The latest fire after ``since`` and at or before ``now``, if any.

    ``fires_after(t)``: the schedule's first fire strictly after ``t`` (None: no more).
    ``since``: the campaign's last run's fire time, or when it was first imported.
    """
    latest: datetime | None = None
    count = 0
    fire = fires_after(since)
    while fire is not None and fire <= now and count < MAX_FIRES:
        latest, count = fire, count + 1
        fire = fires_after(fire)
    if latest is None:
        return None
    if fire is not None and fire <= now:
        # counting stopped early: the latest fire is the last one at or before now
        latest = _last_at_or_before(fires_after, latest, now)
    return MissedFire(fire_time=latest, earlier=count - 1, catch_up=now - latest <= grace)


def _last_at_or_before(
    fires_after: Callable[[datetime], datetime | None], start: datetime, now: datetime
) -> datetime:
    """The last fire at or before ``now``, searched from ``start`` by doubling jumps back."""
    step = timedelta(minutes=1)
    while True:
        probe = max(start, now - step)
        fire = fires_after(probe)
        if fire is not None and fire <= now:
            last = fire
            while (after := fires_after(last)) is not None and after <= now:
                last = after
            return last
        if probe == start:
            return start
        step *= 2
