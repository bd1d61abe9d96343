"""The dial gate: may this contact be dialled at ``now``, and if not, until when, or never.

One pure function answers it for everyone who asks: the dispatcher before a dial, the re-check
of a create that waited for the budget, the placement of a retry and `dialer plan`. They used to
write the rules each in their own words, and when the words drifted `plan` misinformed or the
re-check let through what dispatch refused.

    >>> from datetime import UTC, datetime
    >>> from dialer.policy.windows import CallingWindow
    >>> facts = ContactFacts(phone="+31612345678")
    >>> rules = DialRules(window=CallingWindow.default())
    >>> decision = decide(facts, rules, now=datetime(2027, 3, 1, 6, 0, tzinfo=UTC))  # 07:00 local
    >>> decision.until.isoformat(), decision.reason
    ('2027-03-01T08:00:00+00:00', 'window')

The order matters: permanent reasons (a do-not-call list, a passed deadline, no time zone) close
the attempt before temporary ones (the window, ``not_before``, the frequency cap) defer it, so an
attempt is never deferred again and again towards an end that was certain from the start.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from dialer.attempts import AttemptState
from dialer.policy.calendars import UNKNOWN_SUBDIVISION, contact_calendar
from dialer.policy.caps import FrequencyCap, cap_next_allowed
from dialer.policy.reminders import ContactTiming, timing_bounds
from dialer.policy.timezones import UnknownPolicy, ZoneResolution, resolve_zone
from dialer.policy.windows import CallingWindow

__all__ = [
    "Allow",
    "Close",
    "ContactFacts",
    "Decision",
    "Defer",
    "DialRules",
    "Rule",
    "contact_window",
    "decide",
    "first_allowed",
]

#: which rule decided: what the re-check before a delayed send reports as ``withdrawn:<rule>``
Rule = Literal["dnc", "deadline", "zone", "window", "not_before", "cap"]

#: the reason an attempt closes with when its deadline leaves no moment the window is open
NO_WINDOW_BEFORE_DEADLINE = "no window before deadline"


@dataclass(frozen=True, kw_only=True)
class ContactFacts:
    """What the gate needs to know of one contact."""

    phone: str  # E.164
    #: the contact's own IANA zone, when its file gives one
    timezone: str | None = None
    timing: ContactTiming = field(default_factory=ContactTiming)
    #: the contact's subdivision ("BY", "CA"), when its file gives one: with the campaign's
    #: holidays = ["contact"], its public holidays are its country's and this subdivision's
    subdivision: str | None = None


@dataclass(frozen=True, kw_only=True)
class DialRules:
    """The campaign's rules (and the daemon's frequency cap) a dial must satisfy."""

    window: CallingWindow
    #: the campaign's zone: cron times, and contacts whose number spans several zones
    timezone: str | None = None
    unknown_timezone: UnknownPolicy = "skip"
    call_before: timedelta | None = None
    expires_at: datetime | None = None
    frequency_cap: FrequencyCap | None = None


@dataclass(frozen=True, kw_only=True)
class Allow:
    """Dial now. The evidence the audit log keeps of why it was allowed."""

    zone: ZoneInfo
    #: further zones the contact may be in, where the window was open too
    also: tuple[ZoneInfo, ...]
    #: the window it was judged in: the campaign's, with the contact's own holidays if asked
    window: CallingWindow
    not_before: datetime | None
    deadline: datetime | None
    #: calls to the number within the frequency cap's period (0 without a cap)
    cap_calls: int
    rule: None = None


@dataclass(frozen=True, kw_only=True)
class Defer:
    """Not now: look again at ``until``, when the rule that refused it allows it."""

    until: datetime
    #: what the attempt's row and its event say: window, holiday, skip_date, not_before, cap
    reason: str
    rule: Rule
    #: the event's further data (the zone, the local time it opens; for a holiday, the
    #: calendar that marks it, a campaign's region or the contact's own, and its name)
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Close:
    """Never: the attempt ends unplaced, in ``state`` (skipped or expired), for ``reason``."""

    state: Literal[AttemptState.SKIPPED, AttemptState.EXPIRED]
    reason: str
    rule: Rule
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def explanation(self) -> str:
        """The reason in words a person reads (`dialer plan`): the detail where it says more."""
        detail = self.detail.get("detail")
        return detail if isinstance(detail, str) and detail != "cap" else self.reason


Decision = Allow | Defer | Close


def decide(
    facts: ContactFacts,
    rules: DialRules,
    *,
    now: datetime,
    suppressed: Container[str] = frozenset(),
    recent_calls: Sequence[datetime] = (),
    resolution: ZoneResolution | None = None,
) -> Decision:
    """The gate's answer for one contact at ``now``.

    ``suppressed``: the do-not-call numbers (E.164) as the caller last read them.
    ``recent_calls``: when the number was dialled (any campaign) since at least
    ``now - frequency_cap.period``; only read with a cap.
    ``resolution``: the contact's zones when the caller resolved them already (the same as
    :func:`~dialer.policy.timezones.resolve_zone` of the facts and rules would give).
    """
    if facts.phone in suppressed:
        return Close(state=AttemptState.SKIPPED, reason="dnc", rule="dnc")
    not_before, deadline = timing_bounds(
        facts.timing, call_before=rules.call_before, expires_at=rules.expires_at
    )
    if deadline is not None and now >= deadline:
        return Close(state=AttemptState.EXPIRED, reason="deadline", rule="deadline")
    if resolution is None:
        resolution = resolve_zone(
            facts.phone,
            explicit=facts.timezone,
            campaign_zone=rules.timezone,
            unknown_policy=rules.unknown_timezone,
        )
    zone = resolution.zone
    if zone is None:
        reason = resolution.reason or "unknown_timezone"
        return Close(state=AttemptState.SKIPPED, reason=reason, rule="zone")
    zones = resolution.zones
    window = contact_window(facts, rules.window)
    if window is None:
        # never judged without its subdivision's holidays (the loader refuses such a
        # subdivision first: this is the last line of defence, as for an unknown zone)
        return Close(
            state=AttemptState.SKIPPED,
            reason=UNKNOWN_SUBDIVISION,
            rule="window",
            detail={"subdivision": facts.subdivision},
        )
    start = max(now, not_before) if not_before is not None else now
    if deadline is not None and start >= deadline:
        # Its earliest moment is already too late (a call_before reaching past the deadline):
        # closed now, not deferred to an instant at which it can only expire.
        return Close(state=AttemptState.EXPIRED, reason="deadline", rule="deadline")
    if not window.allows_everywhere(start, zones):
        opens = window.next_allowed_everywhere(start, zones, deadline=deadline)
        if opens is None and deadline is None and len(zones) > 1:
            # its zones are too far apart for the window to be open in all at once
            return Close(
                state=AttemptState.SKIPPED,
                reason="no_common_window",
                rule="window",
                detail={"zones": [str(z) for z in zones]},
            )
        if opens is None:
            return Close(
                state=AttemptState.EXPIRED,
                reason="deadline",
                rule="window",
                detail={"detail": NO_WINDOW_BEFORE_DEADLINE},
            )
        start = opens
    cap_calls = 0
    cap = rules.frequency_cap
    if cap is not None:
        counted = [t for t in recent_calls if t >= start - cap.period]
        cap_calls = len(counted)
        allowed = cap_next_allowed(cap, counted, start)
        if allowed > start:
            opens = window.next_allowed_everywhere(allowed, zones, deadline=deadline)
            if opens is None:
                return Close(
                    state=AttemptState.EXPIRED,
                    reason="deadline",
                    rule="cap",
                    detail={"detail": "cap"},
                )
            return Defer(until=opens, reason="cap", rule="cap", detail={"zone": str(zone)})
    if start > now:
        rule: Rule
        detail = {"zone": str(zone), "local_time": start.astimezone(zone).isoformat()}
        if not_before is not None and start == not_before:
            reason, rule = "not_before", "not_before"
        else:
            # Say *why* the window is shut today: a holiday or skip date, else the hours/days.
            today = (not_before if not_before and not_before > now else now).astimezone(zone)
            reason, rule = window.closed_reason(today.date()) or "window", "window"
            holiday = window.holiday(today.date()) if reason == "holiday" else None
            if holiday is not None:
                # whose holiday: a region of the campaign's, or the contact's own calendar
                detail["calendar"], detail["holiday"] = holiday
        return Defer(until=start, reason=reason, rule=rule, detail=detail)
    return Allow(
        zone=zone,
        also=resolution.also,
        window=window,
        not_before=not_before,
        deadline=deadline,
        cap_calls=cap_calls,
    )


def contact_window(facts: ContactFacts, window: CallingWindow) -> CallingWindow | None:
    """The window ``facts``' contact is judged in: the campaign's ``window``, with the
    contact's own public holidays when it asks for them (``holidays = ["contact"]``); None
    when the contact's subdivision is not one of its country's."""
    if not window.contact_holidays:
        return window
    try:
        calendar = contact_calendar(facts.phone, facts.subdivision)
    except ValueError:
        return None
    return window.for_contact(calendar)


def first_allowed(decision: Decision, at: datetime) -> datetime | None:
    """When a dial the gate judged at ``at`` may go out: ``at`` itself when allowed, the end
    of a deferral, or None when closed (a retry then expires instead of being placed)."""
    if isinstance(decision, Allow):
        return at
    if isinstance(decision, Defer):
        return decision.until
    return None
