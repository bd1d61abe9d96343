"""Reading one campaign file: the entry points :func:`load_campaign` and
:func:`validate_paths`, and the loader of the TOML file and its sections (name, assistant,
schedule, window, retry, suppression, key); the contacts are :mod:`dialer.campaign.contacts`'.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from dialer.assistant_schema import check_assistant
from dialer.campaign.contacts import _ContactReader
from dialer.campaign.records import (
    DEFAULT_MISFIRE_GRACE,
    Campaign,
    Repeat,
    UnknownTimezone,
    _compile,
)
from dialer.campaign.values import (
    NAME,
    REGION,
    ZONE,
    _as_date,
    _Checks,
    _collapse,
    _holiday_problem,
    _region_problem,
    _shown,
    _text,
    _zone_problem,
)
from dialer.config import DEFAULT_KEY, KEY_NAME
from dialer.errors import CampaignError, Problem
from dialer.policy.durations import DURATION_ACCEPTED
from dialer.policy.outcomes import PERMANENT_OUTCOMES, Outcome
from dialer.policy.retries import RetryPolicy, RetryRule
from dialer.policy.windows import CONTACT_HOLIDAYS, CallingWindow, parse_days, parse_range
from dialer.suppression import FileStamp, file_stamp, read_suppression_file
from dialer.templating import TemplateTree
from dialer.tomlsource import KeyPath, TomlSource, did_you_mean, reason


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
    "repeat",
    "done_when",
    "misfire_grace",
)

_WINDOW_KEYS = ("days", "hours", "holidays", "skip_dates", "min_time_before_close")
_RETRY_RULE_KEYS = ("after", "max", "backoff", "jitter")
_NAME_RE = re.compile(r"\w[\w .-]{0,99}")
_DOW_DIGITS = re.compile(r"\d")
#: a call whose outcome is unknown may have been answered: retrying it risks a double call
_NEVER_RETRIED = PERMANENT_OUTCOMES | {Outcome("unknown")}
#: outcomes a campaign may count as its goal met (not knowing what happened never is)
_DONE_CANDIDATES = tuple(o for o in Outcome if o is not Outcome.UNKNOWN)


class _Loader(_Checks):
    """One campaign file, read and checked: its sections here, its contacts by a
    :class:`_ContactReader`."""

    def __init__(self, path: Path, default_region: str | None) -> None:
        super().__init__(path)
        self.default_region = default_region

    # -- the file ------------------------------------------------------------------------
    def load(self) -> tuple[Campaign | None, list[Problem]]:
        """The campaign, or None and every problem found. The sections are checked in one
        order (name first, contacts last), each reporting what is wrong with it."""
        stamp = file_stamp(self.path)  # before the read: an edit saved meanwhile is a change
        source = TomlSource.read(self.path)
        if isinstance(source, Problem):
            return None, [source]
        self.source = source
        data = source.data
        self.unknown_keys((), data, _TOP_KEYS)
        name = self.name(data)
        self.get_if_set(data, "description", self.get_str, "a string")
        assistant_id, assistant, override = self.assistant(data)
        number_id = self.get_if_set(data, "number_id", self.get_str, "the id of a VoiceDock number")
        timezone, unknown_timezone = self.timezone(data)
        zone = ZoneInfo(timezone) if timezone else None
        region = self.region(data)
        start_at, cron = self.schedule(data, zone)
        max_concurrent = self.get_if_set(data, "max_concurrent_calls", self.get_int, minimum=1)
        per_minute = self.get_if_set(data, "calls_per_minute", self.get_positive)
        window = self.window(data)
        retry = self.retry(data)
        done_when = self.done_when(data)
        repeat = self.repeat(data)
        misfire_grace = self.get_if_set(data, "misfire_grace", self.get_duration, zero_ok=True)
        call_before = self.get_if_set(data, "call_before", self.get_duration)
        expires_at = self.get_if_set(data, "expires_at", self.get_when, zone)
        suppressed, suppression_files = self.suppression(data, region)
        api_key_name = self.api_key_name(data)
        templates = self.templates(assistant, override)
        reader = _ContactReader(self)
        contacts = reader.contacts(
            reader.raw_contacts(data),
            region=region,
            timezone=timezone,
            unknown_timezone=unknown_timezone,
            templates=templates,
            call_before=call_before,
            expires_at=expires_at,
            contact_holidays=window is not None and window.contact_holidays,
        )
        if self.problems:
            return None, _collapse(self.problems)
        assert name is not None and window is not None and retry is not None
        assert done_when is not None and repeat is not None
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
            retry=replace(retry, done_when=done_when),
            call_before=call_before,
            expires_at=expires_at,
            repeat=repeat,
            misfire_grace=DEFAULT_MISFIRE_GRACE if misfire_grace is None else misfire_grace,
            file_stamps=((self.path, stamp), *((reader.csv_stamp,) if reader.csv_stamp else ())),
            contacts=contacts,
            suppressed=suppressed,
            suppression_files=suppression_files,
            region=region,
            api_key_name=api_key_name,
            definition_hash=_definition_hash(source.raw, reader.csv_bytes),
            warnings=tuple(_collapse(self.warnings)),
            _templates=templates,
        )
        return campaign, []

    # -- sections ------------------------------------------------------------------------
    def done_when(self, data: Mapping[str, Any]) -> frozenset[Outcome] | None:
        """The outcomes that meet the campaign's goal (default: completed)."""
        if "done_when" not in data:
            return frozenset({Outcome.COMPLETED})
        accepted = "a list of outcomes: " + ", ".join(o.value for o in _DONE_CANDIDATES)
        items = self.get_list(("done_when",), data["done_when"], accepted)
        if items is None:
            return None
        if not items:
            self.bad(("done_when",), "is empty: no contact could ever be done", accepted)
            return None
        done: set[Outcome] = set()
        names = [o.value for o in _DONE_CANDIDATES]
        for i, item in enumerate(items):
            if not isinstance(item, str) or item not in names:
                shown = item if isinstance(item, str) else repr(item)
                self.bad(
                    ("done_when", i),
                    f"{shown!r} is not an outcome that can meet a goal"
                    + (did_you_mean(item, names) if isinstance(item, str) else ""),
                    accepted,
                )
                continue
            done.add(Outcome(item))
        return frozenset(done) if len(done) == len(items) else None

    def repeat(self, data: Mapping[str, Any]) -> Repeat | None:
        if "repeat" not in data:
            return "once"
        value = data["repeat"]
        if value not in ("once", "every_run"):
            self.bad(
                ("repeat",),
                f"{value!r} is not a choice",
                '"once" (each reminder key called until done, across runs) or "every_run" '
                "(everyone called again at every fire)",
            )
            return None
        return "once" if value == "once" else "every_run"

    def name(self, data: Mapping[str, Any]) -> str | None:
        if "name" not in data:
            self.bad(("name",), "is required", NAME)
            return None
        name = self.get_str(("name",), data["name"], NAME)
        if name is not None and not _NAME_RE.fullmatch(name):
            self.bad(("name",), f"{name!r} is not a usable campaign name", NAME)
            return None
        return name

    def timezone(self, data: Mapping[str, Any]) -> tuple[str | None, UnknownTimezone]:
        """The campaign's time zone, and what a contact whose zone is unknown gets."""
        timezone = None
        if "timezone" in data:
            timezone = self.get_str(("timezone",), data["timezone"], ZONE)
            if timezone is not None and (problem := _zone_problem(timezone)):
                self.bad(("timezone",), problem, ZONE)
                timezone = None
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
        return timezone, unknown_timezone

    def region(self, data: Mapping[str, Any]) -> str | None:
        """The region numbers without a country code are read in: the file's, or the config's."""
        if "default_region" not in data:
            return self.default_region
        value = self.get_str(("default_region",), data["default_region"], REGION)
        if value is not None and (problem := _region_problem(value)):
            self.bad(("default_region",), problem, REGION)
            return self.default_region
        return value if value is not None else self.default_region

    def api_key_name(self, data: Mapping[str, Any]) -> str:
        """The name of the API key (of the config) the campaign's calls use."""
        if "key" not in data:
            return DEFAULT_KEY
        accepted = "a key name: letters, digits, '_' or '-'"
        value = self.get_str(("key",), data["key"], accepted)
        if value is not None and not KEY_NAME.fullmatch(value):
            self.bad(("key",), f"{value!r} is not a key name", accepted)
            return DEFAULT_KEY
        return value if value is not None else DEFAULT_KEY

    def templates(
        self, assistant: Mapping[str, Any] | None, override: Mapping[str, Any] | None
    ) -> TemplateTree | None:
        """The templates, compiled here once; contacts are then checked against them."""
        templates = _compile(assistant, override)
        if templates is not None:
            for issue in templates.issues:
                self.bad(issue.path, issue.message, "Jinja2 syntax: {{ variable }}")
        return templates

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
                self.documented(("assistant",), assistant)
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
                self.documented(("assistant_override",), override)
        return assistant_id, assistant, override

    def documented(self, path: KeyPath, table: Mapping[str, Any]) -> None:
        """Warnings for what VoiceDock's reference does not document in an assistant table: a
        typo there would otherwise first show as a 400/422 on every call."""
        for finding in check_assistant(table, path):
            self.warn(finding.path, finding.message, finding.accepted)

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
        holidays = self.holiday_regions(table)
        skip = self.skip_dates(table)
        before_close = default.min_time_before_close
        if "min_time_before_close" in table:
            value = self.get_duration(
                ("window", "min_time_before_close"), table["min_time_before_close"], zero_ok=True
            )
            ok = ok and value is not None
            before_close = value if value is not None else before_close
        if not ok or holidays is None or skip is None:
            return None
        regions, contact_holidays = holidays
        try:
            return CallingWindow(
                days=days,
                ranges=ranges,
                holiday_regions=tuple(regions),
                contact_holidays=contact_holidays,
                skip_dates=frozenset(skip),
                min_time_before_close=before_close,
            )
        except ValueError as exc:
            self.bad(("window",), reason(exc), "see campaigns/README.md, [window]")
            return None

    def holiday_regions(self, table: Mapping[str, Any]) -> tuple[list[str], bool] | None:
        """The [window] holidays: regions with a holiday calendar, and whether "contact" (each
        contact's own calendar) is among them; None if any has no calendar."""
        if "holidays" not in table:
            return [], False
        accepted = (
            'country codes such as "NL", country-subdivision such as "US-CA", or "contact" '
            "(each contact's own country and subdivision)"
        )
        items = self.get_list(("window", "holidays"), table["holidays"], accepted)
        ok = items is not None
        regions: list[str] = []
        contact = False
        for i, item in enumerate(items or []):
            if isinstance(item, str) and item.strip().lower() == CONTACT_HOLIDAYS:
                contact = True
                continue
            problem = _holiday_problem(item)
            if problem:
                self.bad(("window", "holidays", i), problem, accepted)
                ok = False
            else:
                regions.append(item)
        return (regions, contact) if ok else None

    def skip_dates(self, table: Mapping[str, Any]) -> set[date] | None:
        """The [window] skip_dates; None if any is not a date."""
        if "skip_dates" not in table:
            return set()
        accepted = "dates such as 2027-12-24 (TOML dates or strings)"
        items = self.get_list(("window", "skip_dates"), table["skip_dates"], accepted)
        ok = items is not None
        skip: set[date] = set()
        for i, item in enumerate(items or []):
            day = _as_date(item)
            if day is None:
                self.bad(("window", "skip_dates", i), f"{_shown(item)} is not a date", accepted)
                ok = False
            else:
                skip.add(day)
        return skip if ok else None

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
            self.bad((*path, "after"), "is required for this outcome", DURATION_ACCEPTED)
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


def _frozen(table: dict[str, Any] | None) -> Mapping[str, Any] | None:
    return MappingProxyType(table) if table is not None else None


def _definition_hash(toml: bytes, csv: bytes) -> str:
    """What the daemon compares to see a campaign changed: its TOML and its CSV, each bytes."""
    digest = hashlib.sha256()
    for part in (toml, csv):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()
