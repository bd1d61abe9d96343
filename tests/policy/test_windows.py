"""Calling windows: tables for the semantics, hypothesis across every zone and DST transition.

The properties judge the implementation (which works in UTC offset pieces) against an
independent oracle that reads each instant's local wall clock and walks the ranges.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.policy.windows import (
    CallingWindow,
    TimeRange,
    parse_days,
    parse_holiday_region,
    parse_range,
)

AMS = ZoneInfo("Europe/Amsterdam")
NY = ZoneInfo("America/New_York")
ALL_ZONES = sorted(available_timezones())
EVERY_DAY = frozenset(range(7))
MINUTE = timedelta(minutes=1)
REGIONS = ["NL", "US-CA", "GB-SCT", "DE-BY", "AU-NSW", "JP", "BR", "CL", "IL", "NZ", "CA-QC"]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def window(
    *ranges: str,
    days: frozenset[int] = EVERY_DAY,
    close: int = 0,
    holiday_regions: tuple[str, ...] = (),
    skip_dates: frozenset[date] = frozenset(),
) -> CallingWindow:
    return CallingWindow(
        days=days,
        ranges=tuple(parse_range(r) for r in ranges),
        min_time_before_close=timedelta(minutes=close),
        holiday_regions=holiday_regions,
        skip_dates=skip_dates,
    )


# ----------------------------------------------------------------------- tables
@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2026, 11, 25, 7, 59), utc(2026, 11, 25, 8, 0)),  # Wed 08:59 Amsterdam -> 09:00
        (utc(2026, 11, 25, 8, 0), utc(2026, 11, 25, 8, 0)),  # open
        (utc(2026, 11, 25, 18, 49), utc(2026, 11, 25, 18, 49)),  # 19:49, 11 min left
        (utc(2026, 11, 25, 18, 50), utc(2026, 11, 26, 8, 0)),  # 19:50: exactly 10 min left
        (utc(2026, 11, 28, 19, 0), utc(2026, 11, 30, 8, 0)),  # Saturday 20:00 -> Monday
        (utc(2026, 11, 29, 10, 0), utc(2026, 11, 30, 8, 0)),  # Sunday is closed
    ],
)
def test_default_window_in_amsterdam(at: datetime, expected: datetime) -> None:
    assert CallingWindow.default().next_allowed(at, AMS) == expected


@pytest.mark.parametrize(
    ("ranges", "days", "local", "allowed"),
    [
        (("20:00-02:00",), {4}, datetime(2026, 11, 27, 20, 0), True),  # Friday 20:00
        (("20:00-02:00",), {4}, datetime(2026, 11, 28, 1, 49), True),  # Saturday, Friday's range
        (("20:00-02:00",), {4}, datetime(2026, 11, 28, 1, 50), False),  # exactly 10 min left
        (("20:00-02:00",), {4}, datetime(2026, 11, 28, 1, 51), False),  # 9 minutes left
        (("20:00-02:00",), {4}, datetime(2026, 11, 29, 1, 0), False),  # Saturday's range: closed
        (("20:00-02:00",), {4}, datetime(2026, 11, 27, 1, 0), False),  # Thursday's range
        (("09:00-24:00",), {0}, datetime(2026, 11, 30, 23, 49), True),  # "24:00" ends at midnight
        (("09:00-24:00",), {0}, datetime(2026, 12, 1, 0, 0), False),
        (("00:00-24:00",), {2}, datetime(2026, 11, 25, 0, 0), True),
        (("00:00-24:00",), {2}, datetime(2026, 11, 26, 0, 0), False),
        # touching ranges are one interval: 11:55 is not "5 minutes before close"
        (("09:00-12:00", "12:00-17:00"), {2}, datetime(2026, 11, 25, 11, 55), True),
        (("09:00-12:00", "12:00-17:00"), {2}, datetime(2026, 11, 25, 16, 55), False),
        (("09:00-12:00", "12:01-17:00"), {2}, datetime(2026, 11, 25, 11, 55), False),
        # Tuesday's overnight range runs into Wednesday's morning range: one interval
        (("22:00-00:00", "00:00-06:00"), {1, 2}, datetime(2026, 11, 24, 23, 55), True),
        (("22:00-00:00", "00:00-06:00"), {1}, datetime(2026, 11, 24, 23, 55), False),
    ],
)
def test_allows_table(
    ranges: tuple[str, ...], days: set[int], local: datetime, allowed: bool
) -> None:
    w = window(*ranges, days=frozenset(days), close=10)
    assert w.allows(local.replace(tzinfo=AMS), AMS) is allowed


@pytest.mark.parametrize(
    ("ranges", "days", "local", "closes"),
    [
        (("09:00-17:00",), EVERY_DAY, datetime(2026, 11, 25, 9), datetime(2026, 11, 25, 17)),
        (("09:00-17:00",), EVERY_DAY, datetime(2026, 11, 25, 17), None),
        (
            ("09:00-12:00", "11:00-14:00"),
            EVERY_DAY,
            datetime(2026, 11, 25, 10),
            datetime(2026, 11, 25, 14),
        ),
        (("20:00-02:00",), {4}, datetime(2026, 11, 28, 1), datetime(2026, 11, 28, 2)),
        (
            ("18:00-00:00", "00:00-03:00"),
            {1, 2},
            datetime(2026, 11, 24, 19),
            datetime(2026, 11, 25, 3),
        ),
        (("00:00-24:00",), {0, 1, 2}, datetime(2026, 11, 23, 5), datetime(2026, 11, 26)),
    ],
)
def test_closes_at_table(
    ranges: tuple[str, ...], days: frozenset[int], local: datetime, closes: datetime | None
) -> None:
    w = window(*ranges, days=frozenset(days))
    expected = closes.replace(tzinfo=AMS) if closes else None
    assert w.closes_at(local.replace(tzinfo=AMS), AMS) == expected


def test_an_always_open_window_reports_a_close_beyond_the_horizon() -> None:
    w = window("00:00-24:00")
    at = utc(2026, 11, 25, 12)
    closes = w.closes_at(at, AMS, horizon_days=20)
    assert closes is not None and closes > at + timedelta(days=20)
    assert w.next_allowed(at, AMS) == at


@pytest.mark.parametrize(
    ("zone", "hours", "day", "intervals"),
    [
        # Amsterdam springs 02:00 -> 03:00 at 01:00 UTC: a range in the gap opens after it.
        (
            "Europe/Amsterdam",
            "02:30-03:30",
            date(2026, 3, 29),
            [(utc(2026, 3, 29, 1), utc(2026, 3, 29, 1, 30))],
        ),
        ("Europe/Amsterdam", "02:10-02:50", date(2026, 3, 29), []),  # wholly inside the gap
        # Amsterdam falls back 03:00 -> 02:00 at 01:00 UTC: 02:30-03:00 happens twice.
        (
            "Europe/Amsterdam",
            "02:30-03:30",
            date(2026, 10, 25),
            [
                (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1)),
                (utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 2, 30)),
            ],
        ),
        # 01:00-03:00 on the fall-back night: one interval of three real hours.
        (
            "Europe/Amsterdam",
            "01:00-03:00",
            date(2026, 10, 25),
            [(utc(2026, 10, 24, 23), utc(2026, 10, 25, 2))],
        ),
        # New York: 02:00 -> 03:00 at 07:00 UTC in March; 02:00 -> 01:00 at 06:00 UTC in Nov.
        (
            "America/New_York",
            "01:30-03:30",
            date(2026, 3, 8),
            [(utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7, 30))],
        ),
        (
            "America/New_York",
            "01:30-02:00",
            date(2026, 11, 1),
            [
                (utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6)),
                (utc(2026, 11, 1, 6, 30), utc(2026, 11, 1, 7)),
            ],
        ),
        # Santiago skips midnight: 2026-09-06 starts at 01:00 local (04:00 UTC).
        (
            "America/Santiago",
            "00:00-02:00",
            date(2026, 9, 6),
            [(utc(2026, 9, 6, 4), utc(2026, 9, 6, 5))],
        ),
        # Santiago repeats 23:00-00:00 on 2026-04-04; an overnight range sees both passes.
        (
            "America/Santiago",
            "23:30-00:30",
            date(2026, 4, 4),
            [
                (utc(2026, 4, 5, 2, 30), utc(2026, 4, 5, 3)),
                (utc(2026, 4, 5, 3, 30), utc(2026, 4, 5, 4, 30)),
            ],
        ),
        # Lord Howe falls back half an hour (02:00 +11 -> 01:30 +10:30).
        (
            "Australia/Lord_Howe",
            "01:45-02:15",
            date(2026, 4, 5),
            [
                (utc(2026, 4, 4, 14, 45), utc(2026, 4, 4, 15)),
                (utc(2026, 4, 4, 15, 15), utc(2026, 4, 4, 15, 45)),
            ],
        ),
    ],
)
def test_dst_gaps_and_folds(
    zone: str, hours: str, day: date, intervals: list[tuple[datetime, datetime]]
) -> None:
    assert window(hours).intervals(day, ZoneInfo(zone)) == intervals


def test_dst_in_next_allowed_and_allows() -> None:
    w = window("02:30-03:30")
    assert w.next_allowed(utc(2026, 3, 29, 0, 0), AMS) == utc(2026, 3, 29, 1, 0)
    assert w.closes_at(utc(2026, 3, 29, 1, 0), AMS) == utc(2026, 3, 29, 1, 30)
    assert not w.allows(utc(2026, 10, 25, 1, 10), AMS)  # wall 02:10 CET, outside the range
    assert w.allows(utc(2026, 10, 25, 0, 45), AMS)  # wall 02:45 CEST, first pass
    assert w.allows(utc(2026, 10, 25, 1, 45), AMS)  # wall 02:45 CET, second pass
    # The margin before close is judged per real interval: the first pass ends at 01:00 UTC.
    assert not window("02:30-03:30", close=10).allows(utc(2026, 10, 25, 0, 55), AMS)


def test_holidays_and_skip_dates() -> None:
    w = window("09:00-17:00", holiday_regions=("NL",), skip_dates=frozenset({date(2026, 12, 24)}))
    assert w.closed_reason(date(2026, 12, 25)) == "holiday"  # Christmas
    assert w.closed_reason(date(2026, 12, 24)) == "skip_date"
    assert w.closed_reason(date(2026, 12, 23)) is None
    # The 24th is skipped, the 25th and 26th are Christmas: Sunday the 27th is next.
    assert w.next_allowed(datetime(2026, 12, 24, 10, 0, tzinfo=AMS), AMS) == datetime(
        2026, 12, 27, 9, 0, tzinfo=AMS
    )
    us_ca = window("09:00-17:00", holiday_regions=("us-ca",))  # case does not matter
    assert us_ca.closed_reason(date(2026, 7, 3)) == "holiday"  # Independence Day observed
    assert window("09:00-17:00", days=frozenset({6})).closed_reason(date(2026, 7, 3)) == "window"


def test_a_contacts_window_adds_its_own_calendar_to_the_campaigns() -> None:
    campaign = CallingWindow(
        days=EVERY_DAY,
        ranges=(parse_range("09:00-17:00"),),
        holiday_regions=("NL",),
        contact_holidays=True,
    )
    bavarian = campaign.for_contact("DE-BY")
    assert bavarian.calendars == ("NL", "DE-BY")
    assert bavarian.closed_reason(date(2027, 4, 27)) == "holiday"  # King's Day: the campaign's
    assert bavarian.holiday(date(2027, 4, 27)) == ("NL", "King's Day")
    assert bavarian.closed_reason(date(2027, 5, 27)) == "holiday"  # Corpus Christi in Bavaria
    assert bavarian.holiday(date(2027, 5, 27)) == ("DE-BY", "Corpus Christi")
    assert campaign.for_contact("DE").closed_reason(date(2027, 5, 27)) is None  # not in Berlin
    assert campaign.closed_reason(date(2027, 5, 27)) is None  # nor for the campaign alone
    assert campaign.holiday(date(2027, 5, 27)) is None
    # a country without a calendar: no holidays of its own, the campaign's still
    nowhere = campaign.for_contact(None)
    assert nowhere.calendars == ("NL",)
    assert nowhere.closed_reason(date(2027, 4, 27)) == "holiday"
    # what the audit log says of each
    assert campaign.describe() == (
        "mon,tue,wed,thu,fri,sat,sun 09:00-17:00 holidays NL,contact last start 10m before close"
    )
    assert "holidays NL,contact=DE-BY" in bavarian.describe()
    assert "holidays NL,contact=none" in nowhere.describe()


def test_a_contacts_window_is_made_once_per_calendar() -> None:
    campaign = CallingWindow(
        days=EVERY_DAY, ranges=(parse_range("09:00-17:00"),), contact_holidays=True
    )
    first = campaign.for_contact("US-CA")
    assert campaign.for_contact("US-CA") is first
    assert campaign.for_contact(None) is campaign.for_contact(None)
    # equal to a window built by hand, and hashable like any: the cache is not part of it
    assert first == CallingWindow(
        days=EVERY_DAY,
        ranges=(parse_range("09:00-17:00"),),
        contact_holidays=True,
        contact_calendar="US-CA",
    )
    assert hash(first) == hash(replace(first))
    # without "contact" every contact is judged in the campaign's very window
    plain = window("09:00-17:00", holiday_regions=("NL",))
    assert plain.for_contact("DE-BY") is plain


def test_a_contacts_calendar_is_checked() -> None:
    with pytest.raises(ValueError, match="not a subdivision"):
        CallingWindow(
            days=EVERY_DAY,
            ranges=(parse_range("09:00-17:00"),),
            contact_holidays=True,
            contact_calendar="DE-XX",
        )
    with pytest.raises(ValueError, match="needs contact_holidays"):
        CallingWindow(days=EVERY_DAY, ranges=(parse_range("09:00-17:00"),), contact_calendar="DE")


def test_an_overnight_range_is_judged_by_the_day_it_starts() -> None:
    w = window("20:00-02:00", holiday_regions=("NL",))
    # Tuesday 01:00 lies in Monday's range: it is open now, not at 20:00.
    tuesday_one = datetime(2026, 11, 24, 1, 0, tzinfo=AMS)
    assert w.next_allowed(tuesday_one, AMS) == tuesday_one
    assert w.closes_at(tuesday_one, AMS) == datetime(2026, 11, 24, 2, 0, tzinfo=AMS)
    # Christmas Eve's range runs into Christmas morning; Christmas night's range is closed.
    assert w.allows(datetime(2026, 12, 25, 1, 0, tzinfo=AMS), AMS)
    assert not w.allows(datetime(2026, 12, 25, 21, 0, tzinfo=AMS), AMS)
    assert not w.allows(datetime(2026, 12, 26, 1, 0, tzinfo=AMS), AMS)
    assert w.next_allowed(datetime(2026, 12, 25, 3, 0, tzinfo=AMS), AMS) == datetime(
        2026, 12, 27, 20, 0, tzinfo=AMS
    )


def test_deadline_and_horizon_are_never_crossed() -> None:
    w = window("09:00-17:00")
    evening = datetime(2026, 11, 25, 18, 0, tzinfo=AMS)
    nine = datetime(2026, 11, 26, 9, 0, tzinfo=AMS)
    assert w.next_allowed(evening, AMS, deadline=nine) is None
    assert w.next_allowed(evening, AMS, deadline=nine + MINUTE) == nine
    assert w.next_allowed(nine, AMS, deadline=nine) is None
    assert w.next_allowed(evening, AMS, deadline=evening - timedelta(days=1)) is None
    # Only one Monday in the next year is not skipped; a shorter horizon does not reach it.
    start = date(2026, 11, 23)  # a Monday
    mondays = {start + timedelta(weeks=n) for n in range(60)}
    target = start + timedelta(weeks=45)
    rare = window("09:00-17:00", days=frozenset({0}), skip_dates=frozenset(mondays - {target}))
    after = datetime(2026, 11, 23, 12, tzinfo=AMS)
    assert rare.next_allowed(after, AMS) == datetime.combine(target, time(9), tzinfo=AMS)
    assert rare.next_allowed(after, AMS, horizon_days=300) is None


@pytest.mark.parametrize(
    ("spec", "days"),
    [
        (["mon-fri"], {0, 1, 2, 3, 4}),
        (["Mon", " sat "], {0, 5}),
        (["fri-mon"], {4, 5, 6, 0}),
        (["sun-sun"], {6}),
        (["mon-sun"], set(range(7))),
        (["tue-mon"], set(range(7))),
    ],
)
def test_parse_days(spec: list[str], days: set[int]) -> None:
    assert parse_days(spec) == frozenset(days)


@pytest.mark.parametrize("spec", [["funday"], ["mon-xyz"], [], ["mon-tue-wed"], "mon", [""]])
def test_parse_days_refuses(spec: list[str]) -> None:
    with pytest.raises(ValueError, match="accepted"):
        parse_days(spec)


@pytest.mark.parametrize(
    ("text", "start", "end", "whole_day"),
    [
        ("09:00-17:30", time(9), time(17, 30), False),
        (" 9:05 - 17:00 ", time(9, 5), time(17), False),
        ("20:00-02:00", time(20), time(2), False),
        ("09:00-24:00", time(9), time(0), False),
        ("00:00-24:00", time(0), time(0), True),
    ],
)
def test_parse_range(text: str, start: time, end: time, whole_day: bool) -> None:
    assert parse_range(text) == TimeRange(start=start, end=end, whole_day=whole_day)


@pytest.mark.parametrize(
    "text",
    ["9-5", "09:00", "25:00-26:00", "09:60-10:00", "24:00-09:00", "09:0-10:00", "٠٩:٠٠-10:00"],
)
def test_parse_range_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="accepted"):
        parse_range(text)


def test_invalid_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="ends where it starts"):
        parse_range("09:00-09:00")
    with pytest.raises(ValueError, match="holidays package"):
        window("09:00-17:00", holiday_regions=("XX",))
    with pytest.raises(ValueError, match="not a subdivision"):
        window("09:00-17:00", holiday_regions=("US-XX",))
    for bad in (frozenset(), frozenset({7})):
        with pytest.raises(ValueError, match="weekday"):
            window("09:00-17:00", days=bad)
    with pytest.raises(ValueError, match="at least one"):
        CallingWindow(days=EVERY_DAY, ranges=())
    for close in (-1, 24 * 60):
        with pytest.raises(ValueError, match="min_time_before_close"):
            window("09:00-17:00", close=close)
    with pytest.raises(ValueError, match="naive"):
        TimeRange(start=time(9, tzinfo=UTC), end=time(17))
    assert parse_holiday_region("nl-midden") == ("NL", "Midden")
    assert parse_holiday_region("US") == ("US", None)


def test_naive_datetimes_are_refused() -> None:
    w = CallingWindow.default()
    naive = datetime(2026, 1, 1, 12)
    with pytest.raises(ValueError, match="aware"):
        w.allows(naive, AMS)
    with pytest.raises(ValueError, match="aware"):
        w.closes_at(naive, AMS)
    with pytest.raises(ValueError, match="aware"):
        w.next_allowed(naive, AMS)
    with pytest.raises(ValueError, match="aware"):
        w.next_allowed(utc(2026, 1, 1), AMS, deadline=naive)


def test_answers_are_utc_whatever_zone_the_input_is_in() -> None:
    planned = CallingWindow.default().next_allowed(datetime(2026, 11, 25, 7, tzinfo=NY), NY)
    assert planned == datetime(2026, 11, 25, 9, tzinfo=NY)
    assert planned is not None and planned.tzinfo is UTC


# ----------------------------------------------------------------------- the oracle
@cache
def _oracle_holidays(region: str, year: int) -> holidays.HolidayBase:
    country, _, subdivision = region.partition("-")
    return holidays.country_holidays(country, subdiv=subdivision or None, years=year)


def _day_ok(w: CallingWindow, day: date) -> bool:
    return (
        day.weekday() in w.days
        and day not in w.skip_dates
        and not any(day in _oracle_holidays(r, day.year) for r in w.holiday_regions)
    )


def _inside(w: CallingWindow, at: datetime, zone: ZoneInfo) -> date | None:
    """The allowed start day of a range whose wall-clock span holds ``at``'s local time."""
    wall = at.astimezone(zone).replace(tzinfo=None)
    for r in w.ranges:
        for day in (wall.date(), wall.date() - timedelta(days=1)):
            start = datetime.combine(day, r.start)
            end = datetime.combine(day + timedelta(days=r.end <= r.start), r.end)
            if start <= wall < end and _day_ok(w, day):
                return day
    return None


def _startable(w: CallingWindow, at: datetime, zone: ZoneInfo) -> bool:
    """Open from ``at`` through ``at + close`` (boundaries are whole minutes, so minute steps
    cannot jump over a closed stretch)."""
    close = w.min_time_before_close
    steps = [at + MINUTE * k for k in range(int(close / MINUTE) + 1)] + [at + close]
    return all(_inside(w, t, zone) is not None for t in steps)


def _first_startable_minute(
    w: CallingWindow, zone: ZoneInfo, start: datetime, stop: datetime
) -> datetime | None:
    """Brute force: the first minute of [start, stop) that is open for the whole margin."""
    close_minutes = int(w.min_time_before_close / MINUTE)
    total = int((stop - start) / MINUTE)
    inside = [
        _inside(w, start + MINUTE * k, zone) is not None for k in range(total + close_minutes + 1)
    ]
    run = 0  # consecutive open minutes from k onwards
    first = None
    for k in range(len(inside) - 1, -1, -1):
        run = run + 1 if inside[k] else 0
        if k < total and run > close_minutes:
            first = k
    return None if first is None else start + MINUTE * first


# ----------------------------------------------------------------------- strategies
@cache
def _transitions(zone_name: str, year: int) -> tuple[datetime, ...]:
    """Instants in ``year`` where the zone's UTC offset changes (daily probes, then bisection)."""
    zone = ZoneInfo(zone_name)
    out = []
    probe = datetime(year, 1, 1, tzinfo=UTC)
    while probe.year == year:
        nxt = probe + timedelta(days=1)
        if probe.astimezone(zone).utcoffset() != nxt.astimezone(zone).utcoffset():
            lo, hi = probe, nxt
            while hi - lo > MINUTE:
                mid = lo + (hi - lo) / 2
                if mid.astimezone(zone).utcoffset() == lo.astimezone(zone).utcoffset():
                    lo = mid
                else:
                    hi = mid
            out.append(hi.replace(second=0, microsecond=0))
        probe = nxt
    return tuple(out)


@st.composite
def zone_and_instant(draw: st.DrawFn) -> tuple[ZoneInfo, datetime, list[time]]:
    """A zone, an instant near one of its offset changes or near a holiday (or anywhere), and
    wall times worth starting ranges at (around that instant)."""
    name = draw(st.sampled_from(ALL_ZONES))
    zone = ZoneInfo(name)
    year = draw(st.integers(2024, 2028))
    changes = _transitions(name, year)
    mode = draw(st.sampled_from(["transition", "transition", "holiday", "anywhere"]))
    if mode == "transition" and changes:
        centre = draw(st.sampled_from(changes))
    elif mode == "holiday":
        region = draw(st.sampled_from(REGIONS))
        day = draw(st.sampled_from(sorted(_oracle_holidays(region, year))))
        centre = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    else:
        minutes = draw(st.integers(0, 365 * 1440))
        centre = datetime(year, 1, 1, tzinfo=UTC) + MINUTE * minutes
    at = centre + MINUTE * draw(st.integers(-36 * 60, 12 * 60))
    walls = [
        (centre + MINUTE * m).astimezone(zone).time().replace(second=0, microsecond=0)
        for m in (-90, -60, -30, 0, 30, 60)
    ]
    return zone, at, walls


@st.composite
def calling_windows(draw: st.DrawFn, walls: list[time], near: date) -> CallingWindow:
    """1-3 ranges (often overnight, sometimes whole-day), random days and margins, holidays,
    and skip dates around ``near``."""
    clock = st.sampled_from(walls) | st.builds(
        time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 59])
    )
    ranges = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 9)) == 0:
            ranges.append(TimeRange(start=time(0), end=time(0), whole_day=True))
            continue
        start, end = draw(clock), draw(clock)
        if start == end:
            end = time((end.hour + 1) % 24, end.minute)
        ranges.append(TimeRange(start=start, end=end))
    skips = draw(st.sets(st.integers(-3, 10), max_size=4))
    return CallingWindow(
        days=frozenset(draw(st.sets(st.integers(0, 6), min_size=1))),
        ranges=tuple(ranges),
        min_time_before_close=MINUTE * draw(st.sampled_from([0, 1, 10, 30])),
        holiday_regions=tuple(draw(st.sets(st.sampled_from(REGIONS), max_size=2))),
        skip_dates=frozenset(near + timedelta(days=d) for d in skips),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[CallingWindow, ZoneInfo, datetime]:
    zone, at, walls = draw(zone_and_instant())
    return draw(calling_windows(walls, at.astimezone(zone).date())), zone, at


# ----------------------------------------------------------------------- properties
@settings(max_examples=250)
@given(scenario=scenarios(), deadline_hours=st.none() | st.integers(0, 24 * 20))
def test_every_planned_time_obeys_every_rule(
    scenario: tuple[CallingWindow, ZoneInfo, datetime], deadline_hours: int | None
) -> None:
    w, zone, at = scenario
    deadline = None if deadline_hours is None else at + timedelta(hours=deadline_hours)
    planned = w.next_allowed(at, zone, deadline=deadline)
    if planned is None:
        return
    assert planned >= at and (deadline is None or planned < deadline)
    assert planned < at + timedelta(days=366)
    # Inside the window in the contact's zone, on a range whose start day is allowed: the
    # right weekday, no holiday of any region, no skip date.
    day = _inside(w, planned, zone)
    assert day is not None
    assert day.weekday() in w.days and day not in w.skip_dates
    assert not any(day in _oracle_holidays(r, day.year) for r in w.holiday_regions)
    # The whole margin before close is still open, and the reported close is the real one.
    assert _startable(w, planned, zone)
    assert w.allows(planned, zone)
    closes = w.closes_at(planned, zone)
    assert closes is not None and closes - planned > w.min_time_before_close
    if closes - planned < timedelta(days=300):  # else: open past the horizon
        assert _inside(w, closes - MINUTE, zone) is not None
        assert _inside(w, closes, zone) is None
        # allows() flips exactly where the margin before that close begins.
        last = closes - w.min_time_before_close
        assert not w.allows(last, zone)
        if last - MINUTE >= planned:
            assert w.allows(last - MINUTE, zone)


@settings(max_examples=120)
@given(
    scenario=scenarios(),
    horizon_days=st.integers(1, 2),
    deadline_minutes=st.none() | st.integers(0, 3 * 1440),
)
def test_next_allowed_is_the_first_startable_minute(
    scenario: tuple[CallingWindow, ZoneInfo, datetime],
    horizon_days: int,
    deadline_minutes: int | None,
) -> None:
    """Brute-force oracle: scan every minute of the horizon."""
    w, zone, at = scenario
    at = at.replace(second=0, microsecond=0)
    deadline = None if deadline_minutes is None else at + MINUTE * deadline_minutes
    stop = at + timedelta(days=horizon_days)
    if deadline is not None:
        stop = min(stop, deadline)
    expected = _first_startable_minute(w, zone, at, stop) if stop > at else None
    assert w.next_allowed(at, zone, deadline=deadline, horizon_days=horizon_days) == expected
    # allows() agrees with the oracle at the start, at the answer and just before it.
    probes = {at} | ({expected, expected - MINUTE} if expected is not None else set())
    for probe in probes:
        assert w.allows(probe, zone) is _startable(w, probe, zone), probe


@settings(max_examples=80)
@given(
    zone=st.sampled_from(ALL_ZONES),
    weekday=st.integers(0, 6),
    start=st.integers(0, 23 * 60 + 59),
    length=st.integers(3 * 60, 20 * 60),
    close=st.sampled_from([0, 10, 30]),
    after_hours=st.integers(0, 366 * 24),
    target_week=st.none() | st.integers(0, 54),
    region=st.none() | st.sampled_from(REGIONS),
)
def test_a_rare_opening_is_found_whenever_one_exists_within_366_days(
    zone: str,
    weekday: int,
    start: int,
    length: int,
    close: int,
    after_hours: int,
    target_week: int | None,
    region: str | None,
) -> None:
    """One weekday, every such day in the year skipped but (maybe) one: found iff it exists."""
    tz = ZoneInfo(zone)
    after = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=after_hours)
    first = after.astimezone(tz).date() - timedelta(days=1)
    first += timedelta(days=(weekday - first.weekday()) % 7)
    candidates = [first + timedelta(weeks=n) for n in range(56)]
    target = candidates[target_week] if target_week is not None else None
    end = (start + length) % 1440
    w = CallingWindow(
        days=frozenset({weekday}),
        ranges=(TimeRange(start=time(start // 60, start % 60), end=time(end // 60, end % 60)),),
        skip_dates=frozenset(d for d in candidates if d != target),
        holiday_regions=(region,) if region else (),
        min_time_before_close=timedelta(minutes=close),
    )
    expected = None
    if target is not None and _day_ok(w, target):
        midnight = datetime.combine(target, time(0), tzinfo=UTC)
        scan_from = max(after, midnight - timedelta(hours=15))
        scan_to = midnight + timedelta(days=2, hours=13)
        expected = _first_startable_minute(w, tz, scan_from, scan_to)
        if expected is not None and expected >= after + timedelta(days=366):
            expected = None
    assert w.next_allowed(after, tz) == expected


# ----------------------------------------------------------------------- several zones
#: zones of numbers that span several (AU mobiles, US/Canadian area codes, RU mobiles), plus
#: zones with odd offsets and DST rules, so the overlaps shift across transitions
SPANNED = [
    "Australia/Sydney",
    "Australia/Perth",
    "Australia/Lord_Howe",
    "Australia/Eucla",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/St_Johns",
    "Pacific/Honolulu",
    "Europe/Moscow",
    "Asia/Vladivostok",
]


def _startable_minutes(w: CallingWindow, zone: ZoneInfo, start: datetime, total: int) -> list[bool]:
    """Brute force, per minute of [start, start + total): open through the whole margin."""
    close_minutes = int(w.min_time_before_close / MINUTE)
    inside = [
        _inside(w, start + MINUTE * k, zone) is not None for k in range(total + close_minutes + 1)
    ]
    ok = [False] * total
    run = 0
    for k in range(len(inside) - 1, -1, -1):
        run = run + 1 if inside[k] else 0
        if k < total:
            ok[k] = run > close_minutes
    return ok


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(st.sampled_from(SPANNED), min_size=2, max_size=4, unique=True),
    year=st.integers(2025, 2027),
    minute=st.integers(0, 365 * 1440),
    start=st.integers(0, 23),
    hours=st.integers(2, 14),
    close=st.sampled_from([0, 10, 30]),
    days=st.sets(st.integers(0, 6), min_size=1),
)
def test_several_zones_get_the_first_instant_open_in_all_of_them(
    names: list[str], year: int, minute: int, start: int, hours: int, close: int, days: set[int]
) -> None:
    zones = [ZoneInfo(n) for n in names]
    w = CallingWindow(
        days=frozenset(days),
        ranges=(TimeRange(start=time(start), end=time((start + hours) % 24)),),
        min_time_before_close=timedelta(minutes=close),
    )
    after = datetime(year, 1, 1, tzinfo=UTC) + MINUTE * minute
    span = 3 * 1440  # three days of minutes: the oracle is slow, the answer usually near
    per_zone = [_startable_minutes(w, zone, after, span) for zone in zones]
    expected = next(
        (after + MINUTE * k for k in range(span) if all(ok[k] for ok in per_zone)), None
    )
    found = w.next_allowed_everywhere(after, zones)
    if expected is not None:
        assert found == expected
    else:
        assert found is None or found >= after + MINUTE * span
    if found is not None:
        assert w.allows_everywhere(found, zones)
    # one zone is exactly next_allowed
    assert w.next_allowed_everywhere(after, zones[:1]) == w.next_allowed(after, zones[0])
