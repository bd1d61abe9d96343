"""The dial gate: a table per branch, then properties across zones and DST transitions.

The properties judge ``decide`` against the window's own search and against itself later in
time: a deferral ends exactly where the gate allows the dial, an allowed dial is inside the
window everywhere the contact may be, and a closed attempt never opens again.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.attempts import AttemptState
from dialer.policy.calendars import phone_country
from dialer.policy.caps import FrequencyCap
from dialer.policy.gate import (
    NO_WINDOW_BEFORE_DEADLINE,
    Allow,
    Close,
    ContactFacts,
    Defer,
    DialRules,
    contact_window,
    decide,
)
from dialer.policy.reminders import ContactTiming
from dialer.policy.timezones import resolve_zone
from dialer.policy.windows import CallingWindow, TimeRange, holiday_subdivisions

AMS_PHONE = "+31612345678"  # one zone: Europe/Amsterdam
AU_MOBILE = "+61412345678"  # an Australian mobile: several zones
MONDAY_0700_AMS = datetime(2027, 3, 1, 6, 0, tzinfo=UTC)
MONDAY_1000_AMS = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
DEFAULT = CallingWindow.default()


def rules(**kwargs: object) -> DialRules:
    return DialRules(**{"window": DEFAULT, **kwargs})  # type: ignore[arg-type]


def facts(phone: str = AMS_PHONE, **timing: datetime) -> ContactFacts:
    return ContactFacts(phone=phone, timing=ContactTiming(**timing))


# ----------------------------------------------------------------------- tables
def test_allowed_inside_the_window_with_the_evidence() -> None:
    decision = decide(facts(), rules(), now=MONDAY_1000_AMS)
    assert isinstance(decision, Allow)
    assert decision.zone == ZoneInfo("Europe/Amsterdam") and decision.also == ()
    assert (decision.not_before, decision.deadline, decision.cap_calls) == (None, None, 0)


def test_before_the_window_opens_it_is_deferred_to_the_opening() -> None:
    decision = decide(facts(), rules(), now=MONDAY_0700_AMS)
    assert decision == Defer(
        until=datetime(2027, 3, 1, 8, 0, tzinfo=UTC),
        reason="window",
        rule="window",
        detail={"zone": "Europe/Amsterdam", "local_time": "2027-03-01T09:00:00+01:00"},
    )


def test_a_holiday_is_named_as_the_reason() -> None:
    kings_day = datetime(2027, 4, 27, 9, 0, tzinfo=UTC)  # a Tuesday, a Dutch holiday
    window = CallingWindow(
        days=frozenset(range(6)),
        ranges=(TimeRange(start=time(9), end=time(20)),),
        holiday_regions=("NL",),
    )
    decision = decide(facts(), rules(window=window), now=kings_day)
    assert isinstance(decision, Defer) and decision.reason == "holiday"
    assert decision.until == datetime(2027, 4, 28, 7, 0, tzinfo=UTC)


def test_not_before_defers_to_itself_when_the_window_is_open_then() -> None:
    call_at = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    decision = decide(facts(call_at=call_at), rules(), now=MONDAY_1000_AMS)
    assert isinstance(decision, Defer)
    assert (decision.until, decision.reason, decision.rule) == (call_at, "not_before", "not_before")


def test_a_suppressed_number_is_skipped_before_anything_else() -> None:
    passed = datetime(2027, 2, 1, tzinfo=UTC)
    decision = decide(facts(deadline=passed), rules(), now=MONDAY_1000_AMS, suppressed={AMS_PHONE})
    assert decision == Close(state=AttemptState.SKIPPED, reason="dnc", rule="dnc")


def test_a_passed_deadline_expires_the_attempt() -> None:
    deadline = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)
    decision = decide(facts(deadline=deadline), rules(), now=MONDAY_1000_AMS)
    assert decision == Close(state=AttemptState.EXPIRED, reason="deadline", rule="deadline")


def test_a_not_before_at_or_after_the_deadline_expires_the_attempt_at_once() -> None:
    # call_before reaches past the deadline: 12:01 is the earliest moment and already too late
    # (deferring to it, as the gate once did, only postponed the expiry; hypothesis found it)
    decision = decide(
        facts(
            appointment_at=datetime(2027, 3, 1, 14, 1, tzinfo=UTC),
            deadline=datetime(2027, 3, 1, 12, 1, tzinfo=UTC),
        ),
        rules(call_before=timedelta(hours=2)),
        now=MONDAY_1000_AMS,
    )
    assert decision == Close(state=AttemptState.EXPIRED, reason="deadline", rule="deadline")


def test_an_appointment_is_its_own_deadline_and_call_before_its_not_before() -> None:
    appointment = datetime(2027, 3, 2, 13, 0, tzinfo=UTC)
    decision = decide(
        facts(appointment_at=appointment),
        rules(call_before=timedelta(hours=24)),
        now=MONDAY_1000_AMS,
    )
    assert isinstance(decision, Defer) and decision.until == appointment - timedelta(hours=24)


def test_no_window_before_the_deadline_expires_it_at_once() -> None:
    deadline = datetime(2027, 3, 1, 7, 30, tzinfo=UTC)  # 08:30 local, before 09:00 opens
    decision = decide(facts(deadline=deadline), rules(), now=MONDAY_0700_AMS)
    assert isinstance(decision, Close)
    assert (decision.state, decision.reason, decision.rule) == (
        AttemptState.EXPIRED,
        "deadline",
        "window",
    )
    assert decision.explanation == NO_WINDOW_BEFORE_DEADLINE


def test_an_unknown_zone_is_skipped() -> None:
    decision = decide(
        ContactFacts(phone=AU_MOBILE), rules(unknown_timezone="skip"), now=MONDAY_1000_AMS
    )
    assert decision == Close(state=AttemptState.SKIPPED, reason="unknown_timezone", rule="zone")


def test_zones_that_never_overlap_are_skipped_without_a_deadline() -> None:
    narrow = CallingWindow(
        days=frozenset(range(7)),
        ranges=(TimeRange(start=time(9), end=time(10)),),
        min_time_before_close=timedelta(0),
    )
    # a Sydney campaign's Australian mobile may be in Perth too: 09:00-10:00 never overlaps
    decision = decide(
        ContactFacts(phone=AU_MOBILE),
        rules(window=narrow, timezone="Australia/Sydney"),
        now=MONDAY_1000_AMS,
    )
    assert isinstance(decision, Close) and decision.reason == "no_common_window"
    assert "Australia/Perth" in decision.detail["zones"]


def test_the_cap_defers_to_when_the_oldest_call_leaves_its_period() -> None:
    cap = FrequencyCap(1, timedelta(days=1))
    called = MONDAY_1000_AMS - timedelta(hours=1)  # at 09:00 local: a day later it is open
    decision = decide(facts(), rules(frequency_cap=cap), now=MONDAY_1000_AMS, recent_calls=[called])
    assert decision == Defer(
        until=called + timedelta(days=1),
        reason="cap",
        rule="cap",
        detail={"zone": "Europe/Amsterdam"},
    )


def test_the_cap_counts_the_calls_in_its_period_as_evidence() -> None:
    cap = FrequencyCap(3, timedelta(days=1))
    calls = [MONDAY_1000_AMS - timedelta(hours=h) for h in (1, 30)]  # one inside, one out
    decision = decide(facts(), rules(frequency_cap=cap), now=MONDAY_1000_AMS, recent_calls=calls)
    assert isinstance(decision, Allow) and decision.cap_calls == 1


def test_the_cap_expires_a_contact_whose_deadline_comes_first() -> None:
    cap = FrequencyCap(1, timedelta(days=1))
    deadline = MONDAY_1000_AMS + timedelta(hours=3)
    decision = decide(
        facts(deadline=deadline),
        rules(frequency_cap=cap),
        now=MONDAY_1000_AMS,
        recent_calls=[MONDAY_1000_AMS - timedelta(hours=1)],
    )
    assert decision == Close(
        state=AttemptState.EXPIRED, reason="deadline", rule="cap", detail={"detail": "cap"}
    )


def test_a_resolution_given_by_the_caller_is_used() -> None:
    resolution = resolve_zone(AMS_PHONE, explicit="America/New_York", campaign_zone=None)
    decision = decide(facts(), rules(), now=MONDAY_1000_AMS, resolution=resolution)
    assert isinstance(decision, Defer) and decision.detail["zone"] == "America/New_York"


# ----------------------------------------------------------------------- properties
# zones with DST both ways, a half-hour zone and one without DST
ZONES = [
    "Europe/Amsterdam",
    "America/New_York",
    "America/Sao_Paulo",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "America/Santiago",
]
# the weeks of DST transitions in 2027, where instants are most interesting
TRANSITIONS = [
    datetime(2027, 3, 14, tzinfo=UTC),  # US spring forward
    datetime(2027, 3, 28, tzinfo=UTC),  # EU spring forward
    datetime(2027, 4, 4, tzinfo=UTC),  # AU fall back
    datetime(2027, 10, 3, tzinfo=UTC),  # AU spring forward
    datetime(2027, 10, 31, tzinfo=UTC),  # EU fall back
    datetime(2027, 11, 7, tzinfo=UTC),  # US fall back
]
PHONES = [AMS_PHONE, "+12125550199", "+5511987654321", AU_MOBILE, "+919812345678"]


@st.composite
def windows(draw: st.DrawFn) -> CallingWindow:
    start = draw(st.integers(0, 23))
    length = draw(st.integers(1, 14))
    end = (start + length) % 24
    return CallingWindow(
        days=frozenset(draw(st.sets(st.integers(0, 6), min_size=1))),
        ranges=(TimeRange(start=time(start), end=time(end)),),
        min_time_before_close=timedelta(minutes=draw(st.sampled_from([0, 10, 30]))),
        # each contact's own public holidays too, half of the time
        contact_holidays=draw(st.booleans()),
    )


def subdivisions(phone: str) -> st.SearchStrategy[str | None]:
    """None, or one of the subdivisions of the number's country (a valid one)."""
    country = phone_country(phone)
    known = holiday_subdivisions(country) if country is not None else None
    return st.one_of(st.none(), st.sampled_from(sorted(known.values()))) if known else st.none()


@st.composite
def cases(draw: st.DrawFn) -> tuple[ContactFacts, DialRules, datetime]:
    base = draw(st.sampled_from(TRANSITIONS))
    now = base + timedelta(minutes=draw(st.integers(-3 * 24 * 60, 3 * 24 * 60)))
    timing: dict[str, datetime] = {}
    if draw(st.booleans()):
        timing["appointment_at"] = now + timedelta(minutes=draw(st.integers(-600, 6000)))
    if draw(st.booleans()):
        timing["deadline"] = now + timedelta(minutes=draw(st.integers(-600, 9000)))
    phone = draw(st.sampled_from(PHONES))
    contact = ContactFacts(
        phone=phone,
        timezone=draw(st.one_of(st.none(), st.sampled_from(ZONES))),
        timing=ContactTiming(**timing),
        subdivision=draw(subdivisions(phone)),
    )
    campaign = DialRules(
        window=draw(windows()),
        timezone=draw(st.sampled_from(["Australia/Sydney", "America/New_York", None])),
        unknown_timezone=draw(st.sampled_from(["skip", "campaign"])),
        call_before=draw(st.sampled_from([None, timedelta(hours=24), timedelta(hours=2)])),
    )
    if campaign.unknown_timezone == "campaign" and campaign.timezone is None:
        campaign = DialRules(window=campaign.window, call_before=campaign.call_before)
    return contact, campaign, now


def zones_of(contact: ContactFacts, campaign: DialRules) -> tuple[ZoneInfo, ...]:
    return resolve_zone(
        contact.phone,
        explicit=contact.timezone,
        campaign_zone=campaign.timezone,
        unknown_policy=campaign.unknown_timezone,
    ).zones


@given(cases())
def test_an_allowed_dial_is_inside_every_bound(
    case: tuple[ContactFacts, DialRules, datetime],
) -> None:
    contact, campaign, now = case
    decision = decide(contact, campaign, now=now)
    if not isinstance(decision, Allow):
        return
    # judged in the contact's window: the campaign's, with its own holidays if asked
    assert decision.window == contact_window(contact, campaign.window)
    assert decision.window.allows_everywhere(now, zones_of(contact, campaign))
    assert decision.not_before is None or decision.not_before <= now
    assert decision.deadline is None or now < decision.deadline


@given(cases())
def test_a_deferral_ends_exactly_where_the_gate_allows_the_dial(
    case: tuple[ContactFacts, DialRules, datetime],
) -> None:
    contact, campaign, now = case
    decision = decide(contact, campaign, now=now)
    if not isinstance(decision, Defer):
        return
    assert decision.until > now
    later = decide(contact, campaign, now=decision.until)
    assert isinstance(later, Allow), later
    # and nothing earlier would have been allowed: the window's own search agrees
    start = max(now, later.not_before) if later.not_before is not None else now
    zones = zones_of(contact, campaign)
    assert later.window.next_allowed_everywhere(start, zones, deadline=later.deadline) == (
        decision.until
    )


@given(cases(), st.integers(1, 20_000))
def test_a_closed_attempt_never_opens_again(
    case: tuple[ContactFacts, DialRules, datetime], minutes_later: int
) -> None:
    contact, campaign, now = case
    decision = decide(contact, campaign, now=now)
    if not isinstance(decision, Close):
        return
    later = decide(contact, campaign, now=now + timedelta(minutes=minutes_later))
    assert isinstance(later, Close), (decision, later)


@given(cases())
def test_a_suppressed_number_is_always_skipped_for_dnc(
    case: tuple[ContactFacts, DialRules, datetime],
) -> None:
    contact, campaign, now = case
    decision = decide(contact, campaign, now=now, suppressed={contact.phone})
    assert decision == Close(state=AttemptState.SKIPPED, reason="dnc", rule="dnc")


@pytest.mark.parametrize("phone", PHONES)
def test_a_given_resolution_equals_the_gates_own(phone: str) -> None:
    campaign = rules(timezone="Australia/Sydney")
    resolution = resolve_zone(phone, explicit=None, campaign_zone="Australia/Sydney")
    contact = ContactFacts(phone=phone)
    for hours in range(0, 48, 5):
        now = MONDAY_0700_AMS + timedelta(hours=hours)
        assert decide(contact, campaign, now=now) == decide(
            contact, campaign, now=now, resolution=resolution
        )
