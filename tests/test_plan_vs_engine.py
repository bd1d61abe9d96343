"""`dialer plan` says what the engine does: for random contacts, windows and times (public
holidays of the campaign's and of each contact's own included), the verdict plan prints for a
contact (called at T, or skipped for R) equals what the daemon's dispatcher does with it on a
real SQLite store, deferral after deferral, until it dials or closes it.

Both ask the one dial gate; this test is what keeps them from drifting apart again (the plan
once wrote the dispatcher's order out again, and said "no window before deadline" where the
engine skipped the contact for zones that never share an open window).
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import httpx
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dialer.attempts import AttemptState
from dialer.campaign import Campaign, Contact
from dialer.config import Config
from dialer.engine import Engine, EngineSettings
from dialer.plan import plan_campaign
from dialer.policy.calendars import phone_country
from dialer.policy.gate import NO_WINDOW_BEFORE_DEADLINE
from dialer.policy.reminders import ContactTiming
from dialer.policy.windows import CallingWindow, TimeRange, holiday_subdivisions
from dialer.ratelimit import RequestBudget
from dialer.store import Store
from dialer.voicedock import VoiceDockClient
from tests.clock import FakeClock

PHONES = [
    "+31612345678",
    "+12125550199",
    "+61412345678",
    "+919812345678",
    "+5511987654321",
    "+4915112345601",
]
ZONES = ["Europe/Amsterdam", "America/New_York", "Australia/Perth", "Asia/Kolkata"]
# around the 2027 DST changes of Europe, the US and Australia
STARTS = [
    datetime(2027, 3, 13, 12, tzinfo=UTC),
    datetime(2027, 3, 27, 12, tzinfo=UTC),
    datetime(2027, 4, 3, 12, tzinfo=UTC),
    datetime(2027, 10, 30, 12, tzinfo=UTC),
    # ... and the days before holidays of some contacts' own: Corpus Christi (Bavaria and
    # more), Cesar Chavez Day (California), German Unity Day, Tiradentes (Brazil)
    datetime(2027, 5, 26, 12, tzinfo=UTC),
    datetime(2027, 3, 30, 12, tzinfo=UTC),
    datetime(2027, 10, 1, 12, tzinfo=UTC),
    datetime(2027, 4, 20, 12, tzinfo=UTC),
]
#: deferrals the engine may go through before it dials (window, then not_before, ...)
MAX_PASSES = 8

#: a tenth of the contacts are on the campaign's do-not-call list
ONE_IN_TEN = [False] * 9 + [True]

Verdict = tuple[str | None, datetime | None]  # (skip reason, first call)


@st.composite
def campaigns(draw: st.DrawFn) -> tuple[Campaign, datetime]:
    now = draw(st.sampled_from(STARTS)) + timedelta(minutes=draw(st.integers(0, 7 * 24 * 60)))
    start = draw(st.integers(0, 23))
    window = CallingWindow(
        days=frozenset(draw(st.sets(st.integers(0, 6), min_size=1))),
        ranges=(TimeRange(start=time(start), end=time((start + draw(st.integers(1, 12))) % 24)),),
        min_time_before_close=timedelta(minutes=draw(st.sampled_from([0, 10]))),
        holiday_regions=draw(st.sampled_from([(), ("NL",)])),
        # each contact's own public holidays, half of the time
        contact_holidays=draw(st.booleans()),
    )
    timing: dict[str, datetime] = {}
    if draw(st.booleans()):
        timing["appointment_at"] = now + timedelta(minutes=draw(st.integers(-120, 4 * 24 * 60)))
    if draw(st.booleans()):
        timing["deadline"] = now + timedelta(minutes=draw(st.integers(-120, 6 * 24 * 60)))
    phone = draw(st.sampled_from(PHONES))
    country = phone_country(phone)
    known = sorted((holiday_subdivisions(country) or {}).values()) if country else []
    subdivision = draw(st.one_of(st.none(), st.sampled_from(known)) if known else st.none())
    zone = draw(st.sampled_from([None, *ZONES]))
    campaign_zone = draw(st.sampled_from([None, "Australia/Sydney", "America/New_York"]))
    contact = Contact(
        phone=phone,
        timezone=zone,
        timing=ContactTiming(**timing),
        variables={"phone": phone, **({"subdivision": subdivision} if subdivision else {})},
        line=2,
    )
    campaign = Campaign(
        name="planned",
        source=Path("planned.toml"),
        assistant_id="asst_1",
        window=window,
        timezone=campaign_zone,
        unknown_timezone=draw(st.sampled_from(["skip", "campaign"])) if campaign_zone else "skip",
        call_before=draw(st.sampled_from([None, timedelta(hours=24), timedelta(hours=3)])),
        contacts=(contact,),
        suppressed=frozenset({phone}) if draw(st.sampled_from(ONE_IN_TEN)) else frozenset(),
    )
    return campaign, now


def plan_verdict(campaign: Campaign, now: datetime) -> Verdict:
    with tempfile.TemporaryDirectory() as tmp:
        (row,) = plan_campaign(campaign, Config.default(Path(tmp)), now=now)
    return row.skip, row.first_call


def engine_verdict(campaign: Campaign, now: datetime) -> Verdict:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"call_id": "call-1"})

    async def run(store: Store) -> Verdict:
        clock = FakeClock(now)
        budget = RequestBudget(
            100_000, margin=0.0, clock=clock.monotonic, wall_clock=clock.unix, sleep=clock.sleep
        )
        async with VoiceDockClient(
            base_url="http://voicedock.test/api/v1",
            api_key="sim_test_key",
            budget=budget,
            transport=httpx.MockTransport(answer),
        ) as client:
            engine = Engine(
                store=store,
                clients={"default": client},
                campaigns=[campaign],
                settings=EngineSettings(max_concurrent_calls=1),
                clock=clock,
            )
            engine.sync_campaigns()
            engine.fire(campaign.name, now)
            try:
                for _ in range(MAX_PASSES):
                    await engine.dispatch_once()
                    (attempt,) = store.attempts()
                    if attempt.state is not AttemptState.PLANNED:
                        break
                    assert attempt.due_at > clock.now, "a deferral must move the attempt on"
                    clock.now = attempt.due_at
            finally:
                await engine.drain(grace_s=5)
        if attempt.state in (AttemptState.DIALING, AttemptState.IN_FLIGHT):
            return None, attempt.dialing_at
        assert attempt.state in (AttemptState.SKIPPED, AttemptState.EXPIRED), attempt
        (closed,) = store.events(attempt_id=attempt.id, kind=f"attempt.{attempt.state.value}")
        detail = closed.data.get("detail")
        return (detail if detail == NO_WINDOW_BEFORE_DEADLINE else attempt.reason), None

    with tempfile.TemporaryDirectory() as tmp, Store(f"sqlite:///{tmp}/dialer.db") as store:
        store.create_schema()
        return asyncio.run(run(store))


def narrow_sydney_campaign() -> Campaign:
    """An Australian mobile in a Sydney campaign may be in Perth too: 09:00-10:00 local is
    never open in both, and without a deadline the engine skips it (no_common_window)."""
    phone = "+61412345678"
    return Campaign(
        name="planned",
        source=Path("planned.toml"),
        assistant_id="asst_1",
        window=CallingWindow(
            days=frozenset(range(7)),
            ranges=(TimeRange(start=time(9), end=time(10)),),
            min_time_before_close=timedelta(0),
        ),
        timezone="Australia/Sydney",
        contacts=(Contact(phone=phone, variables={"phone": phone}, line=2),),
    )


def bavarian_on_corpus_christi() -> tuple[Campaign, datetime]:
    """A Bavarian in a campaign that asks for the contacts' own holidays, on Corpus Christi (a
    Thursday, a holiday in Bavaria only): called on Friday, by plan and engine alike."""
    phone = "+4915112345601"
    campaign = Campaign(
        name="planned",
        source=Path("planned.toml"),
        assistant_id="asst_1",
        window=CallingWindow(
            days=frozenset(range(7)),
            ranges=(TimeRange(start=time(9), end=time(18)),),
            contact_holidays=True,
        ),
        contacts=(Contact(phone=phone, variables={"phone": phone, "subdivision": "BY"}, line=2),),
    )
    return campaign, datetime(2027, 5, 27, 8, 0, tzinfo=UTC)


@settings(max_examples=60)
@given(campaigns())
@example((narrow_sydney_campaign(), STARTS[0]))
@example(bavarian_on_corpus_christi())
def test_plan_says_what_the_engine_does(case: tuple[Campaign, datetime]) -> None:
    campaign, now = case
    assert plan_verdict(campaign, now) == engine_verdict(campaign, now)
