"""Calling windows: tables for the semantics, hypothesis across every zone and DST transition."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.policy.windows import CallingWindow, TimeRange, parse_days, parse_range

AMS = ZoneInfo("Europe/Amsterdam")
NY = ZoneInfo("America/New_York")
ALL_ZONES = sorted(z for z in available_timezones() if not z.startswith(("SystemV/", "posixrules")))
EVERY_DAY = frozenset(range(7))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def window(
    *ranges: str, days: frozenset[int] = EVERY_DAY, close: int = 0, **kw: object
) -> CallingWindow:
    return CallingWindow(
        days=days,
        ranges=tuple(parse_range(r) for r in ranges),
        min_time_before_close=timedelta(minutes=close),
        **kw,
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2026, 11, 25, 7, 59), utc(2026, 11, 25, 8, 0)),  # 08:59 Amsterdam -> 09:00
        (utc(2026, 11, 25, 8, 0), utc(2026, 11, 25, 8, 0)),  # open
        (utc(2026, 11, 25, 18, 49), utc(2026, 11, 25, 18, 49)),  # 19:49, 11 min left
        (utc(2026, 11, 25, 18, 51), utc(2026, 11, 26, 8, 0)),  # 19:51: too close to 20:00
        (utc(2026, 11, 28, 20, 0), utc(2026, 11, 30, 8, 0)),  # Saturday night -> Monday (no Sunday)
    ],
)
def test_default_window(at: datetime, expected: datetime) -> None:
    assert CallingWindow.default().next_allowed(at, AMS) == expected


def test_overnight_range_belongs_to_its_start_day() -> None:
    friday_only = window("20:00-02:00", days=frozenset({4}))
    assert friday_only.allows(datetime(2026, 11, 28, 1, 0, tzinfo=AMS), AMS)  # Saturday 01:00
    assert not friday_only.allows(datetime(2026, 11, 29, 1, 0, tzinfo=AMS), AMS)  # Sunday 01:00
    assert friday_only.next_allowed(datetime(2026, 11, 28, 3, 0, tzinfo=AMS), AMS) == datetime(
        2026, 12, 4, 20, 0, tzinfo=AMS
    )


def test_spring_forward_gap_opens_at_first_instant_after_it() -> None:
    w = window("02:30-03:30")
    # 2026-03-29: Amsterdam jumps from 02:00 CET to 03:00 CEST at 01:00 UTC.
    assert w.next_allowed(utc(2026, 3, 29, 0, 0), AMS) == utc(2026, 3, 29, 1, 0)
    assert w.closes_at(utc(2026, 3, 29, 1, 0), AMS) == utc(2026, 3, 29, 1, 30)


def test_fall_back_repeated_hour_is_open_per_real_instant() -> None:
    w = window("02:30-03:30")
    # 2026-10-25: 03:00 CEST -> 02:00 CET at 01:00 UTC; wall 02:30-03:00 happens twice.
    assert w.intervals(date(2026, 10, 25), AMS) == [
        (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 0)),
        (utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 2, 30)),
    ]
    assert not w.allows(utc(2026, 10, 25, 1, 10), AMS)  # wall 02:10 CET: outside the range


def test_holidays_and_skip_dates() -> None:
    w = window("09:00-17:00", holiday_regions=("NL",), skip_dates=frozenset({date(2026, 12, 24)}))
    assert w.closed_reason(date(2026, 12, 25)) == "holiday"  # Christmas
    assert w.closed_reason(date(2026, 12, 24)) == "skip_date"
    # The 24th is skipped, the 25th and 26th are Christmas: Sunday the 27th is next.
    assert w.next_allowed(datetime(2026, 12, 24, 10, 0, tzinfo=AMS), AMS) == datetime(
        2026, 12, 27, 9, 0, tzinfo=AMS
    )
    us_ca = window("09:00-17:00", holiday_regions=("US-CA",))
    assert us_ca.closed_reason(date(2026, 7, 3)) == "holiday"  # Independence Day observed


def test_deadline_is_never_crossed() -> None:
    w = window("09:00-17:00")
    assert (
        w.next_allowed(
            datetime(2026, 11, 25, 18, 0, tzinfo=AMS),
            AMS,
            deadline=datetime(2026, 11, 26, 9, 0, tzinfo=AMS),
        )
        is None
    )
    assert w.next_allowed(
        datetime(2026, 11, 25, 18, 0, tzinfo=AMS),
        AMS,
        deadline=datetime(2026, 11, 26, 9, 1, tzinfo=AMS),
    ) == datetime(2026, 11, 26, 9, 0, tzinfo=AMS)


def test_whole_day_and_parsing() -> None:
    assert parse_range("00:00-24:00").whole_day
    assert window("00:00-24:00").allows(utc(2026, 11, 25, 23, 59), AMS)
    assert parse_days(["mon-fri"]) == frozenset(range(5))
    assert parse_days(["fri-mon"]) == frozenset({4, 5, 6, 0})
    for bad in (["funday"], ["mon-xyz"], []):
        with pytest.raises(ValueError, match="accepted"):
            parse_days(bad)
    for text in ("9-5", "09:00", "25:00-26:00", "09:60-10:00"):
        with pytest.raises(ValueError, match="accepted"):
            parse_range(text)
    with pytest.raises(ValueError, match="ends where it starts"):
        parse_range("09:00-09:00")
    with pytest.raises(ValueError, match="holidays package"):
        window("09:00-17:00", holiday_regions=("XX",))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        CallingWindow.default().allows(datetime(2026, 1, 1, 12), AMS)


# ----------------------------------------------------------------------- properties

minutes = st.integers(min_value=0, max_value=23 * 60 + 59)


@st.composite
def windows(draw: st.DrawFn) -> CallingWindow:
    ranges = []
    for _ in range(draw(st.integers(1, 2))):
        start, end = draw(minutes), draw(minutes)
        if start == end:
            end = (end + 61) % (24 * 60)
        ranges.append(TimeRange(start=time(start // 60, start % 60), end=time(end // 60, end % 60)))
    days = frozenset(draw(st.sets(st.integers(0, 6), min_size=1)))
    close = timedelta(minutes=draw(st.sampled_from([0, 10, 30])))
    regions = tuple(draw(st.sets(st.sampled_from(["NL", "US-CA", "GB", "JP", "BR"]), max_size=1)))
    return CallingWindow(
        days=days, ranges=tuple(ranges), min_time_before_close=close, holiday_regions=regions
    )


@st.composite
def around_transitions(draw: st.DrawFn) -> tuple[ZoneInfo, datetime]:
    """A zone and an instant, biased to within a day of one of its offset changes."""
    zone = ZoneInfo(draw(st.sampled_from(ALL_ZONES)))
    year = draw(st.integers(2024, 2028))
    base = datetime(year, 1, 1, tzinfo=UTC)
    hour = draw(st.integers(0, 366 * 24))
    at = base + timedelta(hours=hour, minutes=draw(st.integers(0, 59)))
    # Snap towards the nearest transition in the following 10 days, when there is one.
    probe = at
    for _ in range(240):
        if (probe + timedelta(hours=1)).astimezone(zone).utcoffset() != probe.astimezone(
            zone
        ).utcoffset():
            at = probe - timedelta(hours=draw(st.integers(0, 24)))
            break
        probe += timedelta(hours=1)
    return zone, at


def _local_ok(w: CallingWindow, at: datetime, zone: ZoneInfo) -> bool:
    """Independent check: the local wall time is inside a range of an allowed start day."""
    local = at.astimezone(zone)
    wall = local.time().replace(second=0, microsecond=0) if local.second == 0 else local.time()
    for r in w.ranges:
        if (
            r.whole_day
            or (not r.crosses_midnight and r.start <= wall < r.end)
            or (r.crosses_midnight and wall >= r.start)
        ):
            day = local.date()
        elif r.crosses_midnight and wall < r.end:
            day = local.date() - timedelta(days=1)
        else:
            continue
        if w.day_allowed(day):
            return True
    return False


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(w=windows(), zone_at=around_transitions(), deadline_days=st.none() | st.integers(0, 30))
def test_planned_time_is_inside_window_and_before_deadline(
    w: CallingWindow, zone_at: tuple[ZoneInfo, datetime], deadline_days: int | None
) -> None:
    zone, at = zone_at
    deadline = at + timedelta(days=deadline_days, hours=5) if deadline_days is not None else None
    planned = w.next_allowed(at, zone, deadline=deadline)
    if planned is None:
        return
    assert planned >= at
    if deadline is not None:
        assert planned < deadline
    assert w.allows(planned, zone)
    assert _local_ok(w, planned, zone)
    closes = w.closes_at(planned, zone)
    assert (closes is not None and closes - planned > w.min_time_before_close) or (
        closes is not None and w.min_time_before_close == timedelta(0) and closes > planned
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(w=windows(), zone_at=around_transitions())
def test_next_allowed_matches_a_minute_scan(
    w: CallingWindow, zone_at: tuple[ZoneInfo, datetime]
) -> None:
    """Brute-force oracle over three days: the first startable minute is what we return."""
    zone, at = zone_at
    at = at.replace(second=0, microsecond=0)
    horizon = at + timedelta(days=3)
    planned = w.next_allowed(at, zone, deadline=horizon)
    probe = at
    expected = None
    while probe < horizon:
        if w.allows(probe, zone) and _local_ok(w, probe, zone):
            expected = probe
            break
        probe += timedelta(minutes=1)
    if expected is None:
        assert planned is None or planned.second or planned.microsecond  # only sub-minute starts
    else:
        assert planned is not None and planned <= expected
        assert expected - planned < timedelta(minutes=1)


@settings(max_examples=80, deadline=None)
@given(
    zone=st.sampled_from(ALL_ZONES),
    day=st.integers(0, 6),
    start=st.integers(0, 23 * 60),
    at_hour=st.integers(0, 365 * 24),
)
def test_a_window_open_weekly_is_always_found_within_366_days(
    zone: str, day: int, start: int, at_hour: int
) -> None:
    w = CallingWindow(
        days=frozenset({day}),
        ranges=(
            TimeRange(
                start=time(start // 60, start % 60),
                end=time(((start + 120) // 60) % 24, start % 60),
            ),
        ),
        min_time_before_close=timedelta(minutes=10),
    )
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=at_hour)
    planned = w.next_allowed(at, ZoneInfo(zone))
    assert planned is not None and planned - at <= timedelta(days=8)
