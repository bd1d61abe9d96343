"""Missed fires: the latest fire no daemon ran for, found by walking the schedule, and whether
it is still within the grace."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from hypothesis import given
from hypothesis import strategies as st

from dialer.policy.fires import MAX_FIRES, MissedFire, missed_fire

AMS = ZoneInfo("Europe/Amsterdam")
HOUR = timedelta(hours=1)


def cron(spec: str, zone: ZoneInfo = AMS) -> Callable[[datetime], datetime | None]:
    trigger = CronTrigger.from_crontab(spec, timezone=zone)

    def after(instant: datetime) -> datetime | None:
        fire: datetime | None = trigger.get_next_fire_time(instant, instant)
        return fire

    return after


DAILY_9 = cron("0 9 * * *")
# Tuesday 2 March 2027; 09:00 in Amsterdam is 08:00 UTC
MON_9 = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)
TUE_9 = datetime(2027, 3, 2, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (TUE_9 - timedelta(minutes=1), None),  # nothing missed yet
        (TUE_9, MissedFire(fire_time=TUE_9, earlier=0, catch_up=True)),  # on the dot
        (TUE_9 + timedelta(minutes=40), MissedFire(fire_time=TUE_9, earlier=0, catch_up=True)),
        (TUE_9 + HOUR, MissedFire(fire_time=TUE_9, earlier=0, catch_up=True)),
        (TUE_9 + 2 * HOUR, MissedFire(fire_time=TUE_9, earlier=0, catch_up=False)),
        # three days down: the latest is caught up if recent, the earlier ones coalesce
        (
            TUE_9 + timedelta(days=2, minutes=5),
            MissedFire(fire_time=TUE_9 + timedelta(days=2), earlier=2, catch_up=True),
        ),
    ],
)
def test_the_latest_missed_fire_and_its_grace(now: datetime, expected: MissedFire | None) -> None:
    assert missed_fire(DAILY_9, since=MON_9, now=now, grace=HOUR) == expected


def test_a_fire_that_has_its_run_is_not_missed() -> None:
    assert missed_fire(DAILY_9, since=TUE_9, now=TUE_9 + timedelta(minutes=30), grace=HOUR) is None


def test_a_minutely_schedule_missed_for_a_year_still_finds_its_latest_fire() -> None:
    now = MON_9 + timedelta(days=365, seconds=30)
    missed = missed_fire(cron("* * * * *"), since=MON_9, now=now, grace=HOUR)
    assert missed is not None
    assert missed.fire_time == now - timedelta(seconds=30)
    assert missed.earlier == MAX_FIRES - 1 and missed.catch_up


@given(
    st.integers(0, 30 * 24 * 60),
    st.sampled_from(["0 9 * * *", "30 8 * * mon-fri", "*/15 * * * *", "0 9 1 * *"]),
    st.sampled_from(["Europe/Amsterdam", "America/New_York", "Australia/Sydney"]),
)
def test_the_missed_fire_is_the_last_one_at_or_before_now(
    minutes: int, spec: str, zone: str
) -> None:
    """Across DST changes: the fire found is a fire of the schedule, at or before now, and the
    schedule's next fire after it is after now."""
    fires_after = cron(spec, ZoneInfo(zone))
    since = datetime(2027, 3, 10, tzinfo=UTC)
    now = since + timedelta(minutes=minutes)
    missed = missed_fire(fires_after, since=since, now=now, grace=HOUR)
    first = fires_after(since)
    if first is None or first > now:
        assert missed is None
        return
    assert missed is not None
    assert since < missed.fire_time <= now
    nxt = fires_after(missed.fire_time)
    assert nxt is None or nxt > now
    assert missed.catch_up == (now - missed.fire_time <= HOUR)
