"""Frequency caps: a table, and a brute-force oracle over the instants where counts change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.policy.caps import FrequencyCap, cap_next_allowed

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
WEEK = FrequencyCap(count=2, period=timedelta(days=7))


@pytest.mark.parametrize(
    ("calls", "allowed"),
    [
        ([], T0),
        ([T0 - DAY], T0),  # one call in the week: one more fits
        ([T0 - 6 * DAY, T0 - DAY], T0 + DAY),  # the 6-day-old call leaves in one day
        ([T0 - DAY, T0 - 6 * DAY], T0 + DAY),  # order does not matter
        ([T0 - 7 * DAY, T0 - DAY], T0),  # exactly a period old: no longer counted
        ([T0 - 8 * DAY] * 5, T0),
        ([T0 - 3 * DAY, T0 - 2 * DAY, T0 - DAY], T0 + 5 * DAY),  # over the cap already
        ([T0 + timedelta(minutes=1), T0 - DAY], T0 + 6 * DAY),  # a clock ahead still counts
    ],
)
def test_frequency_cap(calls: list[datetime], allowed: datetime) -> None:
    assert cap_next_allowed(WEEK, calls, T0) == allowed


def test_caps_are_checked_when_built() -> None:
    for count, period in ((0, DAY), (1, timedelta(0)), (1, -DAY)):
        with pytest.raises(ValueError, match="frequency cap"):
            FrequencyCap(count=count, period=period)


def _counted(cap: FrequencyCap, calls: list[datetime], at: datetime) -> int:
    return sum(1 for t in calls if t > at - cap.period)


@given(
    offsets=st.lists(st.integers(-30 * 24, 2), max_size=12),
    count=st.integers(1, 5),
    period_hours=st.integers(1, 14 * 24),
)
def test_the_answer_is_the_earliest_instant_with_room(
    offsets: list[int], count: int, period_hours: int
) -> None:
    """Oracle: counts only change when a call leaves the period, so the earliest instant with
    room is ``now`` or one of those departures."""
    cap = FrequencyCap(count=count, period=timedelta(hours=period_hours))
    calls = [T0 + timedelta(hours=h) for h in offsets]
    candidates = sorted({T0} | {t + cap.period for t in calls if t + cap.period > T0})
    expected = next(t for t in candidates if _counted(cap, calls, t) < count)
    allowed = cap_next_allowed(cap, calls, T0)
    assert allowed == expected
    assert allowed >= T0 and _counted(cap, calls, allowed) < count
