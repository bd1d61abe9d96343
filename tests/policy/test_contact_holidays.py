"""The dial gate with ``[window] holidays = ["contact"]``: each contact's own public holidays.

Tables for the cases a user meets (a German contact in a Dutch campaign, a Bavarian one, a US
contact with its state), then properties judged against the holidays package itself: a contact
is never allowed on a day its own calendar marks a holiday, its calendar only ever closes days
(never opens one), and without "contact" its subdivision changes nothing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.attempts import AttemptState
from dialer.policy.gate import (
    Allow,
    Close,
    ContactFacts,
    Defer,
    DialRules,
    decide,
    first_allowed,
)
from dialer.policy.reminders import ContactTiming
from dialer.policy.timezones import resolve_zone
from dialer.policy.windows import CallingWindow, TimeRange

DE = "+4915112345601"  # a German mobile: Europe/Berlin
NL = "+31612345678"  # Europe/Amsterdam
NYC = "+12125550199"  # America/New_York
BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


def dutch_campaign(*, contact: bool = True, days: range = range(7)) -> DialRules:
    """A Dutch campaign's window, 09:00-18:00, with the contacts' own holidays or without."""
    return DialRules(
        window=CallingWindow(
            days=frozenset(days),
            ranges=(TimeRange(start=time(9), end=time(18)),),
            holiday_regions=("NL",),
            contact_holidays=contact,
        )
    )


def local(day: date, hour: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour), zone).astimezone(UTC)


# ----------------------------------------------------------------------- tables
UNITY_DAY = date(2027, 10, 3)  # Tag der Deutschen Einheit: German only (a Sunday)
CORPUS_CHRISTI = date(2027, 5, 27)  # a Thursday: a holiday in Bavaria, not in Berlin
CHAVEZ_DAY = date(2027, 3, 31)  # a Wednesday: a holiday in California only


def test_a_german_contact_in_a_dutch_campaign_is_not_called_on_a_german_holiday() -> None:
    now = local(UNITY_DAY, 10, BERLIN)
    decision = decide(ContactFacts(phone=DE), dutch_campaign(), now=now)
    assert decision == Defer(
        until=local(UNITY_DAY + timedelta(days=1), 9, BERLIN),
        reason="holiday",
        rule="window",
        detail={
            "zone": "Europe/Berlin",
            "local_time": "2027-10-04T09:00:00+02:00",
            "calendar": "DE",
            "holiday": "German Unity Day",
        },
    )
    # the Dutch contact of the same campaign is called that day: it is no Dutch holiday
    dutch = decide(ContactFacts(phone=NL), dutch_campaign(), now=now)
    assert isinstance(dutch, Allow)
    assert "holidays NL,contact=NL" in dutch.window.describe()
    # without "contact", the campaign's Dutch calendar alone: the German is called too
    assert isinstance(decide(ContactFacts(phone=DE), dutch_campaign(contact=False), now=now), Allow)


def test_a_bavarian_contact_is_not_called_on_a_bavarian_holiday() -> None:
    now = local(CORPUS_CHRISTI, 10, BERLIN)
    bavarian = ContactFacts(phone=DE, subdivision="BY")
    decision = decide(bavarian, dutch_campaign(), now=now)
    assert isinstance(decision, Defer) and decision.reason == "holiday"
    assert decision.until == local(CORPUS_CHRISTI + timedelta(days=1), 9, BERLIN)
    assert (decision.detail["calendar"], decision.detail["holiday"]) == ("DE-BY", "Corpus Christi")
    # allowed the next morning, judged in the Bavarian calendar: the audit log says so
    later = decide(bavarian, dutch_campaign(), now=decision.until)
    assert isinstance(later, Allow) and "holidays NL,contact=DE-BY" in later.window.describe()
    # a German contact elsewhere (no subdivision: the national calendar) is called that day
    berliner = decide(ContactFacts(phone=DE), dutch_campaign(), now=now)
    assert isinstance(berliner, Allow) and "contact=DE " in berliner.window.describe()


def test_a_us_contact_is_judged_in_its_states_calendar() -> None:
    now = local(CHAVEZ_DAY, 10, NEW_YORK)  # the number's zone: New York
    californian = ContactFacts(phone=NYC, subdivision="CA")
    decision = decide(californian, dutch_campaign(days=range(5)), now=now)
    assert isinstance(decision, Defer)
    assert decision.until == local(CHAVEZ_DAY + timedelta(days=1), 9, NEW_YORK)
    assert decision.detail["calendar"] == "US-CA"
    assert decision.detail["holiday"] == "Cesar Chavez Day"
    new_yorker = ContactFacts(phone=NYC, subdivision="NY")
    assert isinstance(decide(new_yorker, dutch_campaign(days=range(5)), now=now), Allow)


def test_a_holiday_the_campaign_and_the_contact_share_names_the_campaigns_calendar() -> None:
    christmas = local(date(2027, 12, 27), 10, BERLIN)  # Monday: 2nd day of Christmas, both
    decision = decide(ContactFacts(phone=DE), dutch_campaign(), now=christmas - timedelta(days=1))
    assert isinstance(decision, Defer) and decision.detail["calendar"] == "NL"


def test_a_subdivision_its_country_lacks_skips_the_contact() -> None:
    # the loader refuses it first; a stored one is never judged without its holidays
    facts = ContactFacts(phone=DE, subdivision="CA")
    now = local(CORPUS_CHRISTI, 10, BERLIN)
    assert decide(facts, dutch_campaign(), now=now) == Close(
        state=AttemptState.SKIPPED,
        reason="unknown_subdivision",
        rule="window",
        detail={"subdivision": "CA"},
    )
    # without "contact" the subdivision is only a template variable
    assert isinstance(decide(facts, dutch_campaign(contact=False), now=now), Allow)


def test_a_contact_of_no_calendar_has_only_the_campaigns_holidays() -> None:
    freephone = ContactFacts(phone="+80012345678", timezone="Europe/Amsterdam")
    kings_day = local(date(2027, 4, 27), 10, ZoneInfo("Europe/Amsterdam"))
    decision = decide(freephone, dutch_campaign(), now=kings_day)
    assert isinstance(decision, Defer) and decision.detail["calendar"] == "NL"
    later = decide(freephone, dutch_campaign(), now=decision.until)
    assert isinstance(later, Allow) and "contact=none" in later.window.describe()


# ----------------------------------------------------------------------- properties
#: numbers of countries with subdivisions, one zone each or several (an Australian mobile in a
#: Sydney campaign may be in any Australian zone)
PHONES = [DE, NL, NYC, "+447911123456", "+61412345678", "+33612345678", "+5511987654321"]
SUPPORTED = holidays.list_supported_countries()


def country(phone: str) -> str:
    region = phonenumbers.region_code_for_number(phonenumbers.parse(phone))
    assert region is not None
    return region


def oracle(phone: str, subdivision: str | None, year: int) -> holidays.HolidayBase:
    """The contact's holidays, asked of the holidays package directly."""
    return holidays.country_holidays(country(phone), subdiv=subdivision, years=year)


@st.composite
def cases(draw: st.DrawFn) -> tuple[ContactFacts, DialRules, datetime]:
    phone = draw(st.sampled_from(PHONES))
    known = SUPPORTED[country(phone)]
    subdivision = draw(st.one_of(st.none(), st.sampled_from(known)) if known else st.none())
    # near one of its own holidays, often: that is where it matters
    year = draw(st.sampled_from([2027, 2028]))
    days = sorted(oracle(phone, subdivision, year))
    day = draw(st.sampled_from(days)) if days and draw(st.booleans()) else date(year, 6, 1)
    now = datetime.combine(day, time(0), UTC) + timedelta(
        minutes=draw(st.integers(-2 * 24 * 60, 2 * 24 * 60))
    )
    timing = {}
    if draw(st.booleans()):
        timing["deadline"] = now + timedelta(minutes=draw(st.integers(60, 6 * 24 * 60)))
    start = draw(st.integers(0, 22))
    window = CallingWindow(
        days=frozenset(draw(st.sets(st.integers(0, 6), min_size=1))),
        # ranges within their day: each call's day is then the local date it starts on
        ranges=(TimeRange(start=time(start), end=time(draw(st.integers(start + 1, 23)))),),
        holiday_regions=tuple(draw(st.sets(st.sampled_from(["NL", "US"]), max_size=1))),
        contact_holidays=True,
        min_time_before_close=timedelta(minutes=draw(st.sampled_from([0, 10]))),
    )
    facts = ContactFacts(phone=phone, subdivision=subdivision, timing=ContactTiming(**timing))
    return facts, DialRules(window=window, timezone="Australia/Sydney"), now


def zones(facts: ContactFacts, rules: DialRules) -> tuple[ZoneInfo, ...]:
    return resolve_zone(facts.phone, explicit=None, campaign_zone=rules.timezone).zones


def assert_no_holiday_of_the_contact(facts: ContactFacts, rules: DialRules, at: datetime) -> None:
    for zone in zones(facts, rules):
        day = at.astimezone(zone).date()
        assert day not in oracle(facts.phone, facts.subdivision, day.year), (zone, day)


@given(cases())
def test_a_contact_is_never_allowed_on_its_own_holiday(
    case: tuple[ContactFacts, DialRules, datetime],
) -> None:
    facts, rules, now = case
    decision = decide(facts, rules, now=now)
    if isinstance(decision, Allow):
        assert_no_holiday_of_the_contact(facts, rules, now)
    if isinstance(decision, Defer):
        # where a deferral ends, the dial is allowed, and that day is no holiday of its own
        assert isinstance(decide(facts, rules, now=decision.until), Allow)
        assert_no_holiday_of_the_contact(facts, rules, decision.until)


@given(cases())
def test_its_own_calendar_only_ever_closes_days(
    case: tuple[ContactFacts, DialRules, datetime],
) -> None:
    facts, rules, now = case
    without = replace(rules, window=replace(rules.window, contact_holidays=False))
    mine, campaigns = decide(facts, rules, now=now), decide(facts, without, now=now)
    mine_at, campaigns_at = first_allowed(mine, now), first_allowed(campaigns, now)
    if campaigns_at is None:
        assert mine_at is None
    elif mine_at is not None:
        assert mine_at >= campaigns_at
    if mine_at != campaigns_at:
        # delayed (or closed) only by a holiday of its own the campaign's window lacks
        assert campaigns_at is not None
        assert any(
            campaigns_at.astimezone(zone).date()
            in oracle(facts.phone, facts.subdivision, campaigns_at.astimezone(zone).year)
            for zone in zones(facts, rules)
        )


@given(cases(), st.sampled_from([None, "BY", "CA", "XX", "Bavaria"]))
def test_without_contact_the_subdivision_changes_nothing(
    case: tuple[ContactFacts, DialRules, datetime], subdivision: str | None
) -> None:
    facts, rules, now = case
    without = replace(rules, window=replace(rules.window, contact_holidays=False))
    assert decide(replace(facts, subdivision=subdivision), without, now=now) == decide(
        replace(facts, subdivision=None), without, now=now
    )


@pytest.mark.parametrize("phone", PHONES)
def test_every_subdivision_the_holidays_package_knows_is_accepted(phone: str) -> None:
    rules = dutch_campaign()
    now = local(date(2027, 6, 2), 12, BERLIN)
    for subdivision in SUPPORTED[country(phone)]:
        decision = decide(ContactFacts(phone=phone, subdivision=subdivision), rules, now=now)
        assert not isinstance(decision, Close) or decision.reason != "unknown_subdivision"
