"""A campaign's pace: a table, then properties over every pace and every sequence of asks.

The bound proved: for any pace p in (0, 600] and any instants asked at (in order, each ask
either arbitrary or a daemon coming back when told), the granted instants are at least
60/p s apart, and any half-open window [t, t + W) holds at most ceil(W / interval) of them;
for W = 60 s that is at most ceil(p): p for a whole pace, 1 for any pace up to 1.
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.policy.pacing import PACE_WINDOW, Pace, take_slot

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
S = timedelta(seconds=1)
US = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("per_minute", "interval"),
    [
        (12, 5 * S),
        (6, 10 * S),
        (60, S),
        (0.5, 120 * S),
        (0.25, 240 * S),
        (2.5, 24 * S),
        # 60/11 s is 5.454545…: rounded down to the microsecond, eleven intervals would be
        # 59.999995 s and a 60 s window could hold twelve creates
        (11, 5454546 * US),
        (7, 8571429 * US),
    ],
)
def test_the_interval_is_sixty_seconds_over_the_pace_rounded_up(
    per_minute: float, interval: timedelta
) -> None:
    assert Pace(per_minute).interval == interval


@pytest.mark.parametrize("per_minute", [0, -1, -0.5, math.inf, math.nan])
def test_a_pace_must_be_finite_and_above_zero(per_minute: float) -> None:
    with pytest.raises(ValueError, match="pace"):
        Pace(per_minute)


def test_a_slot_is_granted_at_or_after_the_theoretical_arrival_time_only() -> None:
    pace = Pace(12)
    first = take_slot(None, now=T0, pace=pace)
    assert first.granted and first.tat == T0 + 5 * S
    early = take_slot(first.tat, now=T0 + 4 * S, pace=pace)
    assert not early.granted and early.wait == S and early.tat == first.tat
    on_time = take_slot(first.tat, now=T0 + 5 * S, pace=pace)
    assert on_time.granted and on_time.tat == T0 + 10 * S


def test_an_idle_spell_earns_no_burst() -> None:
    pace = Pace(12)
    after_an_hour = take_slot(T0, now=T0 + timedelta(hours=1), pace=pace)
    assert after_an_hour.granted
    second = take_slot(after_an_hour.tat, now=T0 + timedelta(hours=1), pace=pace)
    assert not second.granted and second.wait == 5 * S


@pytest.mark.parametrize("per_minute", range(1, 601))
def test_a_whole_pace_fits_exactly_that_many_in_a_minute(per_minute: int) -> None:
    assert Pace(per_minute).most_in(PACE_WINDOW) == per_minute


@pytest.mark.parametrize(
    ("per_minute", "window", "most"),
    [(0.5, 60 * S, 1), (0.5, 120 * S, 1), (0.5, 121 * S, 2), (2.5, 60 * S, 3), (2.5, 120 * S, 5)],
)
def test_fractional_paces(per_minute: float, window: timedelta, most: int) -> None:
    assert Pace(per_minute).most_in(window) == most


def _grants(pace: Pace, asks: list[tuple[int, bool]]) -> list[datetime]:
    """Run the asks through take_slot: each is (microseconds after the previous ask, whether
    instead the asker comes back exactly when the last refusal told it to)."""
    tat: datetime | None = None
    now = T0
    told: timedelta | None = None
    granted: list[datetime] = []
    for gap_us, come_back in asks:
        now += told if come_back and told is not None else timedelta(microseconds=gap_us)
        slot = take_slot(tat, now=now, pace=pace)
        if slot.granted:
            granted.append(now)
            tat = slot.tat
            told = None
        else:
            assert tat is not None and now < tat and slot.wait == tat - now
            told = slot.wait
    return granted


PACES = st.one_of(
    st.floats(min_value=1e-3, max_value=600, allow_nan=False, exclude_min=False),
    st.integers(min_value=1, max_value=600).map(float),
    st.fractions(min_value="1/8", max_value=20, max_denominator=8).map(float),
)
ASKS = st.lists(
    st.tuples(st.integers(min_value=0, max_value=30_000_000), st.booleans()),
    min_size=1,
    max_size=300,
)


def _most_in_any_window(granted: list[datetime], window: timedelta) -> int:
    # a half-open window holding the most grants can be slid right until it starts at one
    most = 0
    for i, start in enumerate(granted):
        most = max(most, sum(1 for g in granted[i:] if g < start + window))
    return most


@given(pace_per_minute=PACES, asks=ASKS)
def test_grants_are_spaced_and_no_minute_holds_more_than_the_pace(
    pace_per_minute: float, asks: list[tuple[int, bool]]
) -> None:
    pace = Pace(pace_per_minute)
    granted = _grants(pace, asks)
    assert granted, "the first ask is always granted"
    for earlier, later in itertools.pairwise(granted):
        assert (later - earlier) / US >= 60_000_000 / pace_per_minute
    most = _most_in_any_window(granted, PACE_WINDOW)
    assert most <= pace.most_in(PACE_WINDOW) <= math.ceil(pace_per_minute)
    if pace_per_minute == int(pace_per_minute):
        assert most <= pace_per_minute


@given(
    pace_per_minute=PACES,
    asks=ASKS,
    window_us=st.integers(min_value=1, max_value=600_000_000),
)
def test_any_window_holds_at_most_its_share(
    pace_per_minute: float, asks: list[tuple[int, bool]], window_us: int
) -> None:
    pace = Pace(pace_per_minute)
    window = timedelta(microseconds=window_us)
    assert _most_in_any_window(_grants(pace, asks), window) <= pace.most_in(window)


@given(pace_per_minute=st.integers(min_value=1, max_value=120).map(float))
def test_askers_that_come_back_when_told_get_the_whole_pace(pace_per_minute: float) -> None:
    """The bound is tight: always asking again when told fills every minute to the pace."""
    pace = Pace(pace_per_minute)
    asks = [(0, False)] + [(1, True)] * (4 * int(pace_per_minute))
    granted = _grants(pace, asks)
    assert _most_in_any_window(granted, PACE_WINDOW) == pace_per_minute
