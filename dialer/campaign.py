"""Campaign files: TOML (+ an optional contacts CSV) -> frozen domain records.

    >>> campaign = load_campaign(Path("campaigns/appointment-reminders.toml"))
    >>> campaign.contacts[0].phone
    '+31612345601'
    >>> campaign.call_body(campaign.contacts[0], metadata={"dialer_attempt_id": 1})
    {'destination': '+31612345601', 'assistant_id': '…', 'assistant_override': {…}}

Loading is validation: every problem of the TOML file, its CSV and its do-not-call files is
collected and raised together as one :class:`~dialer.errors.CampaignError`, each with the file,
the line, the dotted field, what is wrong and what is accepted. Nothing is written anywhere.
Every key is documented in ``campaigns/README.md``.

The records here are plain frozen dataclasses; the store has its own tables
(:class:`dialer.store.ContactRecord`) and the engine maps between them. A contacts CSV is read
row by row and its contacts are not all kept as objects: ``Campaign.contacts`` is then a
sequence that rebuilds each contact from its checked row (a million-row file costs ~70 MB, not
~600; issue 6).
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import math
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar, overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import holidays
from apscheduler.triggers.base import BaseTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.date import DateTrigger  # type: ignore[import-untyped]

from dialer import phones
from dialer.errors import CampaignError, Problem
from dialer.policy.caps import FrequencyCap
from dialer.policy.durations import parse_duration
from dialer.policy.gate import DialRules
from dialer.policy.outcomes import PERMANENT_OUTCOMES, Outcome
from dialer.policy.reminders import ContactTiming, timing_bounds
from dialer.policy.retries import RetryPolicy, RetryRule
from dialer.policy.timezones import calling_code, campaign_zone_applies, zone_or_none
from dialer.policy.windows import CallingWindow, parse_days, parse_range
from dialer.suppression import FileStamp, file_stamp, read_suppression_file
from dialer.templating import TemplateIssue, TemplateTree
from dialer.tomlsource import (
    KeyPath,
    TomlSource,
    decode_utf8,
    did_you_mean,
    dotted,
    read_bytes,
    reason,
    unreadable_record,
)

__all__ = [
    "Campaign",
    "Contact",
    "load_campaign",
    "parse_when",
    "validate_paths",
]

UnknownTimezone = Literal["skip", "campaign"]

#: contact keys / CSV columns with a meaning of their own (all also become template variables)
SPECIAL_COLUMNS = ("phone", "name", "timezone", "call_at", "appointment_at", "deadline")
TIMING_COLUMNS = ("call_at", "appointment_at", "deadline")

#: after this many identical problems (same field, same message) only a summary follows
MAX_REPEATS = 20

DURATION = 'a duration such as "90s", "10m", "2h", "1d", "1h30m" or "1.5h"'
DATETIME = (
    'an ISO 8601 date and time, e.g. 2027-03-04T14:30:00+01:00, or "2027-03-04 14:30" for the '
    "local time of the contact (campaign start_at/expires_at: of the campaign timezone)"
)
ZONE = 'an IANA time zone such as "Europe/Amsterdam", "America/New_York" or "UTC"'
REGION = 'a two-letter region code such as "NL", "US" or "GB"'
NAME = "letters, digits, spaces, '.', '_' and '-', starting with a letter or digit (max 100)"


# ------------------------------------------------------------------------------------------
# records


#: the one ContactTiming of every contact without timing values (it is immutable)
_NO_TIMING = ContactTiming()


@dataclass(frozen=True, kw_only=True, slots=True)
class Contact:
    """One person to call, as read from the campaign (inline table or CSV row)."""

    phone: str  # E.164, via dialer.phones.normalize
    name: str | None = None
    timezone: str | None = None
    timing: ContactTiming = _NO_TIMING
    #: every key/column of the contact, ``name`` and ``phone`` included, for templates
    variables: Mapping[str, str] = field(default_factory=dict, hash=False)
    source: Path = Path("<memory>")
    line: int = 0


@dataclass(frozen=True, kw_only=True)
class Campaign:
    """A parsed campaign. Build with :func:`load_campaign`; direct construction is for tests."""

    name: str
    source: Path
    assistant_id: str | None = None
    assistant: Mapping[str, Any] | None = field(default=None, hash=False)
    assistant_override: Mapping[str, Any] | None = field(default=None, hash=False)
    number_id: str | None = None
    timezone: str | None = None
    unknown_timezone: UnknownTimezone = "skip"
    start_at: datetime | None = None
    cron: str | None = None
    max_concurrent_calls: int | None = None
    calls_per_minute: float | None = None
    window: CallingWindow = field(default_factory=CallingWindow.default, hash=False)
    retry: RetryPolicy = field(default_factory=RetryPolicy.default, hash=False)
    call_before: timedelta | None = None
    expires_at: datetime | None = None
    #: a tuple, or for a contacts CSV a sequence that rebuilds each contact from its row
    #: (see _CsvContacts): index, iterate and len() it, never rely on it being a tuple
    contacts: Sequence[Contact] = ()
    suppressed: frozenset[str] = frozenset()  # E.164, from the campaign's own DNC files
    #: those files with their stamps when read: the daemon reads one again when it changes
    suppression_files: tuple[tuple[Path, FileStamp | None], ...] = ()
    #: the default region the numbers (of the contacts, of those files) are read in
    region: str | None = None
    api_key_name: str = "default"
    definition_hash: str = ""
    warnings: tuple[Problem, ...] = ()
    #: the compiled templates; the loader passes the ones it validated the contacts with
    _templates: TemplateTree | None = field(default=None, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        # Compiled once per campaign; every call_body reuses them.
        if self._templates is None:
            object.__setattr__(
                self, "_templates", _compile(self.assistant, self.assistant_override)
            )

    @property
    def zone(self) -> ZoneInfo | None:
        return ZoneInfo(self.timezone) if self.timezone else None

    def render(self, contact: Contact) -> tuple[dict[str, Any] | None, list[TemplateIssue]]:
        """The assistant (transient) or assistant_override (hybrid) table for one contact."""
        if self._templates is None:
            return None, []
        rendered, issues = self._templates.render(contact.variables)
        issues = [*self._templates.issues, *issues]
        return dict(rendered), issues

    def call_body(
        self, contact: Contact, *, metadata: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The JSON body of ``POST /calls/outbound`` for one contact.

        ``metadata`` (attempt ids…) is merged into ``assistant_override.metadata`` (or
        ``assistant.metadata`` in transient mode), which VoiceDock echoes back in webhooks.
        Our keys win over same-named keys from the campaign file: the engine correlates on them.
        """
        rendered, issues = self.render(contact)
        if issues:
            raise CampaignError(
                [
                    Problem(
                        file=contact.source, line=contact.line, field=i.field, message=i.message
                    )
                    for i in issues
                ]
            )
        body: dict[str, Any] = {"destination": contact.phone}
        if metadata:
            table = dict(rendered or {})
            existing = table.get("metadata")
            table["metadata"] = {**(existing if isinstance(existing, Mapping) else {}), **metadata}
            rendered = table
        if self.assistant is not None:
            body["assistant"] = rendered
        else:
            body["assistant_id"] = self.assistant_id
            if rendered is not None:
                body["assistant_override"] = rendered
        if self.number_id is not None:
            body["number_id"] = self.number_id
        return body

    def dial_rules(self, *, frequency_cap: FrequencyCap | None = None) -> DialRules:
        """The rules the dial gate judges this campaign's contacts by (the frequency cap is
        the daemon's, across campaigns)."""
        return DialRules(
            window=self.window,
            timezone=self.timezone,
            unknown_timezone=self.unknown_timezone,
            call_before=self.call_before,
            expires_at=self.expires_at,
            frequency_cap=frequency_cap,
        )

    def trigger(self, *, now: datetime | None = None) -> BaseTrigger:
        """When the campaign's runs fire. APScheduler only fires; the policy decides each call.

        ``start_at`` -> one run then; ``cron`` -> a run per match, evaluated in the campaign
        timezone; neither -> one run now (the daemon remembers when it first saw the campaign).
        """
        if self.start_at is not None:
            return DateTrigger(run_date=self.start_at)
        if self.cron is not None:
            return CronTrigger.from_crontab(self.cron, timezone=self.zone or ZoneInfo("UTC"))
        return DateTrigger(run_date=now or datetime.now(UTC))


# ------------------------------------------------------------------------------------------
# public entry points


def load_campaign(path: Path, *, default_region: str | None = None) -> Campaign:
    """Read and check one campaign; CampaignError with EVERY problem found."""
    campaign, problems = _Loader(path, default_region).load()
    if problems or campaign is None:
        raise CampaignError(problems or [Problem(file=path, field="(file)", message="unreadable")])
    return campaign


def validate_paths(paths: Sequence[Path], *, default_region: str | None = None) -> list[Problem]:
    """Every problem of every file (and campaign names used twice); an empty list is success."""
    problems: list[Problem] = []
    seen: dict[str, Path] = {}
    for path in paths:
        campaign, found = _Loader(path, default_region).load()
        problems.extend(found)
        if campaign is None:
            continue
        first = seen.setdefault(campaign.name, path)
        if first != path:
            problems.append(
                Problem(
                    file=path,
                    field="name",
                    line=_name_line(path),
                    message=f"campaign name {campaign.name!r} is already used by {first}",
                    accepted="a name unique across all campaign files",
                )
            )
    return problems


def _name_line(path: Path) -> int | None:
    source = TomlSource.read(path)
    return source.line(("name",)) if isinstance(source, TomlSource) else None


# ------------------------------------------------------------------------------------------
# the loader

_TOP_KEYS = (
    "name",
    "description",
    "assistant_id",
    "assistant",
    "assistant_override",
    "number_id",
    "timezone",
    "unknown_timezone",
    "default_region",
    "contacts",
    "contacts_file",
    "start_at",
    "cron",
    "max_concurrent_calls",
    "calls_per_minute",
    "window",
    "retry",
    "call_before",
    "expires_at",
    "suppression_files",
    "key",
)
T = TypeVar("T")

_WINDOW_KEYS = ("days", "hours", "holidays", "skip_dates", "min_time_before_close")
_RETRY_RULE_KEYS = ("after", "max", "backoff", "jitter")
_NAME_RE = re.compile(r"\w[\w .-]{0,99}")
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_DOW_DIGITS = re.compile(r"\d")
#: a call whose outcome is unknown may have been answered: retrying it risks a double call
_NEVER_RETRIED = PERMANENT_OUTCOMES | {Outcome("unknown")}


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


class _Loader:
    def __init__(self, path: Path, default_region: str | None) -> None:
        self.path = path
        self.default_region = default_region
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.source: TomlSource | None = None
        self.csv_bytes = b""
        #: set once a contacts CSV's header has been read
        self.csv_layout: _CsvLayout | None = None

    # -- reporting -----------------------------------------------------------------------
    def bad(self, path: KeyPath, message: str, accepted: str | None = None) -> None:
        assert self.source is not None
        self.problems.append(self.source.problem(path, message, accepted=accepted))

    # -- typed getters: each returns None (and reports) when the value is unusable ---------
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
        accepted = DURATION + (', or "0s"' if zero_ok else "")
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

    # -- the file ------------------------------------------------------------------------
    def load(self) -> tuple[Campaign | None, list[Problem]]:
        source = TomlSource.read(self.path)
        if isinstance(source, Problem):
            return None, [source]
        self.source = source
        data = source.data
        self.unknown_keys((), data, _TOP_KEYS)

        name = None
        if "name" not in data:
            self.bad(("name",), "is required", NAME)
        else:
            name = self.get_str(("name",), data["name"], NAME)
            if name is not None and not _NAME_RE.fullmatch(name):
                self.bad(("name",), f"{name!r} is not a usable campaign name", NAME)
                name = None
        if "description" in data:
            self.get_str(("description",), data["description"], "a string")

        assistant_id, assistant, override = self.assistant(data)
        number_id = (
            self.get_str(("number_id",), data["number_id"], "the id of a VoiceDock number")
            if "number_id" in data
            else None
        )

        timezone = None
        if "timezone" in data:
            timezone = self.get_str(("timezone",), data["timezone"], ZONE)
            if timezone is not None and (problem := _zone_problem(timezone)):
                self.bad(("timezone",), problem, ZONE)
                timezone = None
        zone = ZoneInfo(timezone) if timezone else None

        unknown_timezone: UnknownTimezone = "skip"
        if "unknown_timezone" in data:
            value = data["unknown_timezone"]
            if value not in ("skip", "campaign"):
                self.bad(
                    ("unknown_timezone",),
                    f"{_shown(value)} is not a choice",
                    '"skip" (do not call) or "campaign" (use the campaign timezone)',
                )
            elif value == "campaign" and "timezone" not in data:
                self.bad(
                    ("unknown_timezone",),
                    '"campaign" needs the campaign timezone set',
                    'set timezone = "Europe/Amsterdam" (for example), or use "skip"',
                )
            else:
                unknown_timezone = value

        region = self.default_region
        if "default_region" in data:
            value = self.get_str(("default_region",), data["default_region"], REGION)
            if value is not None and (problem := _region_problem(value)):
                self.bad(("default_region",), problem, REGION)
            elif value is not None:
                region = value

        start_at, cron = self.schedule(data, zone)
        max_concurrent = (
            self.get_int(("max_concurrent_calls",), data["max_concurrent_calls"], minimum=1)
            if "max_concurrent_calls" in data
            else None
        )
        per_minute = (
            self.get_positive(("calls_per_minute",), data["calls_per_minute"])
            if "calls_per_minute" in data
            else None
        )
        window = self.window(data)
        retry = self.retry(data)
        call_before = (
            self.get_duration(("call_before",), data["call_before"])
            if "call_before" in data
            else None
        )
        expires_at = (
            self.get_when(("expires_at",), data["expires_at"], zone)
            if "expires_at" in data
            else None
        )
        suppressed, suppression_files = self.suppression(data, region)
        api_key_name = "default"
        if "key" in data:
            accepted = "a key name: letters, digits, '_' or '-'"
            value = self.get_str(("key",), data["key"], accepted)
            if value is not None and not _KEY_RE.fullmatch(value):
                self.bad(("key",), f"{value!r} is not a key name", accepted)
            elif value is not None:
                api_key_name = value

        # The templates are compiled here once; contacts are then rendered against them.
        templates = _compile(assistant, override)
        if templates is not None:
            for issue in templates.issues:
                self.bad(issue.path, issue.message, "Jinja2 syntax: {{ variable }}")

        raw_contacts = self.raw_contacts(data)
        contacts = self.contacts(
            raw_contacts,
            region=region,
            timezone=timezone,
            unknown_timezone=unknown_timezone,
            templates=templates,
            call_before=call_before,
            expires_at=expires_at,
        )

        if self.problems:
            return None, _collapse(self.problems)
        assert name is not None and window is not None and retry is not None
        digest = hashlib.sha256()
        for part in (source.raw, self.csv_bytes):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        campaign = Campaign(
            name=name,
            source=self.path,
            assistant_id=assistant_id,
            assistant=_frozen(assistant),
            assistant_override=_frozen(override),
            number_id=number_id,
            timezone=timezone,
            unknown_timezone=unknown_timezone,
            start_at=start_at,
            cron=cron,
            max_concurrent_calls=max_concurrent,
            calls_per_minute=per_minute,
            window=window,
            retry=retry,
            call_before=call_before,
            expires_at=expires_at,
            contacts=contacts,
            suppressed=suppressed,
            suppression_files=suppression_files,
            region=region,
            api_key_name=api_key_name,
            definition_hash=digest.hexdigest(),
            warnings=tuple(_collapse(self.warnings)),
            _templates=templates,
        )
        return campaign, []

    # -- sections ------------------------------------------------------------------------
    def assistant(
        self, data: Mapping[str, Any]
    ) -> tuple[str | None, dict[str, Any] | None, dict[str, Any] | None]:
        accepted = (
            'exactly one of assistant_id = "<saved assistant uuid>" or an [assistant] table '
            "(a transient assistant config)"
        )
        assistant_id = assistant = override = None
        if "assistant_id" in data and "assistant" in data:
            self.bad(("assistant",), "assistant_id and assistant are both set", accepted)
        elif "assistant_id" not in data and "assistant" not in data:
            self.bad(("assistant_id",), "is required (or an [assistant] table)", accepted)
        if "assistant_id" in data:
            assistant_id = self.get_str(
                ("assistant_id",), data["assistant_id"], "the id of a saved VoiceDock assistant"
            )
        if "assistant" in data:
            assistant = self.get_table(
                ("assistant",),
                data["assistant"],
                "a table with the assistant config (llm_config, …)",
            )
            if assistant is not None:
                self.api_table(("assistant",), assistant)
        if "assistant_override" in data:
            override = self.get_table(
                ("assistant_override",),
                data["assistant_override"],
                "a table of assistant fields to override",
            )
            if "assistant" in data and "assistant_id" not in data:
                self.bad(
                    ("assistant_override",),
                    "only applies to a saved assistant (assistant_id)",
                    "put these values into the [assistant] table itself",
                )
            if override is not None:
                self.api_table(("assistant_override",), override)
        return assistant_id, assistant, override

    def api_table(self, path: KeyPath, table: Mapping[str, Any]) -> None:
        """Checks for a table that is sent to VoiceDock as JSON."""
        if "metadata" in table and not isinstance(table["metadata"], dict):
            self.bad(
                (*path, "metadata"),
                f"must be a table (got {_shown(table['metadata'])})",
                'a table, e.g. metadata = { clinic = "north" }',
            )

        def walk(node: Any, where: KeyPath) -> None:
            if isinstance(node, dict):
                for key, item in node.items():
                    walk(item, (*where, key))
            elif isinstance(node, list):
                for index, item in enumerate(node):
                    walk(item, (*where, index))
            elif isinstance(node, datetime | date | time):
                # JSON has no dates; VoiceDock would get whatever a serialiser makes of it
                self.bad(
                    where,
                    f"is a TOML date/time ({_text(node)}), which JSON cannot carry",
                    f'a string, e.g. "{_text(node)}"',
                )

        walk(table, path)

    def schedule(
        self, data: Mapping[str, Any], zone: ZoneInfo | None
    ) -> tuple[datetime | None, str | None]:
        start_at = cron = None
        if "start_at" in data and "cron" in data:
            self.bad(
                ("cron",),
                "start_at and cron are both set",
                "start_at (one run), cron (repeating runs), or neither (run at once)",
            )
        if "start_at" in data:
            start_at = self.get_when(("start_at",), data["start_at"], zone)
        if "cron" in data:
            accepted = (
                'five fields "minute hour day month day-of-week", days of the week by name, '
                'e.g. "0 9 * * mon-fri"'
            )
            cron = self.get_str(("cron",), data["cron"], accepted)
            if cron is not None:
                fields = cron.split()
                if len(fields) == 5 and _DOW_DIGITS.search(fields[4]):
                    # Classic cron counts 0 = Sunday, APScheduler 0 = Monday: a number here
                    # would silently move every run by a day.
                    self.bad(
                        ("cron",),
                        f"day of week {fields[4]!r} is a number, which cron and "
                        "APScheduler read differently",
                        accepted,
                    )
                    cron = None
                elif zone is None:
                    self.bad(
                        ("cron",),
                        "needs the campaign timezone (cron runs in local time)",
                        'set timezone = "Europe/Amsterdam" (for example)',
                    )
                    cron = None
                else:
                    try:
                        CronTrigger.from_crontab(cron, timezone=zone)
                    except ValueError as exc:
                        self.bad(("cron",), f"{cron!r}: {exc}", accepted)
                        cron = None
        return start_at, cron

    def window(self, data: Mapping[str, Any]) -> CallingWindow | None:
        default = CallingWindow.default()
        if "window" not in data:
            return default
        table = self.get_table(("window",), data["window"], "a [window] table")
        if table is None:
            return None
        self.unknown_keys(("window",), table, _WINDOW_KEYS)
        ok = True
        days = default.days
        if "days" in table:
            chosen = self._parse_each(
                ("window", "days"),
                table["days"],
                'day names "mon".."sun" and ranges such as "mon-fri"',
                "is empty: no day to call on",
                "a day name",
                lambda item: parse_days([item]),
            )
            ok = ok and chosen is not None
            days = frozenset().union(*chosen) if chosen else days
        ranges = default.ranges
        if "hours" in table:
            parsed = self._parse_each(
                ("window", "hours"),
                table["hours"],
                '"HH:MM-HH:MM" ranges such as "09:00-12:00" (ending after midnight is ok)',
                "is empty: no time to call at",
                "a time range",
                parse_range,
            )
            ok = ok and parsed is not None
            ranges = tuple(parsed) if parsed else ranges
        regions: list[str] = []
        if "holidays" in table:
            accepted = 'country codes such as "NL", or country-subdivision such as "US-CA"'
            items = self.get_list(("window", "holidays"), table["holidays"], accepted)
            for i, item in enumerate(items or []):
                problem = _holiday_problem(item)
                if problem:
                    self.bad(("window", "holidays", i), problem, accepted)
                    ok = False
                else:
                    regions.append(item)
            ok = ok and items is not None
        skip: set[date] = set()
        if "skip_dates" in table:
            accepted = "dates such as 2027-12-24 (TOML dates or strings)"
            items = self.get_list(("window", "skip_dates"), table["skip_dates"], accepted)
            for i, item in enumerate(items or []):
                day = _as_date(item)
                if day is None:
                    self.bad(("window", "skip_dates", i), f"{_shown(item)} is not a date", accepted)
                    ok = False
                else:
                    skip.add(day)
            ok = ok and items is not None
        before_close = default.min_time_before_close
        if "min_time_before_close" in table:
            value = self.get_duration(
                ("window", "min_time_before_close"), table["min_time_before_close"], zero_ok=True
            )
            ok = ok and value is not None
            before_close = value if value is not None else before_close
        if not ok:
            return None
        try:
            return CallingWindow(
                days=days,
                ranges=ranges,
                holiday_regions=tuple(regions),
                skip_dates=frozenset(skip),
                min_time_before_close=before_close,
            )
        except ValueError as exc:
            self.bad(("window",), reason(exc), "see campaigns/README.md, [window]")
            return None

    def retry(self, data: Mapping[str, Any]) -> RetryPolicy | None:
        default = RetryPolicy.default()
        if "retry" not in data:
            return default
        table = self.get_table(("retry",), data["retry"], "a [retry] table")
        if table is None:
            return None
        ok = True
        max_attempts = default.max_attempts
        rules: dict[Outcome, RetryRule] = dict(default.rules)
        retryable = [o.value for o in Outcome if o not in _NEVER_RETRIED]
        for key, value in table.items():
            path: KeyPath = ("retry", key)
            if key == "max_attempts":
                got = self.get_int(path, value, minimum=1)
                ok = ok and got is not None
                max_attempts = got if got is not None else max_attempts
                continue
            if key not in {o.value for o in Outcome}:
                self.bad(
                    path,
                    f"unknown key {key!r}" + did_you_mean(key, ["max_attempts", *retryable]),
                    "max_attempts, or an outcome table: " + ", ".join(retryable),
                )
                ok = False
                continue
            outcome = Outcome(key)
            if outcome in _NEVER_RETRIED:
                why = (
                    "nobody knows whether that call reached the contact"
                    if outcome == Outcome("unknown")
                    else "it is a final outcome"
                )
                self.bad(
                    path,
                    f"{key!r} is never retried: {why}",
                    "an outcome table for one of: " + ", ".join(retryable),
                )
                ok = False
                continue
            rule = self.retry_rule(path, value, rules.get(outcome))
            if rule is None:
                ok = False
            else:
                rules[outcome] = rule
        if not ok:
            return None
        return RetryPolicy(max_attempts=max_attempts, rules=MappingProxyType(rules))

    def retry_rule(self, path: KeyPath, value: Any, base: RetryRule | None) -> RetryRule | None:
        table = self.get_table(path, value, "a table { after, max, backoff, jitter }")
        if table is None:
            return None
        self.unknown_keys(path, table, _RETRY_RULE_KEYS)
        ok = True
        after = base.after if base else None
        if "after" in table:
            after = self.get_duration((*path, "after"), table["after"])
            ok = ok and after is not None
        elif base is None:
            self.bad((*path, "after"), "is required for this outcome", DURATION)
            ok = False
        count = base.max if base else 1
        if "max" in table:
            got = self.get_int((*path, "max"), table["max"], minimum=0)
            ok = ok and got is not None
            count = got if got is not None else count
        backoff = base.backoff if base else 1.0
        if "backoff" in table:
            value = table["backoff"]
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 1 <= value < math.inf  # NaN compares False both ways
            ):
                self.bad(
                    (*path, "backoff"),
                    f"{_shown(value)} is not a factor >= 1",
                    "a number >= 1 (1 = the same delay every time, 2 = doubling)",
                )
                ok = False
            else:
                backoff = float(value)
        jitter = base.jitter if base else timedelta(0)
        if "jitter" in table:
            got_jitter = self.get_duration((*path, "jitter"), table["jitter"], zero_ok=True)
            ok = ok and got_jitter is not None
            jitter = got_jitter if got_jitter is not None else jitter
        if not ok or after is None:
            return None
        return RetryRule(after=after, max=count, backoff=backoff, jitter=jitter)

    def suppression(
        self, data: Mapping[str, Any], region: str | None
    ) -> tuple[frozenset[str], tuple[tuple[Path, FileStamp | None], ...]]:
        if "suppression_files" not in data:
            return frozenset(), ()
        accepted = 'a list of do-not-call files relative to this file, e.g. ["dnc.csv"]'
        items = self.get_list(("suppression_files",), data["suppression_files"], accepted)
        numbers: set[str] = set()
        files: list[tuple[Path, FileStamp | None]] = []
        for i, item in enumerate(items or []):
            path: KeyPath = ("suppression_files", i)
            name = self.get_str(path, item, accepted)
            if name is None:
                continue
            full = self.path.parent / name
            if not full.is_file():
                self.bad(path, f"no such file {name!r}", accepted)
                continue
            files.append((full, file_stamp(full)))  # before the read: a change during it counts
            found, issues = read_suppression_file(full, default_region=region)
            numbers |= found
            self.problems.extend(issues)
        return frozenset(numbers), tuple(files)

    # -- contacts ------------------------------------------------------------------------
    def raw_contacts(self, data: Mapping[str, Any]) -> Iterable[_RawContact]:
        assert self.source is not None
        source = self.source
        accepted = '[[contacts]] tables, or contacts_file = "contacts.csv" (one of the two)'
        if "contacts" in data and "contacts_file" in data:
            self.bad(("contacts_file",), "contacts and contacts_file are both set", accepted)
            return []
        if "contacts" not in data and "contacts_file" not in data:
            self.bad(("contacts",), "the campaign has no contacts", accepted)
            return []
        if "contacts_file" in data:
            return self.csv_contacts(data["contacts_file"])
        items = self.get_list(("contacts",), data["contacts"], accepted)
        if items is None:
            return []
        if not items:
            self.bad(("contacts",), "is empty", accepted)
        raw: list[_RawContact] = []
        for i, item in enumerate(items):
            path: KeyPath = ("contacts", i)
            if not isinstance(item, dict):
                self.bad(path, f"must be a table (got {_shown(item)})", accepted)
                continue
            raw.append(
                _RawContact(
                    file=self.path,
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
        name = self.get_str(("contacts_file",), value, accepted)
        if name is None:
            return
        path = self.path.parent / name
        data = read_bytes(path, field="contacts_file")
        if isinstance(data, Problem):
            self.bad(("contacts_file",), f"{name!r}: {data.message}", accepted)
            return
        self.csv_bytes = data
        # Decoding the whole file first keeps the encoding problem the only one reported for
        # a non-UTF-8 file; the text itself is dropped at once (the rows are decoded again,
        # one at a time, below).
        text = decode_utf8(data, path)
        if isinstance(text, Problem):
            self.problems.append(text)
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
            self.problems.append(
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
            self.problems.append(
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
            self.problems.append(
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
                self.problems.append(
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
                self.warnings.append(
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
                    self.problems.append(
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
                            self.problems.append(
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
            self.problems.append(unreadable_record(path, last + 1, reader.line_num, exc))
        # rows refused above are reported already: "only a header" would be wrong about them
        if not rows and not any(p.file == path and p.field == "row" for p in self.problems):
            self.problems.append(
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
        # (index in self.warnings, phone, line) of each duplicate: its message names the line
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
                (self.warnings if warning else self.problems).append(problem)

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
                    self.problems.append(
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
                duplicates.append((len(self.warnings), number, item))
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
                self.warnings[index] = replace(
                    self.warnings[index],
                    message=f"+{number} is already a contact (line {first[number]} of "
                    f"{item.file.name}); this one is ignored",
                )
        if self.csv_layout is None or self.problems:
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


# ------------------------------------------------------------------------------------------
# contacts kept compactly

_BOM = b"\xef\xbb\xbf"
#: the line ends of io's newline="" mode, which csv wants: \r\n, \r or \n
_EOL = re.compile(rb"\r\n?|\n")


def _resolve(
    phone: str,
    candidates: tuple[str, ...],
    *,
    explicit: str | None,
    campaign_zone: str | None,
    unknown_policy: UnknownTimezone,
) -> ZoneInfo | None:
    """``resolve_zone(phone, ...).zone`` for a number whose candidate zones are known.

    The same rules as :func:`dialer.policy.timezones.resolve_zone` (the engine's, at call
    time; a test holds the two equal), without parsing the number again.
    """
    if explicit:
        return zone_or_none(explicit)
    if len(candidates) == 1 and (only := zone_or_none(candidates[0])) is not None:
        return only
    campaign = zone_or_none(campaign_zone)
    if (
        campaign is not None
        and candidates
        and campaign_zone_applies(campaign.key, phone, candidates)
    ):
        return campaign
    if unknown_policy == "campaign" and campaign is not None:
        return campaign
    return None


class _LineFeed:
    """The lines of a CSV's bytes for csv.reader, decoded one at a time; ``pos`` is where the
    next line starts, so the reader's caller knows each record's byte span."""

    def __init__(self, data: bytes, start: int) -> None:
        self.data = data
        self.pos = start
        # a file without a lone \r (nearly all) is split by bytes.find, the faster way
        self._plain = data.count(b"\r") == data.count(b"\r\n")

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        data, pos = self.data, self.pos
        if pos >= len(data):
            raise StopIteration
        if self._plain:
            end = data.find(b"\n", pos) + 1 or len(data)
        else:
            found = _EOL.search(data, pos)
            end = found.end() if found else len(data)
        self.pos = end
        return data[pos:end].decode("utf-8")


@dataclass(frozen=True, kw_only=True)
class _CsvLayout:
    """What every row of one contacts CSV shares."""

    data: bytes  # the whole file (also what the campaign's definition hash covers)
    source: Path
    columns: tuple[str, ...]
    delimiter: str


class _Kept:
    """The kept contacts as numbers: E.164 digits, line, byte span and zone of each."""

    def __init__(self) -> None:
        self.phones = array("q")
        self.lines = array("q")
        self.starts = array("q")
        self.ends = array("q")
        self.zone_index = array("H")
        self.zones: list[ZoneInfo | None] = []
        self._zone_ids: dict[ZoneInfo | None, int] = {}

    def add(self, number: int, item: _RawContact, zone: ZoneInfo | None) -> None:
        self.phones.append(number)
        self.lines.append(item.line)
        if item.span is not None:
            self.starts.append(item.span[0])
            self.ends.append(item.span[1])
            index = self._zone_ids.get(zone)
            if index is None:
                index = self._zone_ids[zone] = len(self.zones)
                self.zones.append(zone)
            self.zone_index.append(index)

    def first_lines(self, numbers: set[int]) -> dict[int, int]:
        """The line of the kept contact of each of ``numbers``."""
        return {n: line for n, line in zip(self.phones, self.lines, strict=True) if n in numbers}


class _CsvContacts(Sequence[Contact]):
    """The contacts of a CSV file: its bytes and a few numbers per contact.

    A :class:`Contact` object per row (strings, a variables dict, the dataclass) costs ~500
    bytes, 0.5 GB for a million rows. This keeps ~40 bytes per contact (E.164 digits, line,
    byte span, zone: arrays) plus the file, and builds a contact from its already-checked row
    each time one is asked for: iterating a million costs a few seconds, which the store
    import, the only full pass, spends anyway.
    """

    __slots__ = ("_kept", "_layout", "_timed")

    def __init__(self, layout: _CsvLayout, kept: _Kept) -> None:
        self._layout = layout
        self._kept = kept
        #: whether the file has a call_at / appointment_at / deadline column at all
        self._timed = not set(layout.columns).isdisjoint(TIMING_COLUMNS)

    def __len__(self) -> int:
        return len(self._kept.phones)

    @overload
    def __getitem__(self, index: int) -> Contact: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Contact]: ...
    def __getitem__(self, index: int | slice) -> Contact | Sequence[Contact]:
        if isinstance(index, slice):
            return tuple(self._contact(i) for i in range(*index.indices(len(self))))
        size = len(self)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError("contact index out of range")
        return self._contact(index)

    def __iter__(self) -> Iterator[Contact]:
        for index in range(len(self)):
            yield self._contact(index)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _CsvContacts):
            return (
                self._layout == other._layout
                and self._kept.phones == other._kept.phones
                and self._kept.starts == other._kept.starts
            )
        if isinstance(other, Sequence):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._layout.data, len(self)))

    def __repr__(self) -> str:
        return f"<{len(self)} contacts of {self._layout.source}>"

    def _contact(self, index: int) -> Contact:
        layout, kept = self._layout, self._kept
        text = layout.data[kept.starts[index] : kept.ends[index]].decode("utf-8")
        if '"' in text:
            row = next(csv.reader((text,), delimiter=layout.delimiter))
        else:
            # without quotes a record is one line and csv would split it just like this
            row = text.rstrip("\r\n").split(layout.delimiter)
        # the loader refused a value under an unnamed column, so `if cell` also skips those
        variables = {
            column: cell
            for column, cell in zip(layout.columns, map(str.strip, row), strict=True)
            if cell
        }
        phone = variables["phone"] = f"+{kept.phones[index]}"
        timing = _NO_TIMING
        if self._timed and not variables.keys().isdisjoint(TIMING_COLUMNS):
            # checked at load, so each parses (in the zone the contact was checked with)
            zone = kept.zones[kept.zone_index[index]]
            timing = ContactTiming(
                **{
                    key: parse_when(variables[key], zone=zone)
                    for key in TIMING_COLUMNS
                    if key in variables
                }
            )
        return Contact(
            phone=phone,
            name=variables.get("name"),
            timezone=variables.get("timezone"),
            timing=timing,
            variables=MappingProxyType(variables),
            source=layout.source,
            line=kept.lines[index],
        )


# ------------------------------------------------------------------------------------------
# small helpers


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


def _compile(
    assistant: Mapping[str, Any] | None, override: Mapping[str, Any] | None
) -> TemplateTree | None:
    """Transient mode templates the whole [assistant]; hybrid mode the assistant_override."""
    if assistant is not None:
        return TemplateTree.compile(assistant, root="assistant")
    if override is not None:
        return TemplateTree.compile(override, root="assistant_override")
    return None


def _frozen(table: dict[str, Any] | None) -> Mapping[str, Any] | None:
    return MappingProxyType(table) if table is not None else None


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
