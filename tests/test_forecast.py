"""The `dialer plan` forecast: tables of datetimes, then properties over random campaigns."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.forecast import Capacity, Demand, Forecast, dial_spacing, forecast
from dialer.policy.windows import CallingWindow, TimeRange

AMS = ZoneInfo("Europe/Amsterdam")
TOKYO = ZoneInfo("Asia/Tokyo")
MON_0700Z = datetime(2027, 3, 1, 7, 0, tzinfo=UTC)  # Monday 08:00 in Amsterdam, 16:00 in Tokyo


def window(start: int = 9, end: int = 17, *, close: timedelta = timedelta(0)) -> CallingWindow:
    return CallingWindow(
        days=frozenset(range(5)),
        ranges=(TimeRange(start=time(start), end=time(end)),),
        min_time_before_close=close,
    )


def demand(
    key: str,
    zone: ZoneInfo = AMS,
    *,
    not_before: datetime | None = None,
    deadline: datetime | None = None,
) -> Demand:
    return Demand(key=key, not_before=not_before, deadline=deadline, zone=zone)


WIDE = Capacity(max_concurrent=100, requests_per_minute=100_000)


@pytest.mark.parametrize(
    ("demand_", "expected"),
    [
        # closed at 08:00 local: the window opens at 09:00 Amsterdam
        (demand("a"), datetime(2027, 3, 1, 8, 0, tzinfo=UTC)),
        # not_before inside the window is kept to the minute
        (
            demand("a", not_before=datetime(2027, 3, 1, 10, 17, tzinfo=UTC)),
            datetime(2027, 3, 1, 10, 17, tzinfo=UTC),
        ),
        # already open in Tokyo (16:00 JST)
        (demand("a", TOKYO), MON_0700Z),
        # 17:30 JST is past the close: Tuesday 09:00 JST
        (
            demand("a", TOKYO, not_before=datetime(2027, 3, 1, 8, 30, tzinfo=UTC)),
            datetime(2027, 3, 2, 0, 0, tzinfo=UTC),
        ),
        # not_before on Saturday: Monday's opening
        (
            demand("a", not_before=datetime(2027, 3, 6, 10, 0, tzinfo=UTC)),
            datetime(2027, 3, 8, 8, 0, tzinfo=UTC),
        ),
    ],
)
def test_first_call_is_the_first_allowed_instant(demand_: Demand, expected: datetime) -> None:
    result = forecast([demand_], window=window(), capacity=WIDE, now=MON_0700Z)
    assert result == {"a": Forecast(first_call=expected)}


@pytest.mark.parametrize(
    ("demand_", "reason"),
    [
        (demand("a", deadline=datetime(2027, 3, 1, 6, 0, tzinfo=UTC)), "deadline"),
        # the deadline falls before the window opens
        (
            demand("a", deadline=datetime(2027, 3, 1, 7, 59, tzinfo=UTC)),
            "no window before deadline",
        ),
    ],
)
def test_contacts_that_cannot_be_called_say_why(demand_: Demand, reason: str) -> None:
    result = forecast([demand_], window=window(), capacity=WIDE, now=MON_0700Z)
    assert result == {"a": Forecast(first_call=None, reason=reason)}


@pytest.mark.parametrize(
    ("capacity", "spacing"),
    [
        (Capacity(max_concurrent=5, requests_per_minute=100, requests_per_call=4), 2.4),
        (Capacity(max_concurrent=5, calls_per_minute=2, requests_per_minute=100), 30.0),
        (Capacity(max_concurrent=5, calls_per_minute=60, requests_per_minute=60), 4.0),
    ],
)
def test_spacing_is_the_stricter_of_the_two_rates(capacity: Capacity, spacing: float) -> None:
    assert dial_spacing(capacity).total_seconds() == pytest.approx(spacing)
    opens = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)
    result = forecast(
        [demand(str(i)) for i in range(3)], window=window(), capacity=capacity, now=MON_0700Z
    )
    assert [result[str(i)].first_call for i in range(3)] == [
        opens + i * timedelta(seconds=spacing) for i in range(3)
    ]


def test_concurrency_waits_for_a_call_to_end() -> None:
    capacity = Capacity(
        max_concurrent=2, requests_per_minute=100_000, call_duration=timedelta(minutes=2)
    )
    result = forecast(
        [demand(str(i)) for i in range(5)], window=window(), capacity=capacity, now=MON_0700Z
    )
    opens = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)
    starts = [result[str(i)].first_call for i in range(5)]
    first_two = opens + dial_spacing(capacity)
    assert starts[0] == opens and starts[1] == first_two
    assert starts[2] == opens + timedelta(minutes=2)
    assert starts[3] == first_two + timedelta(minutes=2)
    assert starts[4] == opens + timedelta(minutes=4)


def test_a_contact_pushed_past_the_close_waits_for_the_next_opening() -> None:
    # One line, 20-minute calls, a window 09:00-10:00 with no call in its last 10 minutes.
    capacity = Capacity(
        max_concurrent=1, requests_per_minute=100_000, call_duration=timedelta(minutes=20)
    )
    result = forecast(
        [demand(str(i)) for i in range(4)],
        window=window(9, 10, close=timedelta(minutes=10)),
        capacity=capacity,
        now=MON_0700Z,
    )
    assert [result[str(i)].first_call for i in range(4)] == [
        datetime(2027, 3, 1, 8, 0, tzinfo=UTC),
        datetime(2027, 3, 1, 8, 20, tzinfo=UTC),
        datetime(2027, 3, 1, 8, 40, tzinfo=UTC),
        datetime(2027, 3, 2, 8, 0, tzinfo=UTC),  # 09:00 Tuesday
    ]


def test_a_deadline_reached_while_waiting_in_line_drops_the_contact() -> None:
    capacity = Capacity(
        max_concurrent=1, requests_per_minute=100_000, call_duration=timedelta(minutes=30)
    )
    deadline = datetime(2027, 3, 1, 8, 15, tzinfo=UTC)
    result = forecast(
        [demand("first"), demand("late", deadline=deadline)],
        window=window(),
        capacity=capacity,
        now=MON_0700Z,
    )
    assert result["late"].first_call is None and result["first"].first_call is not None


def test_each_contact_is_forecast_in_its_own_window() -> None:
    # Thursday 2027-05-27 is Corpus Christi in Bavaria: a Bavarian waits for Friday 09:00, in
    # line and out of it, while the others are called that morning.
    campaign = CallingWindow(
        days=frozenset(range(5)),
        ranges=(TimeRange(start=time(9), end=time(10)),),
        min_time_before_close=timedelta(minutes=10),
        contact_holidays=True,
    )
    berlin = ZoneInfo("Europe/Berlin")
    thursday = datetime(2027, 5, 27, 6, 0, tzinfo=UTC)  # 08:00 in Berlin
    capacity = Capacity(
        max_concurrent=1, requests_per_minute=100_000, call_duration=timedelta(minutes=20)
    )
    demands = [
        Demand(key="ber", not_before=None, deadline=None, zone=berlin, window=campaign),
        Demand(
            key="bav",
            not_before=None,
            deadline=None,
            zone=berlin,
            window=campaign.for_contact("DE-BY"),
        ),
        Demand(key="ams", not_before=None, deadline=None, zone=AMS),  # the forecast's window
    ]
    result = forecast(demands, window=campaign, capacity=capacity, now=thursday)
    assert result["ber"].first_call == datetime(2027, 5, 27, 7, 0, tzinfo=UTC)
    assert result["ams"].first_call == datetime(2027, 5, 27, 7, 20, tzinfo=UTC)
    assert result["bav"].first_call == datetime(2027, 5, 28, 7, 0, tzinfo=UTC)


def test_capacity_is_checked() -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        Capacity(max_concurrent=0)
    with pytest.raises(ValueError, match="calls_per_minute"):
        Capacity(max_concurrent=1, calls_per_minute=0)


@given(
    offsets=st.lists(st.integers(min_value=0, max_value=3 * 24 * 60), min_size=1, max_size=25),
    zones=st.lists(st.sampled_from([AMS, TOKYO, ZoneInfo("America/New_York")]), min_size=25),
    max_concurrent=st.integers(min_value=1, max_value=4),
    cpm=st.none() | st.floats(min_value=0.5, max_value=30),
    minutes=st.integers(min_value=1, max_value=45),
)
def test_every_forecast_respects_window_rates_and_concurrency(
    offsets: list[int],
    zones: list[ZoneInfo],
    max_concurrent: int,
    cpm: float | None,
    minutes: int,
) -> None:
    capacity = Capacity(
        max_concurrent=max_concurrent,
        calls_per_minute=cpm,
        requests_per_minute=100,
        call_duration=timedelta(minutes=minutes),
    )
    demands = [
        demand(str(i), zones[i], not_before=MON_0700Z + timedelta(minutes=offset))
        for i, offset in enumerate(offsets)
    ]
    w = window(close=timedelta(minutes=5))
    result = forecast(demands, window=w, capacity=capacity, now=MON_0700Z)
    assert set(result) == {d.key for d in demands}
    starts = sorted(r.first_call for r in result.values() if r.first_call is not None)
    assert len(starts) == len(demands)  # no deadlines: everyone is called eventually
    for d in demands:
        at = result[d.key].first_call
        assert at is not None and w.allows(at, d.zone) and at >= (d.not_before or MON_0700Z)
    spacing = dial_spacing(capacity)
    assert all(b - a >= spacing - timedelta(microseconds=1) for a, b in pairwise(starts))
    for at in starts:
        running = sum(1 for s in starts if s <= at < s + capacity.call_duration)
        assert running <= max_concurrent
