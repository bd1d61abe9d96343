"""The frozen domain records of a campaign: :class:`Contact` and :class:`Campaign`.

A campaign renders its templates per contact (compiled once, in :func:`_compile`), builds the
body of ``POST /calls/outbound``, gives the dial gate its rules and says when its runs fire.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from dialer.config import DEFAULT_KEY
from dialer.errors import CampaignError, Problem
from dialer.policy.caps import FrequencyCap
from dialer.policy.gate import DialRules
from dialer.policy.outcomes import Outcome
from dialer.policy.reminders import ContactTiming, reminder_key
from dialer.policy.retries import RetryPolicy
from dialer.policy.timezones import UnknownPolicy
from dialer.policy.windows import CallingWindow
from dialer.suppression import FileStamp
from dialer.templating import TemplateIssue, TemplateTree

#: what to do with a contact whose zone the number cannot tell (the policy's own type)
UnknownTimezone = UnknownPolicy
#: "once": each reminder key is called until its goal is met or its attempts run out, once
#: across every run of the campaign; "every_run": everyone is called again at every fire
Repeat = Literal["once", "every_run"]
#: how late a missed cron fire is still caught up when a daemon starts
DEFAULT_MISFIRE_GRACE = timedelta(hours=1)


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

    @property
    def key(self) -> str:
        """The contact's reminder key in its campaign (see dialer.policy.reminders)."""
        return reminder_key(
            phone=self.phone,
            contact_id=self.variables.get("id"),
            appointment_at=self.timing.appointment_at,
        )


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
    repeat: Repeat = "once"
    misfire_grace: timedelta = DEFAULT_MISFIRE_GRACE
    #: the campaign's TOML and contacts CSV, each with its stamp taken before it was read:
    #: the daemon watches them and reads the campaign again when one changes
    file_stamps: tuple[tuple[Path, FileStamp | None], ...] = ()
    #: a tuple, or for a contacts CSV a sequence that rebuilds each contact from its row
    #: (see _CsvContacts): index, iterate and len() it, never rely on it being a tuple
    contacts: Sequence[Contact] = ()
    suppressed: frozenset[str] = frozenset()  # E.164, from the campaign's own DNC files
    #: those files with their stamps when read: the daemon reads one again when it changes
    suppression_files: tuple[tuple[Path, FileStamp | None], ...] = ()
    #: the default region the numbers (of the contacts, of those files) are read in
    region: str | None = None
    api_key_name: str = DEFAULT_KEY
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

    @property
    def mode(self) -> str:
        """Which calls a fire makes, in words (what `dialer validate` says of the campaign)."""
        goal = ", ".join(sorted(o.value for o in self.done_when))
        if self.repeat == "every_run":
            return f"every run: everyone at each fire (done when {goal})"
        return f"once per key: each reminder until done (done when {goal})"

    @property
    def done_when(self) -> frozenset[Outcome]:
        """The outcomes that meet the campaign's goal: a key with one of them is done."""
        return self.retry.done_when

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


def _compile(
    assistant: Mapping[str, Any] | None, override: Mapping[str, Any] | None
) -> TemplateTree | None:
    """Transient mode templates the whole [assistant]; hybrid mode the assistant_override."""
    if assistant is not None:
        return TemplateTree.compile(assistant, root="assistant")
    if override is not None:
        return TemplateTree.compile(override, root="assistant_override")
    return None
