"""Calling windows in a contact's own time zone: days, local time ranges, holidays, skip dates.

Semantics, chosen deliberately and tested across every zone:

- A range belongs to the local day it STARTS on: ``20:00-02:00`` on Friday runs into Saturday
  and is judged (day of week, holiday, skip date) as Friday's.
- The window is a set of real instants: an instant is open when its local wall time lies in
  ``[start, end)`` of a range of an allowed day. Hence:

  * a range starting inside a spring-forward gap opens at the first instant after the gap
    (02:30-03:30 on a 02:00→03:00 night opens at 03:00 new time and lasts 30 real minutes);
  * a repeated (fall-back) hour is open once for each real instant whose wall time falls in
    the range (01:00-03:00 on a 03:00→02:00 night is open three real hours).

- Ranges that touch or overlap, also across midnight and across days, form one open interval.
- A call may START only where at least ``min_time_before_close`` of its open interval remains:
  nobody is rung at 19:59 for a conversation that would end after 20:00.
- Holidays come from the ``holidays`` package (public holidays of a country or
  country-subdivision, observed days included): the campaign's regions, and with
  ``contact_holidays`` each contact's own calendar, in the window :meth:`CallingWindow.for_contact`
  makes for it (the dial gate judges every contact in that one).

Everything here is computed in UTC from the zone's offsets, never by adding hours to wall
times, so no DST arithmetic is done by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holidays_lib

from dialer.policy.durations import format_duration

__all__ = [
    "CONTACT_HOLIDAYS",
    "DAYS_ACCEPTED",
    "RANGE_ACCEPTED",
    "REGION_ACCEPTED",
    "CallingWindow",
    "TimeRange",
    "holiday_subdivisions",
    "parse_days",
    "parse_holiday_region",
    "parse_range",
    "shown_subdivisions",
]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAYS_ACCEPTED = 'day names "mon".."sun" or ranges such as "mon-fri"'
RANGE_ACCEPTED = '"HH:MM-HH:MM", e.g. "09:00-17:30" or "20:00-02:00" (crosses midnight)'
REGION_ACCEPTED = 'ISO 3166 codes such as "NL", "US", "GB", optionally "-" and a subdivision'
#: in ``[window] holidays``: the public holidays of each contact's own country (subdivision)
CONTACT_HOLIDAYS = "contact"

# Every UTC offset in the tz database lies within -12:00 .. +14:00; a margin on both sides.
_MAX_AHEAD = timedelta(hours=15)
_MAX_BEHIND = timedelta(hours=13)
# Offset changes of one zone are at least ~7 days apart since 1990 (checked against every
# TZif file of tzdata 2026.6), so a span shorter than this holds at most one change.
_SPAN_WITH_ONE_CHANGE = timedelta(days=4)
_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True, kw_only=True)
class TimeRange:
    """Local wall-clock range ``[start, end)``; ``end < start`` crosses midnight."""

    start: time
    end: time
    #: "00:00-24:00": the whole day (start == end would otherwise be an empty range)
    whole_day: bool = False

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value.tzinfo is not None:
                # a wall-clock range is read in each contact's own zone, never a fixed one
                raise ValueError(f"range {name} must be a naive local time")
        if self.whole_day and (self.start, self.end) != (time(0), time(0)):
            raise ValueError("a whole-day range is 00:00-24:00")
        if self.start == self.end and not self.whole_day:
            raise ValueError(
                f"range {self.start:%H:%M}-{self.end:%H:%M} ends where it starts "
                '(a whole day is "00:00-24:00")'
            )

    @property
    def crosses_midnight(self) -> bool:
        return self.end < self.start or self.whole_day

    def __str__(self) -> str:
        return "00:00-24:00" if self.whole_day else f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True, kw_only=True)
class CallingWindow:
    """When calls may start, judged in the contact's zone.

    >>> window = CallingWindow.default()
    >>> window.allows(datetime(2026, 11, 25, 9, 0, tzinfo=ZoneInfo("Europe/Amsterdam")),
    ...               ZoneInfo("Europe/Amsterdam"))
    True
    """

    days: frozenset[int]
    ranges: tuple[TimeRange, ...]
    holiday_regions: tuple[str, ...] = ()
    #: ``holidays = ["contact"]``: each contact's own public holidays close its window too.
    #: The campaign's window only says so; a contact is judged in :meth:`for_contact`'s.
    contact_holidays: bool = False
    #: set on a window :meth:`for_contact` made: that contact's calendar ("DE", "US-CA"),
    #: or "" when the holidays package has none for its country
    contact_calendar: str | None = None
    skip_dates: frozenset[date] = field(default_factory=frozenset)
    min_time_before_close: timedelta = timedelta(minutes=10)
    #: the windows for_contact made, by calendar: one per calendar, not one per decision (a
    #: cache, so neither compared, hashed nor copied by dataclasses.replace)
    _per_contact: dict[str, CallingWindow] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if not self.days or not self.days <= set(range(7)):
            raise ValueError("days must be a non-empty set of weekday numbers 0 (Mon) .. 6 (Sun)")
        if not self.ranges:
            raise ValueError("a calling window needs at least one time range")
        if not timedelta(0) <= self.min_time_before_close < _ONE_DAY:
            raise ValueError("min_time_before_close must be at least 0s and less than 1d")
        for region in self.holiday_regions:
            parse_holiday_region(region)
        if self.contact_calendar is not None:
            if not self.contact_holidays:
                raise ValueError("a contact's calendar needs contact_holidays")
            if self.contact_calendar:
                parse_holiday_region(self.contact_calendar)

    @classmethod
    def default(cls) -> CallingWindow:
        """09:00-20:00 local, Monday to Saturday: inside the US TCPA 08:00-21:00 rule."""
        return cls(days=frozenset(range(6)), ranges=(TimeRange(start=time(9), end=time(20)),))

    def describe(self) -> str:
        """One line for the audit log, e.g. "mon,tue,wed,thu,fri,sat 09:00-20:00 holidays NL"."""
        parts = [
            ",".join(DAY_NAMES[d] for d in sorted(self.days)),
            " ".join(str(r) for r in self.ranges),
        ]
        calendars = list(self.holiday_regions)
        if self.contact_holidays:
            # the campaign's "contact"; a contact's window names its own calendar
            mine = self.contact_calendar
            calendars.append(CONTACT_HOLIDAYS if mine is None else f"contact={mine or 'none'}")
        if calendars:
            parts.append("holidays " + ",".join(calendars))
        if self.skip_dates:
            parts.append(f"{len(self.skip_dates)} skip dates")
        if self.min_time_before_close:
            parts.append(f"last start {format_duration(self.min_time_before_close)} before close")
        return " ".join(parts)

    def for_contact(self, calendar: str | None) -> CallingWindow:
        """This window as one contact's: with its own public-holiday ``calendar`` (see
        :func:`dialer.policy.calendars.contact_calendar`; None: its country has none) when
        the campaign asks for contacts' holidays, else this very window.

        Made once per calendar and kept: the gate asks for every decision.
        """
        if not self.contact_holidays:
            return self
        key = calendar or ""
        window = self._per_contact.get(key)
        if window is None:
            window = self._per_contact[key] = replace(self, contact_calendar=key)
        return window

    @property
    def calendars(self) -> tuple[str, ...]:
        """The public-holiday calendars that close this window: the campaign's regions, then
        the contact's own (on a window :meth:`for_contact` made)."""
        if self.contact_calendar:
            return (*self.holiday_regions, self.contact_calendar)
        return self.holiday_regions

    # ------------------------------------------------------------------ days
    def closed_reason(self, day: date) -> str | None:
        """Why ranges starting on local ``day`` are closed: window, skip_date, holiday; or None."""
        if day.weekday() not in self.days:
            return "window"
        if day in self.skip_dates:
            return "skip_date"
        if any(day in _holidays(region, day.year) for region in self.calendars):
            return "holiday"
        return None

    def holiday(self, day: date) -> tuple[str, str] | None:
        """The first calendar that makes ``day`` a public holiday, and the holiday's name."""
        for region in self.calendars:
            name = _holidays(region, day.year).get(day)
            if name is not None:
                return region, name
        return None

    def day_allowed(self, day: date) -> bool:
        return self.closed_reason(day) is None

    def intervals(self, day: date, zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
        """The open UTC intervals of the ranges starting on local ``day`` (empty if closed)."""
        if not self.day_allowed(day):
            return []
        return _merge(interval for r in self.ranges for interval in _range_instants(day, r, zone))

    # ------------------------------------------------------------------ instants
    def allows(self, at: datetime, zone: ZoneInfo) -> bool:
        """Whether a call may start at ``at``: it is open and stays open for the margin."""
        at = _utc(at)
        end = self._open_until(at, zone, enough=at + self.min_time_before_close)
        return end is not None and at + self.min_time_before_close < end

    def closes_at(
        self, at: datetime, zone: ZoneInfo, *, horizon_days: int = 366
    ) -> datetime | None:
        """End of the open interval containing ``at``; None when ``at`` is not open.

        A window that stays open past ``horizon_days`` (whole-day ranges every day) reports
        some instant at least that far ahead instead of searching forever.
        """
        at = _utc(at)
        return self._open_until(at, zone, enough=at + timedelta(days=horizon_days))

    def next_allowed(
        self,
        after: datetime,
        zone: ZoneInfo,
        *,
        deadline: datetime | None = None,
        horizon_days: int = 366,
    ) -> datetime | None:
        """The earliest instant >= ``after`` and < ``deadline`` at which a call may start.

        None when there is none before the deadline or within ``horizon_days`` of ``after``.
        """
        after = _utc(after)
        limit = after + timedelta(days=horizon_days)
        if deadline is not None:
            limit = min(limit, _utc(deadline))
        close = self.min_time_before_close
        day = _local_date(after, zone) - _ONE_DAY  # its overnight ranges may still run
        pending: list[tuple[datetime, datetime]] = []
        while True:
            pending.extend(self.intervals(day, zone))
            day += _ONE_DAY
            # Ranges of ``day`` and later start no earlier than this: intervals ending before
            # it are final, and a candidate before it cannot be beaten by a later day.
            bound = _earliest_instant_of(day)
            merged = _merge(pending)
            for start, end in merged:
                candidate = max(start, after)
                if candidate >= bound:
                    if bound >= limit:
                        return None
                    break
                if candidate >= limit:
                    return None
                if candidate + close < end:
                    return candidate
                if end >= bound:
                    break  # the next day may extend this interval
            else:
                if bound >= limit:
                    return None
            pending = [(s, e) for s, e in merged if e >= bound]

    # ------------------------------------------------------------------ several zones
    def allows_everywhere(self, at: datetime, zones: Sequence[ZoneInfo]) -> bool:
        """Whether a call may start at ``at`` in every one of ``zones``: the contact is in one
        of them, and which one is not known (a number that spans several zones)."""
        return all(self.allows(at, zone) for zone in zones)

    def next_allowed_everywhere(
        self,
        after: datetime,
        zones: Sequence[ZoneInfo],
        *,
        deadline: datetime | None = None,
        horizon_days: int = 366,
    ) -> datetime | None:
        """The earliest instant >= ``after`` and < ``deadline`` at which a call may start in
        every one of ``zones``; None when their windows never overlap before the deadline or
        within ``horizon_days``.

        Each zone's next opening is sought from where the previous one left off, until one
        round moves no zone: every instant skipped was closed in the zone that skipped it.
        """
        if not zones:
            raise ValueError("zones is empty")
        after = _utc(after)
        limit = after + timedelta(days=horizon_days)
        if deadline is not None:
            limit = min(limit, _utc(deadline))
        candidate = after
        while True:
            latest = candidate
            for zone in zones:
                opens = self.next_allowed(latest, zone, deadline=limit)
                if opens is None:
                    return None
                latest = opens
            if latest == candidate:
                return candidate
            candidate = latest

    def _open_until(self, at: datetime, zone: ZoneInfo, *, enough: datetime) -> datetime | None:
        """End of the open interval holding ``at`` (exact, or any value > ``enough``)."""
        local_day = _local_date(at, zone)
        # ``at`` can only lie in ranges of its own local date or of the day before.
        raw = self.intervals(local_day - _ONE_DAY, zone) + self.intervals(local_day, zone)
        day = local_day + _ONE_DAY
        while True:
            end = next((e for s, e in _merge(raw) if s <= at < e), None)
            if end is None or end > enough or end < _earliest_instant_of(day):
                return end
            raw.extend(self.intervals(day, zone))
            day += _ONE_DAY


# --------------------------------------------------------------------------- parsing


def parse_days(spec: list[str]) -> frozenset[int]:
    """``["mon-fri", "sat"]`` -> {0, 1, 2, 3, 4, 5}; wrap-around ranges ("fri-mon") are allowed."""
    if isinstance(spec, str) or not spec:
        raise ValueError(f"no list of days given (accepted: {DAYS_ACCEPTED})")
    out: set[int] = set()
    for item in spec:
        text = str(item).strip().lower()
        first, sep, last = text.partition("-")
        names = [first.strip()] + ([last.strip()] if sep else [])
        if any(name not in DAY_NAMES for name in names):
            raise ValueError(f"{item!r} is not a day (accepted: {DAYS_ACCEPTED})")
        day, stop = DAY_NAMES.index(names[0]), DAY_NAMES.index(names[-1])
        out.add(day)
        while day != stop:
            day = (day + 1) % 7
            out.add(day)
    return frozenset(out)


def parse_range(text: str) -> TimeRange:
    """``"09:00-17:30"`` -> TimeRange; ``"24:00"`` is accepted as an end meaning midnight."""
    try:
        first, second = str(text).split("-")
        start = _parse_clock(first, end=False)
        end = _parse_clock(second, end=True)
    except ValueError:
        raise ValueError(f"{text!r} is not a time range (accepted: {RANGE_ACCEPTED})") from None
    whole_day = start == time(0) and second.strip() == "24:00"
    return TimeRange(start=start, end=end, whole_day=whole_day)


def _parse_clock(text: str, *, end: bool) -> time:
    hours, minutes = text.strip().split(":")
    if not (1 <= len(hours) <= 2 and len(minutes) == 2):
        raise ValueError(text)
    if not (hours.isascii() and hours.isdigit() and minutes.isascii() and minutes.isdigit()):
        raise ValueError(text)
    if end and (hours, minutes) == ("24", "00"):
        return time(0)
    return time(int(hours), int(minutes))


def parse_holiday_region(region: str) -> tuple[str, str | None]:
    """``"NL"`` -> ("NL", None); ``"US-CA"`` -> ("US", "CA"); ValueError if the package lacks it.

    Case does not matter; the codes returned are spelled as the holidays package spells them.
    """
    country, _, subdivision = str(region).strip().partition("-")
    country = country.strip().upper()
    known = holiday_subdivisions(country)
    if known is None:
        raise ValueError(
            f"{region!r} is not a country the holidays package knows (accepted: {REGION_ACCEPTED})"
        )
    if not subdivision.strip():
        return country, None
    if subdivision.strip().upper() not in known:
        raise ValueError(
            f"{region!r}: {subdivision!r} is not a subdivision of {country} "
            f"(accepted: {shown_subdivisions(known)})"
        )
    return country, known[subdivision.strip().upper()]


def holiday_subdivisions(country: str) -> Mapping[str, str] | None:
    """The subdivisions of ``country`` (an ISO 3166 code) the holidays package has calendars
    for, each upper-cased -> spelled as the package spells it; None when it has no calendar
    for the country at all."""
    return _supported_regions().get(country.strip().upper())


def shown_subdivisions(known: Mapping[str, str]) -> str:
    """A country's subdivisions for an error message (the first 40: the US has 57)."""
    return ", ".join(sorted(known.values())[:40]) or "none"


@lru_cache(maxsize=1)
def _supported_regions() -> dict[str, dict[str, str]]:
    """country -> {SUBDIVISION upper-cased: as spelled}; listing costs ~40 ms, so once."""
    return {
        country: {sub.upper(): sub for sub in subs}
        for country, subs in holidays_lib.list_supported_countries().items()
    }


@lru_cache(maxsize=512)
def _holidays(region: str, year: int) -> holidays_lib.HolidayBase:
    country, subdivision = parse_holiday_region(region)
    # expand=False: a lookup outside ``year`` must not grow this shared, cached object.
    return holidays_lib.country_holidays(country, subdiv=subdivision, years=year, expand=False)


# --------------------------------------------------------------------------- instants


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"policy decisions need aware datetimes, got {value!r}")
    return value.astimezone(UTC)


def _local_date(instant: datetime, zone: ZoneInfo) -> date:
    return instant.astimezone(zone).date()


def _earliest_instant_of(day: date) -> datetime:
    """A lower bound for any instant whose wall time falls on ``day`` in any zone."""
    return datetime.combine(day, time(0), tzinfo=UTC) - _MAX_AHEAD


def _merge(intervals: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Sorted union; intervals that touch become one."""
    out: list[tuple[datetime, datetime]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


@lru_cache(maxsize=16384)
def _range_instants(
    day: date, time_range: TimeRange, zone: ZoneInfo
) -> tuple[tuple[datetime, datetime], ...]:
    """Real instants whose wall time in ``zone`` lies in [start, end) of the range on ``day``.

    Works piece by piece of constant UTC offset, so gaps and folds fall out exactly: in each
    piece the instants with wall time w are exactly w - offset.
    """
    wall_start = datetime.combine(day, time_range.start)
    end_day = day + _ONE_DAY if time_range.crosses_midnight else day
    wall_end = datetime.combine(end_day, time_range.end)
    span_from = (wall_start - _MAX_AHEAD).replace(tzinfo=UTC)
    span_to = (wall_end + _MAX_BEHIND).replace(tzinfo=UTC)
    pieces = []
    for piece_start, piece_end, offset in _offset_pieces(zone, span_from, span_to):
        lo = max(piece_start, (wall_start - offset).replace(tzinfo=UTC))
        hi = min(piece_end, (wall_end - offset).replace(tzinfo=UTC))
        if lo < hi:
            pieces.append((lo, hi))
    return tuple(_merge(pieces))


def _offset_pieces(
    zone: ZoneInfo, start: datetime, stop: datetime
) -> list[tuple[datetime, datetime, timedelta]]:
    """Split [start, stop) into pieces of constant UTC offset in ``zone``."""
    assert stop - start < _SPAN_WITH_ONE_CHANGE
    pieces: list[tuple[datetime, datetime, timedelta]] = []
    while True:
        offset = _offset(zone, start)
        if _offset(zone, stop) == offset:
            # The span holds at most one change, so equal ends mean none at all.
            pieces.append((start, stop, offset))
            return pieces
        change = _first_change(zone, start, stop, offset)
        pieces.append((start, change, offset))
        start = change


def _first_change(zone: ZoneInfo, lo: datetime, hi: datetime, before: timedelta) -> datetime:
    """The first instant in (lo, hi] whose offset differs from ``before``, to the second.

    Transitions in the tz database fall on whole seconds.
    """
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _offset(zone, datetime.fromtimestamp(mid, UTC)) == before:
            lo_s = mid
        else:
            hi_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset
