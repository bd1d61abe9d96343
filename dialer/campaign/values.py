"""One value at a time: what a campaign file may hold in a field, and what is wrong with it.

Shared by the loader and the contacts: :func:`parse_when`, the hints of what is accepted
(``DATETIME``, ``ZONE``…), the checks of a zone, a region or a holiday calendar, how a value
is shown in a message, and :class:`_Checks`, the problems of one file with the typed getters
that report an unusable value at its key path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import holidays

from dialer import phones
from dialer.errors import Problem
from dialer.policy.durations import DURATION_ACCEPTED, parse_duration
from dialer.tomlsource import KeyPath, TomlSource, did_you_mean, reason

#: contact keys / CSV columns with a meaning of their own (all also become template variables)
SPECIAL_COLUMNS = (
    "phone",
    "name",
    "timezone",
    "call_at",
    "appointment_at",
    "deadline",
    "subdivision",
    "id",
)
#: too short to call a column one typo away a misspelling of it (``kid``, ``ad``, ``nd``)
_NO_TYPO_CHECK = frozenset({"id"})
TIMING_COLUMNS = ("call_at", "appointment_at", "deadline")

#: after this many identical problems (same field, same message) only a summary follows
MAX_REPEATS = 20

DATETIME = (
    'an ISO 8601 date and time, e.g. 2027-03-04T14:30:00+01:00, or "2027-03-04 14:30" for the '
    "local time of the contact (campaign start_at/expires_at: of the campaign timezone)"
)
ZONE = 'an IANA time zone such as "Europe/Amsterdam", "America/New_York" or "UTC"'
REGION = 'a two-letter region code such as "NL", "US" or "GB"'
NAME = "letters, digits, spaces, '.', '_' and '-', starting with a letter or digit (max 100)"

T = TypeVar("T")
P = ParamSpec("P")
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _zone_problem(value: str) -> str | None:
    """What is wrong with an IANA zone name, or None."""
    if value in _zones() or value == "UTC":
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a tzdata folder ("Europe") or a name too long for a file
        return f"unknown time zone {value!r}" + did_you_mean(value, _zones())
    return None


def _region_problem(value: str) -> str | None:
    if phones.is_region(value):
        return None
    return f"unknown region {value!r}"


def _text(value: Any) -> str:
    """A contact value as template text: TOML types written the way TOML writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


#: the dates a campaign may name (a "never" of 9999-12-31 is refused with a clear error)
FIRST_YEAR, LAST_YEAR = 1970, 9990


def parse_when(value: Any, *, zone: ZoneInfo | None) -> datetime:
    """A TOML/CSV date-time as an aware UTC datetime; ValueError saying what is wrong.

    A value without an offset is local time in ``zone``. A local time that does not exist
    (inside a spring-forward gap) is refused rather than shifted; a repeated one (fall back)
    means its first occurrence.
    """
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, date):
        raise ValueError("is a date without a time of day")
    elif isinstance(value, str):
        text = value.strip()
        if _DATE_ONLY.fullmatch(text):
            raise ValueError(f"{value!r} is a date without a time of day")
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a date and time") from None
    else:
        raise ValueError(f"{value!r} is not a date and time")
    if not FIRST_YEAR <= when.year <= LAST_YEAR:
        # beyond these, converting between zones or adding a day overflows the calendar
        raise ValueError(
            f"{_text(value)!r} is not between the years {FIRST_YEAR} and {LAST_YEAR} "
            "(for no deadline, leave the field out)"
        )
    if when.tzinfo is None:
        if zone is None:
            raise ValueError(
                f"{_text(value)!r} has no UTC offset and no time zone is known to read it in "
                "(add an offset, a timezone for the contact, or the campaign timezone)"
            )
        local = when.replace(tzinfo=zone)
        if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != when:
            raise ValueError(
                f"{_text(value)!r} does not exist in {zone.key} (the clocks skip that hour)"
            )
        when = local
    return when.astimezone(UTC)


class _Checks:
    """The problems and warnings of one campaign file, and getters that report a value
    unusable where it is (its key path)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.source: TomlSource | None = None

    # -- reporting -----------------------------------------------------------------------
    def bad(self, path: KeyPath, message: str, accepted: str | None = None) -> None:
        assert self.source is not None
        self.problems.append(self.source.problem(path, message, accepted=accepted))

    def warn(self, path: KeyPath, message: str, accepted: str | None = None) -> None:
        """Something that may be intended: shown, and an error only with ``--strict``."""
        assert self.source is not None
        self.warnings.append(self.source.problem(path, message, accepted=accepted))

    # -- typed getters: each returns None (and reports) when the value is unusable ---------
    def get_if_set(
        self,
        data: Mapping[str, Any],
        key: str,
        get: Callable[Concatenate[KeyPath, Any, P], T | None],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T | None:
        """``get`` of the top-level ``key``, or None when the file leaves it out, e.g.
        ``get_if_set(data, "max_concurrent_calls", self.get_int, minimum=1)``."""
        return get((key,), data[key], *args, **kwargs) if key in data else None

    def get_str(self, path: KeyPath, value: Any, accepted: str) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.bad(path, f"must be a non-empty string (got {_shown(value)})", accepted)
            return None
        return value.strip()

    def get_table(self, path: KeyPath, value: Any, accepted: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.bad(path, f"must be a table (got {_shown(value)})", accepted)
            return None
        return value

    def _parse_each(
        self,
        path: KeyPath,
        value: Any,
        accepted: str,
        empty: str,
        noun: str,
        parse: Callable[[str], T],
    ) -> list[T] | None:
        """A non-empty list of strings, each parsed; every bad item is reported with its
        index. None when anything was wrong (the problems are recorded)."""
        items = self.get_list(path, value, accepted)
        if items is None:
            return None
        if not items:
            self.bad(path, empty, accepted)
            return None
        parsed: list[T] = []
        for i, item in enumerate(items):
            try:
                if not isinstance(item, str):
                    raise ValueError(f"{_shown(item)} is not {noun}")
                parsed.append(parse(item))
            except ValueError as exc:
                self.bad((*path, i), reason(exc), accepted)
        return parsed if len(parsed) == len(items) else None

    def get_list(self, path: KeyPath, value: Any, accepted: str) -> list[Any] | None:
        if not isinstance(value, list):
            self.bad(path, f"must be a list (got {_shown(value)})", accepted)
            return None
        return value

    def get_duration(self, path: KeyPath, value: Any, *, zero_ok: bool = False) -> timedelta | None:
        accepted = DURATION_ACCEPTED + (', or "0s"' if zero_ok else "")
        if not isinstance(value, str):
            self.bad(path, f"must be a duration string with a unit (got {_shown(value)})", accepted)
            return None
        try:
            duration = parse_duration(value)
        except ValueError as exc:
            self.bad(
                path,
                reason(exc) if repr(value) in str(exc) else f"{value!r}: {reason(exc)}",
                accepted,
            )
            return None
        if duration < timedelta(0) or (duration == timedelta(0) and not zero_ok):
            self.bad(
                path,
                f"{value!r} must be {'zero or more' if zero_ok else 'more than zero'}",
                accepted,
            )
            return None
        return duration

    def get_int(self, path: KeyPath, value: Any, *, minimum: int) -> int | None:
        accepted = f"a whole number >= {minimum}"
        if isinstance(value, bool) or not isinstance(value, int):
            self.bad(path, f"must be a whole number (got {_shown(value)})", accepted)
            return None
        if value < minimum:
            self.bad(path, f"{value} is too small", accepted)
            return None
        return value

    def get_positive(self, path: KeyPath, value: Any) -> float | None:
        accepted = "a number > 0"
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.bad(path, f"must be a number (got {_shown(value)})", accepted)
            return None
        if not value > 0:
            self.bad(path, f"{value} must be more than zero", accepted)
            return None
        if not math.isfinite(value):
            self.bad(path, f"{value} must be a finite number", accepted)
            return None
        return float(value)

    def get_when(self, path: KeyPath, value: Any, zone: ZoneInfo | None) -> datetime | None:
        try:
            return parse_when(value, zone=zone)
        except ValueError as exc:
            self.bad(path, reason(exc), DATETIME)
            return None

    def unknown_keys(self, path: KeyPath, table: Mapping[str, Any], known: Sequence[str]) -> None:
        for key in table:
            if key not in known:
                self.bad(
                    (*path, key),
                    f"unknown key {key!r}" + did_you_mean(key, known),
                    "one of: " + ", ".join(known),
                )


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _misspelt_special(key: str) -> str | None:
    """The special column ``key`` is one typo away from (``timezon``, ``phnoe``), if any.

    Closer than difflib's similarity on purpose: ``appointment_day`` is a sensible variable
    next to ``appointment_at``, not a typo of it.
    """
    folded = key.strip().lower().replace(" ", "_").replace("-", "_")
    if not folded or key in SPECIAL_COLUMNS:
        return None
    for special in SPECIAL_COLUMNS:
        if special in _NO_TYPO_CHECK:
            continue
        if folded == special or _typo_distance(folded, special) == 1:
            return special
    return None


def _typo_distance(a: str, b: str) -> int:
    """Edit distance counting a swap of two neighbours as one edit (optimal string alignment)."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            current[j] = min(
                previous[j] + 1,
                current[j - 1] + 1,
                previous[j - 1] + (ca != cb),
            )
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[len(b)]


def _as_date(value: Any) -> date | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_ONLY.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _holiday_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"{_shown(value)} is not a region code"
    country, _, subdivision = value.partition("-")
    try:
        holidays.country_holidays(country, subdiv=subdivision or None)
    except NotImplementedError:
        if subdivision:
            return f"no holiday calendar for {value!r} (subdivision {subdivision!r} of {country})"
        return f"no holiday calendar for {value!r}"
    return None


def _collapse(problems: list[Problem]) -> list[Problem]:
    """Keep the first MAX_REPEATS of each (file, field, message-kind), then one summary.

    A template variable missing from a 10 000-row CSV is one mistake, not 10 000 lines of
    output; the summary still says how many rows and which lines.
    """
    groups: dict[tuple[str, str, str], list[Problem]] = {}
    for problem in problems:
        kind = re.sub(r"\+\d+|'[^']*'|\d+", "#", problem.message)
        groups.setdefault((str(problem.file), problem.field, kind), []).append(problem)
    kept: list[Problem] = []
    for group in groups.values():
        kept.extend(group[:MAX_REPEATS])
        rest = group[MAX_REPEATS:]
        if rest:
            lines = [p.line for p in rest if p.line is not None]
            span = f" (lines {min(lines)}-{max(lines)})" if lines else ""
            kept.append(
                Problem(
                    file=rest[0].file,
                    field=rest[0].field,
                    line=rest[0].line,
                    message=f"… and {len(rest)} more like the above{span}",
                    accepted=rest[0].accepted,
                )
            )
    kept.sort(key=lambda p: (str(p.file), p.line or 0))
    return kept
