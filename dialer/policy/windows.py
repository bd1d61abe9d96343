"""Calling windows in a contact's own time zone: days, local time ranges, holidays, skip dates.

Semantics, chosen deliberately and tested across every zone:
- A range belongs to the local day it STARTS on; ``20:00-02:00`` on Friday runs into Saturday
  and is judged (day of week, holiday, skip date) as Friday's.
- The window is a set of real instants: an instant is open when its local wall time lies in a
  range of an allowed day. So a range starting inside a spring-forward gap opens at the first
  instant after the gap, and a repeated (fall-back) hour is open once for each real instant
  whose wall time falls in the range.
- A call may START only where at least ``min_time_before_close`` of the open interval remains:
  nobody is rung at 19:59 for a conversation that would end after 20:00.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holidays_lib

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAYS_ACCEPTED = 'day names "mon".."sun" or ranges such as "mon-fri"'
RANGE_ACCEPTED = '"HH:MM-HH:MM", e.g. "09:00-17:30" or "20:00-02:00" (crosses midnight)'

# Every UTC offset in the tz database lies within these bounds (-12:00 .. +14:00).
_MAX_AHEAD = timedelta(hours=15)
_MAX_BEHIND = timedelta(hours=13)


@dataclass(frozen=True, kw_only=True)
class TimeRange:
    start: time
    end: time
    #: "00:00-24:00": the whole day (start == end would otherwise be an empty range)
    whole_day: bool = False

    def __post_init__(self) -> None:
        if self.whole_day and (self.start, self.end) != (time(0), time(0)):
            raise ValueError("a whole-day range is 00:00-24:00")
        if self.start == self.end and not self.whole_day:
            raise ValueError(
                f"range {self.start:%H:%M}-{self.end:%H:%M} ends where it starts "
                "(a whole day is 00:00-23:59 or two ranges)"
            )

    @property
    def crosses_midnight(self) -> bool:
        return self.end < self.start

    def __str__(self) -> str:
        return "00:00-24:00" if self.whole_day else f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True, kw_only=True)
class CallingWindow:
    days: frozenset[int]
    ranges: tuple[TimeRange, ...]
    holiday_regions: tuple[str, ...] = ()
    skip_dates: frozenset[date] = field(default_factory=frozenset)
    min_time_before_close: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        if not self.days or not self.days <= set(range(7)):
            raise ValueError("days must be a non-empty set of weekday numbers 0 (Mon) .. 6 (Sun)")
        if not self.ranges:
            raise ValueError("a calling window needs at least one time range")
        if self.min_time_before_close < timedelta(0):
            raise ValueError("min_time_before_close cannot be negative")
        for region in self.holiday_regions:
            parse_holiday_region(region)

    @classmethod
    def default(cls) -> CallingWindow:
        """09:00-20:00 local, Monday to Saturday: inside the US TCPA 08:00-21:00 rule."""
        return cls(days=frozenset(range(6)), ranges=(TimeRange(start=time(9), end=time(20)),))

    # ----------------------------------------------------------------- queries
    def day_allowed(self, day: date) -> bool:
        """Whether ranges starting on this local date are open at all (and why not, below)."""
        return self.closed_reason(day) is None

    def closed_reason(self, day: date) -> str | None:
        if day.weekday() not in self.days:
            return "window"
        if day in self.skip_dates:
            return "skip_date"
        if any(day in _holidays(region, day.year) for region in self.holiday_regions):
            return "holiday"
        return None

    def intervals(self, day: date, zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
        """The open UTC intervals of the ranges starting on local ``day`` (empty if closed)."""
        if not self.day_allowed(day):
            return []
        out: list[tuple[datetime, datetime]] = []
        for time_range in self.ranges:
            out.extend(_range_instants(day, time_range, zone))
        return sorted(out)

    def _startable(self, at: datetime, zone: ZoneInfo) -> Iterator[tuple[datetime, datetime]]:
        """Intervals of the days around ``at`` (a range from the previous day may still run)."""
        local_day = at.astimezone(zone).date()
        for offset in (-1, 0):
            yield from self.intervals(local_day + timedelta(days=offset), zone)

    def allows(self, at: datetime, zone: ZoneInfo) -> bool:
        """Whether a call may start at ``at``."""
        _require_aware(at)
        return any(
            start <= at < end - self.min_time_before_close
            for start, end in self._startable(at, zone)
        )

    def closes_at(self, at: datetime, zone: ZoneInfo) -> datetime | None:
        """End of the open interval containing ``at`` (None when ``at`` is not inside one)."""
        _require_aware(at)
        ends = [end for start, end in self._startable(at, zone) if start <= at < end]
        return max(ends) if ends else None

    def next_allowed(
        self,
        after: datetime,
        zone: ZoneInfo,
        *,
        deadline: datetime | None = None,
        horizon_days: int = 366,
    ) -> datetime | None:
        """The earliest instant >= ``after`` and < ``deadline`` at which a call may start."""
        _require_aware(after)
        after = after.astimezone(UTC)
        first_day = after.astimezone(zone).date() - timedelta(days=1)
        best: datetime | None = None
        for offset in range(horizon_days + 2):
            day = first_day + timedelta(days=offset)
            if best is not None and _day_start(day, zone) > best:
                break  # every later day starts after what we have
            if deadline is not None and _day_start(day, zone) >= deadline:
                break
            for start, end in self.intervals(day, zone):
                candidate = max(start, after)
                if candidate < end - self.min_time_before_close and (
                    deadline is None or candidate < deadline
                ):
                    best = candidate if best is None else min(best, candidate)
        return best


# --------------------------------------------------------------------------- parsing


def parse_days(spec: list[str]) -> frozenset[int]:
    """``["mon-fri", "sat"]`` -> {0, 1, 2, 3, 4, 5}; wrap-around ranges ("fri-mon") are allowed."""
    if not spec:
        raise ValueError(f"no days given (accepted: {DAYS_ACCEPTED})")
    out: set[int] = set()
    for item in spec:
        text = str(item).strip().lower()
        first, sep, last = text.partition("-")
        names = [first] + ([last] if sep else [])
        for name in names:
            if name not in DAY_NAMES:
                raise ValueError(f"{item!r} is not a day (accepted: {DAYS_ACCEPTED})")
        start, stop = DAY_NAMES.index(names[0]), DAY_NAMES.index(names[-1])
        day = start
        while True:
            out.add(day)
            if day == stop:
                break
            day = (day + 1) % 7
    return frozenset(out)


def parse_range(text: str) -> TimeRange:
    """``"09:00-17:30"`` -> TimeRange; ``"24:00"`` is accepted as an end meaning midnight."""
    try:
        first, second = str(text).split("-")
        start = _parse_clock(first)
        end = _parse_clock(second)
    except ValueError:
        raise ValueError(f"{text!r} is not a time range (accepted: {RANGE_ACCEPTED})") from None
    whole_day = start == time(0) and second.strip() == "24:00"
    return TimeRange(start=start, end=end, whole_day=whole_day)


def _parse_clock(text: str) -> time:
    hours, minutes = text.strip().split(":")
    if len(minutes) != 2 or not hours.isdigit() or not minutes.isdigit():
        raise ValueError(text)
    if int(hours) == 24 and int(minutes) == 0:
        return time(0, 0)
    return time(int(hours), int(minutes))


def parse_holiday_region(region: str) -> tuple[str, str | None]:
    """``"NL"`` -> ("NL", None); ``"US-CA"`` -> ("US", "CA"); ValueError if the package lacks it."""
    country, _, subdivision = str(region).strip().upper().partition("-")
    supported = holidays_lib.list_supported_countries()
    if country not in supported:
        raise ValueError(
            f"{region!r} is not a country the holidays package knows "
            '(accepted: ISO 3166 codes such as "NL", "US", "GB", optionally "-" and a subdivision)'
        )
    if subdivision and subdivision not in supported[country]:
        raise ValueError(
            f"{region!r}: {subdivision!r} is not a subdivision of {country} "
            f"(accepted: {', '.join(sorted(supported[country])[:30])})"
        )
    return country, subdivision or None


@lru_cache(maxsize=256)
def _holidays(region: str, year: int) -> holidays_lib.HolidayBase:
    country, subdivision = parse_holiday_region(region)
    return holidays_lib.country_holidays(country, subdiv=subdivision, years=year)


# --------------------------------------------------------------------------- instants


def _require_aware(value: datetime) -> None:
    if value.tzinfo is None:
        raise ValueError("policy decisions need aware datetimes")


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    """A lower bound for any instant whose wall time falls on ``day`` in any zone."""
    return datetime.combine(day, time(0), tzinfo=UTC) - _MAX_AHEAD


def _range_instants(
    day: date, time_range: TimeRange, zone: ZoneInfo
) -> list[tuple[datetime, datetime]]:
    """Real instants whose wall time in ``zone`` lies in [start, end) of the range on ``day``.

    Works segment by segment of constant UTC offset, so gaps and folds fall out exactly.
    """
    wall_start = datetime.combine(day, time_range.start)
    next_day = time_range.crosses_midnight or time_range.whole_day or time_range.end == time(0)
    end_day = day + timedelta(days=1) if next_day else day
    wall_end = datetime.combine(end_day, time_range.end)
    span_from = (wall_start - _MAX_AHEAD).replace(tzinfo=UTC)
    span_to = (wall_end + _MAX_BEHIND).replace(tzinfo=UTC)
    out: list[tuple[datetime, datetime]] = []
    for seg_start, seg_end, offset in _offset_segments(zone, span_from, span_to):
        lo = max(seg_start, (wall_start - offset).replace(tzinfo=UTC))
        hi = min(seg_end, (wall_end - offset).replace(tzinfo=UTC))
        if lo < hi:
            if out and out[-1][1] == lo:
                out[-1] = (out[-1][0], hi)
            else:
                out.append((lo, hi))
    return out


def _offset_segments(
    zone: ZoneInfo, start: datetime, stop: datetime
) -> list[tuple[datetime, datetime, timedelta]]:
    """Split [start, stop) into pieces of constant UTC offset in ``zone``."""
    segments: list[tuple[datetime, datetime, timedelta]] = []
    seg_start = start
    offset = _offset(zone, start)
    probe = start
    step = timedelta(hours=1)  # tz transitions are always more than an hour apart
    while probe < stop:
        nxt = min(probe + step, stop)
        nxt_offset = _offset(zone, nxt)
        if nxt_offset != offset:
            change = _transition(zone, probe, nxt, offset)
            segments.append((seg_start, change, offset))
            seg_start, offset = change, _offset(zone, change)
        probe = nxt
    segments.append((seg_start, stop, offset))
    return segments


def _transition(zone: ZoneInfo, lo: datetime, hi: datetime, before: timedelta) -> datetime:
    """The first instant in (lo, hi] whose offset differs from ``before`` (to the second)."""
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid <= lo:
            mid = lo + timedelta(seconds=1)
        if _offset(zone, mid) == before:
            lo = mid
        else:
            hi = mid
    return hi


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset
