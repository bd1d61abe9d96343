"""The contacts of a campaign: [[contacts]] tables or the rows of its contacts CSV, checked.

Each contact is checked (phone, variables, zone, timing, templates; a number seen before is a
duplicate, warned about and dropped). The rows of a CSV are read as they are checked and kept
compactly (:mod:`dialer.campaign.compact`).
"""

from __future__ import annotations

import csv
import difflib
import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from dialer import phones
from dialer.campaign.compact import (
    _BOM,
    _CsvContacts,
    _CsvLayout,
    _Kept,
    _LineFeed,
    _resolve,
    _SeenKeys,
)
from dialer.campaign.records import _NO_TIMING, Contact, UnknownTimezone
from dialer.campaign.values import (
    DATETIME,
    SPECIAL_COLUMNS,
    TIMING_COLUMNS,
    ZONE,
    _Checks,
    _misspelt_special,
    _shown,
    _text,
    _zone_problem,
    parse_when,
)
from dialer.errors import Problem
from dialer.policy.calendars import contact_calendar, phone_country
from dialer.policy.reminders import ContactTiming, reminder_key, timing_bounds
from dialer.policy.timezones import calling_code
from dialer.suppression import FileStamp, file_stamp
from dialer.templating import TemplateIssue, TemplateTree
from dialer.tomlsource import (
    KeyPath,
    decode_utf8,
    dotted,
    read_bytes,
    reason,
    unreadable_record,
)

if TYPE_CHECKING:
    # what csv.reader returns: typeshed names it only in the private _csv module
    from _csv import Reader as _CsvReader

_CSV_ACCEPTED = "a header row naming the columns, with a phone column: phone,name,…"
_SUBDIVISION = (
    'the code of a subdivision of the number\'s country, e.g. "BY" (Bavaria) for a German '
    'number, "CA" (California) for a US one; or no value'
)
_UTC = ZoneInfo("UTC")

#: the key_lines of every CSV row (shared: a dict per row of a million-row file adds up)
_NO_KEY_LINES: Mapping[str, int] = MappingProxyType({})


@dataclass(slots=True)
class _RawContact:
    """One contact before checking: where it is and its values."""

    file: Path
    line: int
    values: dict[str, Any]
    #: the TOML key path of this contact (inline contacts), for per-key lines and field names
    path: KeyPath | None
    #: the line of each key (inline contacts); a CSV row is all on its own line
    key_lines: Mapping[str, int] = field(default_factory=lambda: _NO_KEY_LINES)
    #: a CSV row's bytes in the file: [start, end)
    span: tuple[int, int] | None = None


class _ZoneCache:
    """Each number's time zone, resolved once per what the resolution depends on.

    A million-row CSV has few distinct (candidate zones, explicit zone, country) triples: the
    cache spares :func:`_resolve` (and its ZoneInfo look-ups) for nearly every row.
    """

    __slots__ = ("_campaign_zone", "_unknown_policy", "_zones")

    def __init__(self, *, campaign_zone: str | None, unknown_policy: UnknownTimezone) -> None:
        self._campaign_zone = campaign_zone
        self._unknown_policy = unknown_policy
        self._zones: dict[tuple[tuple[str, ...], str | None, int | None], ZoneInfo | None] = {}

    def zone(
        self, phone: str, candidates: tuple[str, ...], explicit: str | None
    ) -> ZoneInfo | None:
        # several candidates: whether the campaign's zone applies depends on the number's
        # country too (calling_code is cheap, parsing again is not)
        country = calling_code(phone) if len(candidates) > 1 else None
        key = (candidates, explicit, country)
        if key in self._zones:
            return self._zones[key]
        zone = self._zones[key] = _resolve(
            phone,
            candidates,
            explicit=explicit,
            campaign_zone=self._campaign_zone,
            unknown_policy=self._unknown_policy,
        )
        return zone


class _ContactReader:
    """Reads the contacts of one campaign file and checks each, into the problems and
    warnings of the file's checks."""

    def __init__(self, checks: _Checks) -> None:
        self.checks = checks
        self.csv_bytes = b""
        #: the contacts CSV and its stamp taken before it was read (the daemon watches it)
        self.csv_stamp: tuple[Path, FileStamp | None] | None = None
        #: set once a contacts CSV's header has been read
        self.csv_layout: _CsvLayout | None = None

    # -- raw contacts --------------------------------------------------------------------
    def raw_contacts(self, data: Mapping[str, Any]) -> Iterable[_RawContact]:
        assert self.checks.source is not None
        source = self.checks.source
        accepted = '[[contacts]] tables, or contacts_file = "contacts.csv" (one of the two)'
        if "contacts" in data and "contacts_file" in data:
            self.checks.bad(("contacts_file",), "contacts and contacts_file are both set", accepted)
            return []
        if "contacts" not in data and "contacts_file" not in data:
            self.checks.bad(("contacts",), "the campaign has no contacts", accepted)
            return []
        if "contacts_file" in data:
            return self.csv_contacts(data["contacts_file"])
        items = self.checks.get_list(("contacts",), data["contacts"], accepted)
        if items is None:
            return []
        if not items:
            self.checks.bad(("contacts",), "is empty", accepted)
        raw: list[_RawContact] = []
        for i, item in enumerate(items):
            path: KeyPath = ("contacts", i)
            if not isinstance(item, dict):
                self.checks.bad(path, f"must be a table (got {_shown(item)})", accepted)
                continue
            raw.append(
                _RawContact(
                    file=self.checks.path,
                    line=source.line(path) or 0,
                    values=dict(item),
                    path=path,
                    key_lines={key: source.line((*path, key)) for key in item},
                )
            )
        return raw

    def csv_contacts(self, value: Any) -> Iterator[_RawContact]:
        """The rows of the contacts CSV, read as they are checked (never all held at once).

        Each row carries its byte span in the file: the campaign keeps the file's bytes and
        rebuilds a contact from its row when asked (see :class:`_CsvContacts`). The file and
        its header are read at once; the rows as the iterator is consumed.
        """
        found = self.read_csv(value)
        if found is None:
            return iter(())
        path, data, delimiter = found
        feed = _LineFeed(data, len(_BOM) if data.startswith(_BOM) else 0)
        # strict: a quote left open must be an error, never a field that swallows the rows
        # after it (and pastes them into one contact's variables). A cell may span lines (a
        # CRM's notes); a stray quote that swallows rows ends at a quote strict mode refuses,
        # at the end of the file, or in a row with the wrong number of fields.
        reader = csv.reader(feed, delimiter=delimiter, strict=True)
        header = self.csv_header(reader, path)
        columns = None if header is None else self.csv_columns(header, path)
        if columns is None:
            return iter(())
        self.warn_misspelt_columns(columns, path)
        self.csv_layout = _CsvLayout(
            data=data, source=path, columns=tuple(columns), delimiter=delimiter
        )
        return self.csv_rows(reader, feed, self.csv_layout)

    def read_csv(self, value: Any) -> tuple[Path, bytes, str] | None:
        """The contacts CSV's path, bytes and delimiter; None (reported) when unreadable."""
        accepted = 'a CSV file relative to this file, e.g. contacts_file = "contacts.csv"'
        name = self.checks.get_str(("contacts_file",), value, accepted)
        if name is None:
            return None
        path = self.checks.path.parent / name
        # stamped before the read: an edit saved while the file is read is seen as a change
        self.csv_stamp = (path, file_stamp(path))
        data = read_bytes(path, field="contacts_file")
        if isinstance(data, Problem):
            self.checks.bad(("contacts_file",), f"{name!r}: {data.message}", accepted)
            return None
        self.csv_bytes = data
        # Decoding the whole file first keeps the encoding problem the only one reported for
        # a non-UTF-8 file; the text itself is dropped at once (the rows are decoded again,
        # one at a time, by the reader).
        text = decode_utf8(data, path)
        if isinstance(text, Problem):
            self.checks.problems.append(text)
            return None
        header_line = text.split("\n", 1)[0]
        del text
        # Excel in much of Europe writes ";" (the comma is the decimal separator there)
        return path, data, max((",", ";", "\t"), key=header_line.count)

    def csv_header(self, reader: _CsvReader, path: Path) -> list[str] | None:
        """The CSV's first record; None (reported) when it is unreadable or missing."""
        try:
            header = next(reader, None)
        except csv.Error as exc:
            self.checks.problems.append(
                Problem(
                    file=path,
                    field="header",
                    line=1,
                    message=f"unreadable CSV: {exc}",
                    accepted=_CSV_ACCEPTED,
                )
            )
            return None
        if header is None:
            self.checks.problems.append(
                Problem(
                    file=path,
                    field="header",
                    line=1,
                    message="the file is empty",
                    accepted=_CSV_ACCEPTED,
                )
            )
        return header

    def csv_columns(self, header: list[str], path: Path) -> list[str] | None:
        """The column names (special ones lower-cased); None (reported) without a phone
        column or with a name used twice."""
        columns = [h.strip() for h in header]
        for i, column in enumerate(columns):
            if column.lower() in SPECIAL_COLUMNS:
                columns[i] = column.lower()
        ok = True
        if "phone" not in columns:
            close = difflib.get_close_matches("phone", [c.lower() for c in columns if c], n=1)
            hint = f"; rename {close[0]!r} to 'phone'?" if close else ""
            self.checks.problems.append(
                Problem(
                    file=path,
                    field="phone",
                    line=1,
                    message=f"no phone column (columns: {', '.join(columns) or 'none'}){hint}",
                    accepted=_CSV_ACCEPTED,
                )
            )
            ok = False
        seen: set[str] = set()
        for column in columns:
            if column and column in seen:
                self.checks.problems.append(
                    Problem(
                        file=path,
                        field=column,
                        line=1,
                        message=f"column {column!r} appears twice",
                        accepted=_CSV_ACCEPTED,
                    )
                )
                ok = False
            seen.add(column)
        return columns if ok else None

    def warn_misspelt_columns(self, columns: list[str], path: Path) -> None:
        for column in columns:
            special = _misspelt_special(column)
            if special:
                self.checks.warnings.append(
                    Problem(
                        file=path,
                        field=column,
                        line=1,
                        message=f"column {column!r} is only a template variable "
                        f"(did you mean {special!r}?)",
                    )
                )

    def csv_rows(
        self, reader: _CsvReader, feed: _LineFeed, layout: _CsvLayout
    ) -> Iterator[_RawContact]:
        """A raw contact per row after the header, each with its line and byte span; a row
        with the wrong number of fields, or a value under an unnamed column, is reported."""
        path, columns = layout.source, layout.columns
        problems = self.checks.problems
        unnamed = "" in columns
        rows = 0
        last = reader.line_num
        start = feed.pos
        try:
            for row in reader:
                line, last = last + 1, reader.line_num
                span, start = (start, feed.pos), feed.pos
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(columns):
                    problems.append(_ragged_row(layout, line, len(row)))
                    continue
                rows += 1
                values: dict[str, Any] = {}
                for column, cell in zip(columns, row, strict=True):
                    cell = cell.strip()
                    if unnamed and not column:
                        if cell:
                            problems.append(
                                Problem(
                                    file=path,
                                    field="header",
                                    line=line,
                                    message=f"value {cell!r} is in a column without a name",
                                    accepted=_CSV_ACCEPTED,
                                )
                            )
                        continue
                    if cell:
                        values[column] = cell
                yield _RawContact(file=path, line=line, values=values, path=None, span=span)
        except csv.Error as exc:
            # the record being read began after the last one read whole
            problems.append(unreadable_record(path, last + 1, reader.line_num, exc))
        # rows refused above are reported already: "only a header" would be wrong about them
        if not rows and not any(p.file == path and p.field == "row" for p in problems):
            problems.append(
                Problem(
                    file=path,
                    field="phone",
                    line=1,
                    message="has no contacts (only a header)",
                    accepted="one row per contact under the header",
                )
            )

    # -- checking each contact -----------------------------------------------------------
    def contacts(
        self,
        raw: Iterable[_RawContact],
        *,
        region: str | None,
        timezone: str | None,
        unknown_timezone: UnknownTimezone,
        templates: TemplateTree | None,
        call_before: timedelta | None,
        expires_at: datetime | None,
        contact_holidays: bool = False,
    ) -> Sequence[Contact]:
        """Check every contact; the kept ones (first of each number) in file order.

        ``contact_holidays``: the window closes on each contact's own public holidays, so its
        subdivision must be one of its country's.

        Runs once per row of a CSV of any size, so it keeps per contact only what
        :class:`_CsvContacts` needs (numbers in arrays), resolves zones through a
        :class:`_ZoneCache`, and calls the steps only some contacts need only for those.
        """
        inline: list[Contact] = []
        kept = _Kept()
        #: the digests of the reminder keys seen (see key_digest)
        seen = _SeenKeys(self.csv_layout.data.count(b"\n") if self.csv_layout else 0)
        # (index in the warnings, key digest, key, contact) of each duplicate: its warning
        # names the line of the first contact with the key, looked up once at the end
        duplicates: list[tuple[int, int, str, _RawContact]] = []
        zones = _ZoneCache(campaign_zone=timezone, unknown_policy=unknown_timezone)
        no_calendar = _NoCalendar()
        for item in raw:
            values = item.values
            if item.path is not None:
                self.warn_misspelt_keys(item)
            phone, candidates = self.phone(item, region)
            # a CSV row's values are already stripped, non-empty strings
            variables = values if item.span is not None else self.inline_variables(item)
            zone_name = self.zone_name(item, variables) if "timezone" in variables else None
            zone: ZoneInfo | None = None
            if phone is not None:
                zone = zones.zone(phone, candidates, zone_name)
                if zone is None:
                    self.warn_no_zone(item, phone)
            timing = _NO_TIMING
            if not values.keys().isdisjoint(TIMING_COLUMNS):
                # with a bad number the zone is unknowable: UTC still checks the format
                when_zone = zone if phone is not None else _UTC
                timing = self.timing(
                    item, when_zone, call_before=call_before, expires_at=expires_at
                )
            if phone is None:
                continue
            if contact_holidays:
                self.holiday_calendar(item, phone, variables, no_calendar)
            variables["phone"] = phone
            if templates is not None:
                for issue in templates.check(variables):
                    self.template_problem(item, phone, issue)
            number = int(phone[1:])  # E.164 digits never start with 0: the int is exact
            contact_id = variables.get("id")
            key = number if contact_id is None and timing.appointment_at is None else None
            if key is None:
                key = key_digest(phone, contact_id, timing.appointment_at)
            if not seen.add(key):
                self.warn_duplicate(item, key, phone, contact_id, timing, duplicates)
                continue
            kept.add(number, key, item.line, item.span, zone)
            if item.span is None:
                inline.append(_inline_contact(item, phone, zone_name, timing, variables))
        seen.close()  # its memory back at once (an error on the way leaves it to the collector)
        if duplicates:
            self.word_duplicates(duplicates, kept)
        if no_calendar.first is not None:
            self.warn_no_calendar(no_calendar)
        if self.csv_layout is None or self.checks.problems:
            return tuple(inline)
        return _CsvContacts(self.csv_layout, kept)

    def report(
        self,
        item: _RawContact,
        key: str,
        message: str,
        accepted: str | None,
        *,
        warning: bool = False,
    ) -> None:
        """A problem (or a warning) of one contact's ``key``, at the line of that key."""
        problem = Problem(
            file=item.file,
            field=dotted((*item.path, key)) if item.path is not None else key,
            line=item.key_lines.get(key, item.line),
            message=message,
            accepted=accepted,
        )
        (self.checks.warnings if warning else self.checks.problems).append(problem)

    def warn_misspelt_keys(self, item: _RawContact) -> None:
        for key in item.values:
            special = _misspelt_special(key)
            if special:
                self.report(
                    item,
                    key,
                    f"{key!r} is only a template variable (did you mean {special!r}?)",
                    None,
                    warning=True,
                )

    def phone(self, item: _RawContact, region: str | None) -> tuple[str | None, tuple[str, ...]]:
        """The contact's number in E.164 and its candidate zones; None (reported) if unusable."""
        values = item.values
        if "phone" not in values:
            self.report(item, "phone", "is required", phones.ACCEPTED)
        elif not isinstance(values["phone"], str):
            self.report(
                item,
                "phone",
                f"must be a string in quotes (got {_shown(values['phone'])})",
                phones.ACCEPTED,
            )
        else:
            try:
                return phones.normalize_with_zones(values["phone"], region=region)
            except ValueError as exc:
                self.report(item, "phone", f"number {exc}", phones.ACCEPTED)
        return None, ()

    def inline_variables(self, item: _RawContact) -> dict[str, str]:
        """An inline contact's values as template text, without the empty ones."""
        variables: dict[str, str] = {}
        for key, value in item.values.items():
            if isinstance(value, dict | list):
                self.report(
                    item,
                    key,
                    f"must be a single value (got {_shown(value)})",
                    "text, a number, a boolean or a date",
                )
                continue
            text = _text(value).strip() if not isinstance(value, str) else value.strip()
            if text:
                variables[key] = text
        return variables

    def zone_name(self, item: _RawContact, variables: Mapping[str, str]) -> str | None:
        """The contact's own time zone (its timezone value); None (reported) if unknown."""
        zone_name = variables["timezone"]
        if (problem := _zone_problem(zone_name)) is not None:
            self.report(item, "timezone", problem, ZONE)
            return None
        return zone_name

    def warn_no_zone(self, item: _RawContact, phone: str) -> None:
        self.report(
            item,
            "phone",
            f"{phone}: no time zone can be told from the number "
            "(it spans several); this contact will be skipped",
            "a timezone column/key for the contact, or the campaign timezone "
            'with unknown_timezone = "campaign"',
            warning=True,
        )

    def timing(
        self,
        item: _RawContact,
        zone: ZoneInfo | None,
        *,
        call_before: timedelta | None,
        expires_at: datetime | None,
    ) -> ContactTiming:
        """The contact's call_at / appointment_at / deadline, and a warning if it must expire."""
        values = item.values
        timing: dict[str, datetime | None] = dict.fromkeys(TIMING_COLUMNS)
        for key in TIMING_COLUMNS:
            if key in values and values[key] != "":
                try:
                    timing[key] = parse_when(values[key], zone=zone)
                except ValueError as exc:
                    self.report(item, key, reason(exc), DATETIME)
        contact_timing = ContactTiming(**timing)
        not_before, deadline = timing_bounds(
            contact_timing, call_before=call_before, expires_at=expires_at
        )
        if not_before is not None and deadline is not None and not_before >= deadline:
            self.report(
                item,
                next(k for k in TIMING_COLUMNS if timing[k] is not None),
                "the contact would be called no earlier than "
                f"{not_before.isoformat()} but must be called before "
                f"{deadline.isoformat()}: it will expire without a call",
                None,
                warning=True,
            )
        return contact_timing

    def template_problem(self, item: _RawContact, phone: str, issue: TemplateIssue) -> None:
        self.checks.problems.append(
            Problem(
                file=item.file,
                line=item.line,
                field=issue.field,
                message=f"contact {phone}: {issue.message}",
                accepted="every {{ variable }} of the templates in each contact",
            )
        )

    def warn_duplicate(
        self,
        item: _RawContact,
        key: int,
        phone: str,
        contact_id: str | None,
        timing: ContactTiming,
        duplicates: list[tuple[int, int, str, _RawContact]],
    ) -> None:
        """A warning without words yet: :meth:`word_duplicates` names the first contact."""
        shown = reminder_key(
            phone=phone, contact_id=contact_id, appointment_at=timing.appointment_at
        )
        duplicates.append((len(self.checks.warnings), key, shown, item))
        self.report(item, "id" if contact_id is not None else "phone", "", None, warning=True)

    def word_duplicates(
        self, duplicates: list[tuple[int, int, str, _RawContact]], kept: _Kept
    ) -> None:
        """Each duplicate's warning names the line of the first contact with its key."""
        warnings = self.checks.warnings
        for index, key, shown, item in duplicates:
            warnings[index] = replace(
                warnings[index],
                message=f"{shown} is already a contact (line {kept.first_line(key)} of "
                f"{item.file.name}); this one is ignored",
            )

    def holiday_calendar(
        self, item: _RawContact, phone: str, variables: Mapping[str, str], without: _NoCalendar
    ) -> None:
        """Check the contact's own public-holiday calendar (holidays = ["contact"]): its
        subdivision must be one of its country's; a contact of a country the holidays
        package has no calendar for is counted in ``without``, for one warning."""
        try:
            calendar = contact_calendar(phone, variables.get("subdivision"))
        except ValueError as exc:
            self.report(item, "subdivision", str(exc), _SUBDIVISION)
            return
        if calendar is None:
            without.add(item, phone_country(phone) or f"+{calling_code(phone)}")

    def warn_no_calendar(self, without: _NoCalendar) -> None:
        assert without.first is not None
        count = sum(without.countries.values())
        countries = ", ".join(f"{c} ({n})" for c, n in without.countries.most_common())
        self.report(
            without.first,
            "phone",
            f"{count} contact{'s' if count > 1 else ''} (the first on this line) "
            f"{'are' if count > 1 else 'is'} in a country the holidays package has no "
            f"calendar for ({countries}): no public holiday closes their window",
            None,
            warning=True,
        )


@dataclass(slots=True)
class _NoCalendar:
    """The contacts whose country has no public-holiday calendar: counted for one warning."""

    first: _RawContact | None = None
    countries: Counter[str] = field(default_factory=Counter)

    def add(self, item: _RawContact, country: str) -> None:
        if self.first is None:
            self.first = item
        self.countries[country] += 1


def _inline_contact(
    item: _RawContact,
    phone: str,
    zone_name: str | None,
    timing: ContactTiming,
    variables: dict[str, str],
) -> Contact:
    return Contact(
        phone=phone,
        name=variables.get("name"),
        timezone=zone_name,
        timing=timing,
        variables=MappingProxyType(variables),
        source=item.file,
        line=item.line,
    )


def _ragged_row(layout: _CsvLayout, line: int, fields: int) -> Problem:
    expected = len(layout.columns)
    return Problem(
        file=layout.source,
        field="row",
        line=line,
        message=f"has {fields} fields, the header has {expected}",
        accepted=f"{expected} {layout.delimiter!r}-separated fields per row "
        "(quote fields that contain the separator)",
    )


def key_digest(phone: str, contact_id: str | None, appointment_at: datetime | None) -> int:
    """A number that stands for the contact's reminder key in the set of keys seen.

    A contact keyed by its phone alone is its E.164 digits (as exact as the number); a key
    with an id or an appointment is 128 bits of its BLAKE2 digest with the top bit set (never a
    phone's digits): a million keys kept as text would cost ~100 MB, and two distinct keys
    sharing a digest is a chance of one in 2**100 at that size."""
    key = reminder_key(phone=phone, contact_id=contact_id, appointment_at=appointment_at)
    digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
    return int.from_bytes(digest, "big") | (1 << 127)
