"""The contacts of a campaign: [[contacts]] tables or the rows of its contacts CSV, checked.

Each contact is checked (phone, variables, zone, timing, templates; a number seen before is a
duplicate, warned about and dropped). The rows of a CSV are read as they are checked and kept
compactly (:mod:`dialer.campaign.compact`).
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from dialer import phones
from dialer.campaign.compact import _BOM, _CsvContacts, _CsvLayout, _Kept, _LineFeed, _resolve
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
from dialer.policy.reminders import ContactTiming, timing_bounds
from dialer.policy.timezones import calling_code
from dialer.templating import TemplateTree
from dialer.tomlsource import (
    KeyPath,
    decode_utf8,
    dotted,
    read_bytes,
    reason,
    unreadable_record,
)

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


class _ContactReader:
    """Reads the contacts of one campaign file and checks each, into the problems and
    warnings of the file's checks."""

    def __init__(self, checks: _Checks) -> None:
        self.checks = checks
        self.csv_bytes = b""
        #: set once a contacts CSV's header has been read
        self.csv_layout: _CsvLayout | None = None

    # -- contacts ------------------------------------------------------------------------
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
        rebuilds a contact from its row when asked (see :class:`_CsvContacts`).
        """
        accepted = 'a CSV file relative to this file, e.g. contacts_file = "contacts.csv"'
        name = self.checks.get_str(("contacts_file",), value, accepted)
        if name is None:
            return
        path = self.checks.path.parent / name
        data = read_bytes(path, field="contacts_file")
        if isinstance(data, Problem):
            self.checks.bad(("contacts_file",), f"{name!r}: {data.message}", accepted)
            return
        self.csv_bytes = data
        # Decoding the whole file first keeps the encoding problem the only one reported for
        # a non-UTF-8 file; the text itself is dropped at once (the rows are decoded again,
        # one at a time, below).
        text = decode_utf8(data, path)
        if isinstance(text, Problem):
            self.checks.problems.append(text)
            return
        header_line = text.split("\n", 1)[0]
        del text
        # Excel in much of Europe writes ";" (the comma is the decimal separator there)
        delimiter = max((",", ";", "\t"), key=header_line.count)
        feed = _LineFeed(data, len(_BOM) if data.startswith(_BOM) else 0)
        # strict: a quote left open must be an error, never a field that swallows the rows
        # after it (and pastes them into one contact's variables). A cell may span lines (a
        # CRM's notes); a stray quote that swallows rows ends at a quote strict mode refuses,
        # at the end of the file, or in a row with the wrong number of fields.
        reader = csv.reader(feed, delimiter=delimiter, strict=True)
        csv_accepted = "a header row naming the columns, with a phone column: phone,name,…"
        try:
            header = next(reader, None)
        except csv.Error as exc:
            self.checks.problems.append(
                Problem(
                    file=path,
                    field="header",
                    line=1,
                    message=f"unreadable CSV: {exc}",
                    accepted=csv_accepted,
                )
            )
            return
        if header is None:
            self.checks.problems.append(
                Problem(
                    file=path,
                    field="header",
                    line=1,
                    message="the file is empty",
                    accepted=csv_accepted,
                )
            )
            return
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
                    accepted=csv_accepted,
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
                        accepted=csv_accepted,
                    )
                )
                ok = False
            seen.add(column)
        if not ok:
            return
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
        self.csv_layout = _CsvLayout(
            data=data, source=path, columns=tuple(columns), delimiter=delimiter
        )
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
                    self.checks.problems.append(
                        Problem(
                            file=path,
                            field="row",
                            line=line,
                            message=f"has {len(row)} fields, the header has {len(columns)}",
                            accepted=f"{len(columns)} {delimiter!r}-separated fields per row "
                            "(quote fields that contain the separator)",
                        )
                    )
                    continue
                rows += 1
                values: dict[str, Any] = {}
                for column, cell in zip(columns, row, strict=True):
                    cell = cell.strip()
                    if unnamed and not column:
                        if cell:
                            self.checks.problems.append(
                                Problem(
                                    file=path,
                                    field="header",
                                    line=line,
                                    message=f"value {cell!r} is in a column without a name",
                                    accepted=csv_accepted,
                                )
                            )
                        continue
                    if cell:
                        values[column] = cell
                yield _RawContact(file=path, line=line, values=values, path=None, span=span)
        except csv.Error as exc:
            # the record being read began after the last one read whole
            self.checks.problems.append(unreadable_record(path, last + 1, reader.line_num, exc))
        # rows refused above are reported already: "only a header" would be wrong about them
        if not rows and not any(p.file == path and p.field == "row" for p in self.checks.problems):
            self.checks.problems.append(
                Problem(
                    file=path,
                    field="phone",
                    line=1,
                    message="has no contacts (only a header)",
                    accepted="one row per contact under the header",
                )
            )

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
    ) -> Sequence[Contact]:
        """Check every contact; the kept ones (first of each number) in file order.

        Runs once per row of a CSV of any size, so it keeps per contact only what
        :class:`_CsvContacts` needs (numbers in arrays) and resolves each number's time zone
        from a cache keyed by what the resolution depends on.
        """
        inline: list[Contact] = []
        kept = _Kept()
        seen: set[int] = set()
        # (index in self.checks.warnings, phone, line) of each duplicate: its message names the line
        # of the first contact with the number, looked up once at the end
        duplicates: list[tuple[int, int, _RawContact]] = []
        zones: dict[tuple[tuple[str, ...], str | None, int | None], ZoneInfo | None] = {}
        utc = ZoneInfo("UTC")
        for item in raw:

            def report(
                key: str,
                message: str,
                accepted: str | None,
                *,
                item: _RawContact = item,
                warning: bool = False,
            ) -> None:
                problem = Problem(
                    file=item.file,
                    field=dotted((*item.path, key)) if item.path is not None else key,
                    line=item.key_lines.get(key, item.line),
                    message=message,
                    accepted=accepted,
                )
                (self.checks.warnings if warning else self.checks.problems).append(problem)

            values = item.values
            if item.path is not None:
                for key in values:
                    special = _misspelt_special(key)
                    if special:
                        report(
                            key,
                            f"{key!r} is only a template variable (did you mean {special!r}?)",
                            None,
                            warning=True,
                        )

            phone: str | None = None
            candidates: tuple[str, ...] = ()
            if "phone" not in values:
                report("phone", "is required", phones.ACCEPTED)
            elif not isinstance(values["phone"], str):
                report(
                    "phone",
                    f"must be a string in quotes (got {_shown(values['phone'])})",
                    phones.ACCEPTED,
                )
            else:
                try:
                    phone, candidates = phones.normalize_with_zones(values["phone"], region=region)
                except ValueError as exc:
                    report("phone", f"number {exc}", phones.ACCEPTED)

            variables: dict[str, str]
            if item.span is not None:
                # a CSV row: already stripped, non-empty strings
                variables = values
            else:
                variables = {}
                for key, value in values.items():
                    if isinstance(value, dict | list):
                        report(
                            key,
                            f"must be a single value (got {_shown(value)})",
                            "text, a number, a boolean or a date",
                        )
                        continue
                    text = _text(value).strip() if not isinstance(value, str) else value.strip()
                    if text:
                        variables[key] = text

            name = variables.get("name")
            zone_name: str | None = None
            if "timezone" in variables:
                zone_name = variables["timezone"]
                if (problem := _zone_problem(zone_name)) is not None:
                    report("timezone", problem, ZONE)
                    zone_name = None

            zone: ZoneInfo | None = None
            if phone is not None:
                # several candidates: whether the campaign's zone applies depends on the
                # number's country too (calling_code is cheap, parsing again is not)
                country = calling_code(phone) if len(candidates) > 1 else None
                zone_key = (candidates, zone_name, country)
                if zone_key in zones:
                    zone = zones[zone_key]
                else:
                    zone = zones[zone_key] = _resolve(
                        phone,
                        candidates,
                        explicit=zone_name,
                        campaign_zone=timezone,
                        unknown_policy=unknown_timezone,
                    )
                if zone is None:
                    report(
                        "phone",
                        f"{phone}: no time zone can be told from the number "
                        "(it spans several); this contact will be skipped",
                        "a timezone column/key for the contact, or the campaign timezone "
                        'with unknown_timezone = "campaign"',
                        warning=True,
                    )

            contact_timing = _NO_TIMING
            if not values.keys().isdisjoint(TIMING_COLUMNS):
                contact_timing = self.timing(
                    values,
                    report,
                    zone=zone if phone is not None else utc,
                    call_before=call_before,
                    expires_at=expires_at,
                )

            if phone is None:
                continue
            variables["phone"] = phone
            if templates is not None:
                for issue in templates.check(variables):
                    self.checks.problems.append(
                        Problem(
                            file=item.file,
                            line=item.line,
                            field=issue.field,
                            message=f"contact {phone}: {issue.message}",
                            accepted="every {{ variable }} of the templates in each contact",
                        )
                    )
            number = int(phone[1:])  # E.164 digits never start with 0: the int is exact
            if number in seen:
                duplicates.append((len(self.checks.warnings), number, item))
                report("phone", "", None, warning=True)  # the message is written below
                continue
            seen.add(number)
            kept.add(number, item, zone)
            if item.span is None:
                inline.append(
                    Contact(
                        phone=phone,
                        name=name,
                        timezone=zone_name,
                        timing=contact_timing,
                        variables=MappingProxyType(variables),
                        source=item.file,
                        line=item.line,
                    )
                )
        if duplicates:
            first = kept.first_lines({number for _, number, _ in duplicates})
            for index, number, item in duplicates:
                self.checks.warnings[index] = replace(
                    self.checks.warnings[index],
                    message=f"+{number} is already a contact (line {first[number]} of "
                    f"{item.file.name}); this one is ignored",
                )
        if self.csv_layout is None or self.checks.problems:
            return tuple(inline)
        return _CsvContacts(self.csv_layout, kept)

    def timing(
        self,
        values: Mapping[str, Any],
        report: Callable[..., None],
        *,
        zone: ZoneInfo | None,
        call_before: timedelta | None,
        expires_at: datetime | None,
    ) -> ContactTiming:
        """The contact's call_at / appointment_at / deadline, and a warning if it must expire."""
        timing: dict[str, datetime | None] = dict.fromkeys(TIMING_COLUMNS)
        for key in TIMING_COLUMNS:
            if key in values and values[key] != "":
                try:
                    # with a bad number the zone is unknowable (UTC is passed): still check
                    # the format
                    timing[key] = parse_when(values[key], zone=zone)
                except ValueError as exc:
                    report(key, reason(exc), DATETIME)
        contact_timing = ContactTiming(**timing)
        not_before, deadline = timing_bounds(
            contact_timing, call_before=call_before, expires_at=expires_at
        )
        if not_before is not None and deadline is not None and not_before >= deadline:
            report(
                next(k for k in TIMING_COLUMNS if timing[k] is not None),
                "the contact would be called no earlier than "
                f"{not_before.isoformat()} but must be called before "
                f"{deadline.isoformat()}: it will expire without a call",
                None,
                warning=True,
            )
        return contact_timing
