"""Contacts' own public holidays end to end on the simulator, under one controlled clock.

A Dutch campaign (``holidays = ["NL", "contact"]``, Mon-Sat 09:00-18:00) reaches two
Bavarians, a Berliner and a Dutch contact around Thursday 2027-05-27, Corpus Christi: a public
holiday in Bavaria, not in Berlin, nor in the Netherlands. The real engine, store (a SQLite
file) and API client run over the ASGI simulator, stepped as tests/test_policy_e2e.py does.

=========  ===========  ==================  ===============================================
contact    calendar     forced outcomes     what it shows
=========  ===========  ==================  ===============================================
BAV        DE-BY        no_answer, answered a retry due on the holiday moves to Friday 09:00
BER        DE-BE        no_answer, answered its retry is on Thursday 09:00: no holiday of its own
BAV_LATE   DE-BY        answered            call_at Thursday 10:00: deferred (holiday), called
                                            on Friday at 09:00, the next working day
AMS_LATE   NL           answered            call_at Thursday 10:00: called then (deferred to
                                            it for not_before, no holiday)
=========  ===========  ==================  ===============================================
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from dialer.campaign import load_campaign
from dialer.daemon import engine_settings
from dialer.engine import Engine
from dialer.policy.polling import PollPlan
from dialer.ratelimit import RequestBudget
from dialer.simulator import CreatedRecord, Simulator, SimulatorConfig
from dialer.store import AttemptRecord, EventRecord, Store
from dialer.voicedock import VoiceDockClient
from tests.clock import FakeClock
from tests.e2e import ASSISTANT, KEY, write_config

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2027, 5, 26, 15, 0, tzinfo=UTC)  # Wednesday, 17:00 in Berlin and Amsterdam
END = datetime(2027, 5, 29, 12, 0, tzinfo=UTC)  # Saturday noon
STRIDE = timedelta(minutes=15)

BAV, BAV_LATE = "+4915112345601", "+4915112345603"
BER = "+4915112345602"
AMS_LATE = "+31612345601"
OUTCOMES = {
    BAV: ["no_answer", "answered"],
    BER: ["no_answer", "answered"],
    BAV_LATE: ["answered"],
    AMS_LATE: ["answered"],
}

CAMPAIGN = f"""
name = "holidays"
assistant_id = "{ASSISTANT}"
contacts_file = "holidays.csv"

[window]
days = ["mon-sat"]
hours = ["09:00-18:00"]
holidays = ["NL", "contact"]

[retry]
no_answer = {{ after = "2h", max = 2 }}
"""
CONTACTS = f"""phone,name,subdivision,call_at
{BAV},Jonas Weber,BY,
{BER},Lena Fischer,BE,
{BAV_LATE},Anna Huber,by,2027-05-27 10:00
{AMS_LATE},Sanne de Vries,,2027-05-27 10:00
"""


def berlin(day: int, hour: int) -> datetime:
    """May ``day`` 2027 at ``hour``:00 in Berlin (and Amsterdam), as UTC."""
    return datetime(2027, 5, day, hour, tzinfo=BERLIN).astimezone(UTC)


@dataclass(frozen=True)
class World:
    created: list[CreatedRecord]
    attempts: list[AttemptRecord]
    events: list[EventRecord]

    def calls(self, phone: str) -> list[CreatedRecord]:
        return sorted(
            (r for r in self.created if r.destination == phone), key=lambda r: r.created_at
        )

    def events_of(self, phone: str, kind: str) -> list[EventRecord]:
        ids = {a.id for a in self.attempts if a.phone == phone}
        return [e for e in self.events if e.attempt_id in ids and e.kind == kind]


async def run_world(folder: Path) -> World:
    (folder / "holidays.toml").write_text(CAMPAIGN, encoding="utf-8")
    (folder / "holidays.csv").write_text(CONTACTS, encoding="utf-8")
    config = write_config(folder, db_url=f"sqlite:///{folder}/dialer.db", campaigns="holidays.toml")
    campaign = load_campaign(folder / "holidays.toml")
    fake = FakeClock(T0)
    sim = Simulator(
        SimulatorConfig(
            api_key=KEY, requests_per_minute=100_000, seed=5, destination_outcomes=OUTCOMES
        ),
        clock=fake.monotonic,
        wall_clock=fake,
    )
    budget = RequestBudget(
        100_000, margin=0.0, clock=fake.monotonic, wall_clock=fake.unix, sleep=fake.sleep
    )
    with Store(config.database_url) as store:
        store.create_schema()
        async with VoiceDockClient(
            base_url=config.voicedock.base_url,
            api_key=KEY,
            budget=budget,
            transport=httpx.ASGITransport(app=sim.app),
        ) as client:
            engine = Engine(
                store=store,
                clients={"default": client},
                campaigns=[campaign],
                settings=engine_settings(config, poll=PollPlan(), worker_id="holidays-e2e"),
                clock=fake,
            )
            engine.sync_campaigns()
            assert engine.fire("holidays", T0) is not None
            while fake.now < END:
                await engine.dispatch_once()
                await engine.drain()
                await engine.follow_once()
                upcoming = [fake.now + STRIDE, store.next_due_at(), store.next_poll_at()]
                fake.now = min(t for t in upcoming if t is not None and t > fake.now)
        return World(created=list(sim.created), attempts=store.attempts(), events=store.events())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return asyncio.run(run_world(tmp_path_factory.mktemp("contact_holidays_e2e")))


def test_nobody_is_called_on_a_holiday_of_their_own(world: World) -> None:
    bavarians = {BAV, BAV_LATE}
    assert {r.destination for r in world.created} == set(OUTCOMES)
    for record in world.created:
        day = record.created_at.astimezone(BERLIN).date()
        assert not (record.destination in bavarians and day == berlin(27, 12).date()), record


def test_a_contact_deferred_for_its_holiday_is_called_the_next_working_day(world: World) -> None:
    (call,) = world.calls(BAV_LATE)
    assert call.created_at == berlin(28, 9)  # Friday, 09:00: the window's opening
    # deferred once, when the run fired: its call_at falls on its own holiday
    deferred = world.events_of(BAV_LATE, "attempt.deferred")
    assert [
        (e.at, e.data["reason"], e.data["until"], e.data["calendar"], e.data["holiday"])
        for e in deferred
    ] == [(T0, "holiday", berlin(28, 9).isoformat(), "DE-BY", "Corpus Christi")]
    # and the audit log of the dial names the calendar it was judged in
    (dial,) = world.events_of(BAV_LATE, "attempt.dialing")
    assert "holidays NL,contact=DE-BY" in dial.data["window"]


def test_a_dutch_contact_is_called_on_a_bavarian_holiday(world: World) -> None:
    (call,) = world.calls(AMS_LATE)
    assert call.created_at == berlin(27, 10)
    (dial,) = world.events_of(AMS_LATE, "attempt.dialing")
    assert "holidays NL,contact=NL" in dial.data["window"]


def test_a_retry_due_on_the_contacts_holiday_moves_to_its_next_working_day(world: World) -> None:
    first, second = world.calls(BAV)
    assert (first.outcome, second.outcome) == ("no_answer", "answered")
    assert first.created_at == T0
    # due 2 h later, at 19:00 Wednesday: closed; Thursday is Corpus Christi: Friday 09:00
    assert second.created_at == berlin(28, 9)
    planned = world.events_of(BAV, "attempt.retry_planned")
    assert [e.data["due_at"] for e in planned] == [berlin(28, 9).isoformat()]


def test_a_retry_of_a_contact_without_that_holiday_is_placed_on_it(world: World) -> None:
    first, second = world.calls(BER)
    assert (first.outcome, second.outcome) == ("no_answer", "answered")
    assert second.created_at == berlin(27, 9)  # Thursday 09:00: no holiday in Berlin
