"""Campaign policy end to end on the simulator, under one controlled clock (issue 4).

Ten contacts in eight time zones are run through the real engine, store (a SQLite file) and
API client over the ASGI simulator, across two and a half simulated days, without APScheduler
and without real waiting: one fake time drives the engine's clock, the simulator's clocks and
the request budget's clock, wall clock and sleep. The world is stepped event by event (the next
due attempt, the next due poll) with a bounded stride, so a dial happens at the very instant the
policy allows it, and a dispatcher that looked too early would be seen dialling early.

The scenario starts on Saturday 2027-06-05 12:00 UTC (no DST change anywhere near), with the
default window (Mon-Sat 09:00-20:00 local, no call in the last 10 minutes) and:

=======  ===================  ==============================  =================================
contact  zone                 forced outcomes                 what it shows
=======  ===================  ==============================  =================================
AMS      Europe/Amsterdam     answered                        in window: dialled at once
AMS_DNC  Europe/Amsterdam     -                               config DNC file: skipped, ``dnc``
LON      Europe/London        no_answer, no_answer, answered  a retry, then the frequency cap
                                                              (2 a day) defers the 3rd call
NYC      America/New_York     answered                        08:00 local: deferred to 09:00
NYC_DNC  America/New_York     -                               campaign DNC file: skipped
SFO      America/Los_Angeles  no_answer, answered             deferred, then a retry 3 h later
TYO      Asia/Tokyo           busy, answered                  21:00 Sat, Sunday shut: Mon 09:00
SYD      Australia/Sydney     answered                        22:00 Sat: Mon 09:00 (Sun in UTC)
BOM      Asia/Kolkata         no_answer, answered             the retry falls at 20:30: Mon 09:00
BER      Europe/Berlin        no_answer, answered             deadline 16:00: retry dropped
=======  ===================  ==============================  =================================

Every claim is judged from the simulator's record of creates (destination, created_at) and
from the store (attempt rows, reasons, events); expected instants are computed here by plain
local-time arithmetic, not by the policy code under test.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import select

from dialer.campaign import load_campaign
from dialer.daemon import engine_settings
from dialer.engine import Engine
from dialer.policy.polling import PollPlan
from dialer.ratelimit import RequestBudget
from dialer.simulator import CreatedRecord, Simulator, SimulatorConfig
from dialer.store import EventRecord, Store
from dialer.store.tables import AttemptRow
from dialer.voicedock import VoiceDockClient
from tests.clock import FakeClock
from tests.e2e import ASSISTANT, KEY, write_config

T0 = datetime(2027, 6, 5, 12, 0, tzinfo=UTC)  # a Saturday
END = datetime(2027, 6, 7, 12, 0, tzinfo=UTC)  # Monday noon: every contact is settled by then
#: the longest the world moves without the dispatcher and follower looking at it
STRIDE = timedelta(minutes=15)
NO_ANSWER_AFTER = timedelta(hours=3)
BUSY_AFTER = timedelta(minutes=30)
#: the default window, restated here so the expectations do not lean on the code under test
OPEN, CLOSE, MARGIN = time(9), time(20), timedelta(minutes=10)
SUNDAY = 6

AMS, AMS_DNC = "+31612345601", "+31612345602"
LON = "+442079460101"
NYC, NYC_DNC = "+12125550101", "+12125550102"
SFO = "+14155550104"
TYO = "+819012345601"
SYD = "+61491570156"
BOM = "+919812345678"
BER = "+4915112345601"
#: Berlin's deadline, local: after the first call, before the retry 3 hours later
BER_DEADLINE = "2027-06-05 16:00"

ZONES = {
    AMS: "Europe/Amsterdam",
    AMS_DNC: "Europe/Amsterdam",
    LON: "Europe/London",
    NYC: "America/New_York",
    NYC_DNC: "America/New_York",
    SFO: "America/Los_Angeles",
    TYO: "Asia/Tokyo",
    SYD: "Australia/Sydney",
    BOM: "Asia/Kolkata",
    BER: "Europe/Berlin",
}
OUTCOMES: dict[str, list[str]] = {
    AMS: ["answered"],
    LON: ["no_answer", "no_answer", "answered"],
    NYC: ["answered"],
    SFO: ["no_answer", "answered"],
    TYO: ["busy", "answered"],
    SYD: ["answered"],
    BOM: ["no_answer", "answered"],
    BER: ["no_answer", "answered"],
    # Forced even though they must never be called: a dial would at least get a clean answer.
    AMS_DNC: ["answered"],
    NYC_DNC: ["answered"],
}

CAMPAIGN = f"""
name = "policy"
assistant_id = "{ASSISTANT}"
contacts_file = "policy.csv"
suppression_files = ["campaign-dnc.csv"]

[retry]
max_attempts = 4
no_answer = {{ after = "3h", max = 3 }}
busy = {{ after = "30m", max = 2 }}

[assistant_override]
first_message = "Hello {{{{ name }}}}, a reminder from the clinic."
"""


@dataclass(frozen=True)
class World:
    """What the run left behind: the simulator's record and the store's rows."""

    created: list[CreatedRecord]
    attempts: list[AttemptRow]
    events: list[EventRecord]
    dispatch_rounds: int

    def calls(self, phone: str) -> list[CreatedRecord]:
        return sorted(
            (r for r in self.created if r.destination == phone), key=lambda r: r.created_at
        )

    def attempts_of(self, phone: str) -> list[AttemptRow]:
        return sorted((a for a in self.attempts if a.phone == phone), key=lambda a: a.attempt_no)

    def events_of(self, phone: str, kind: str) -> list[EventRecord]:
        ids = {a.id for a in self.attempts_of(phone)}
        return [e for e in self.events if e.attempt_id in ids and e.kind == kind]

    def ended_at(self, call: CreatedRecord) -> datetime:
        row = next(a for a in self.attempts if a.call_id == call.call_id)
        assert row.ended_at is not None, row
        return row.ended_at


def local(at: datetime, phone: str) -> datetime:
    return at.astimezone(ZoneInfo(ZONES[phone]))


def in_window(at: datetime, phone: str) -> bool:
    moment = local(at, phone)
    last_start = datetime.combine(moment.date(), CLOSE, moment.tzinfo) - MARGIN
    return (
        moment.weekday() != SUNDAY
        and moment.time() >= OPEN
        and moment.replace(tzinfo=None) < last_start.replace(tzinfo=None)
    )


def opening(after: datetime, phone: str) -> datetime:
    """The first instant >= ``after`` inside the window, by plain local-calendar arithmetic."""
    if in_window(after, phone):
        return after
    zone = ZoneInfo(ZONES[phone])
    day = local(after, phone).date()
    while True:
        start = datetime.combine(day, OPEN, zone)
        if start >= after and start.weekday() != SUNDAY:
            return start.astimezone(UTC)
        day += timedelta(days=1)


def at_local(day: int, hour: int, minute: int, phone: str) -> datetime:
    """June ``day`` 2027 at ``hour:minute`` in the contact's zone, as UTC."""
    return datetime(2027, 6, day, hour, minute, tzinfo=ZoneInfo(ZONES[phone])).astimezone(UTC)


def write_world(folder: Path) -> None:
    rows = ["phone,name,timezone,deadline"] + [
        f"{phone},Person {i},{zone},{BER_DEADLINE if phone == BER else ''}"
        for i, (phone, zone) in enumerate(ZONES.items())
    ]
    (folder / "policy.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "policy.toml").write_text(CAMPAIGN, encoding="utf-8")
    (folder / "campaign-dnc.csv").write_text(f"phone,note\n{NYC_DNC},asked us\n", encoding="utf-8")
    (folder / "dnc.txt").write_text(f"# global do-not-call list\n{AMS_DNC}\n", encoding="utf-8")


async def run_world(folder: Path) -> World:
    write_world(folder)
    config = write_config(
        folder,
        db_url=f"sqlite:///{folder}/dialer.db",
        campaigns="policy.toml",
        extra='suppression_files = ["dnc.txt"]\nmax_calls_per_contact = { count = 2, days = 1 }',
    )
    campaign = load_campaign(folder / "policy.toml")
    fake = FakeClock(T0)
    sim = Simulator(
        SimulatorConfig(
            api_key=KEY,
            requests_per_minute=100_000,
            seed=4,
            destination_outcomes=OUTCOMES,
        ),
        clock=fake.monotonic,
        wall_clock=fake,
    )
    budget = RequestBudget(
        100_000, margin=0.0, clock=fake.monotonic, wall_clock=fake.unix, sleep=fake.sleep
    )
    rounds = 0
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
                settings=engine_settings(config, poll=PollPlan(), worker_id="policy-e2e"),
                clock=fake,
            )
            engine.sync_campaigns()
            assert engine.fire("policy", T0) is not None
            while fake.now < END:
                # the POSTs get their answers at this same instant; a campaign's first accepted
                # create lets its other due contacts go at once (the daemon's dispatcher is woken)
                while await engine.dispatch_once():
                    await engine.drain()
                await engine.follow_once()
                rounds += 1
                upcoming = [fake.now + STRIDE, store.next_due_at(), store.next_poll_at()]
                fake.now = min(t for t in upcoming if t is not None and t > fake.now)
        with store.session() as session:
            attempts = list(session.exec(select(AttemptRow)).all())
        return World(
            created=list(sim.created),
            attempts=attempts,
            events=store.events(),
            dispatch_rounds=rounds,
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    # One run serves every test below: each asserts one claim about the same two days.
    return asyncio.run(run_world(tmp_path_factory.mktemp("policy_e2e")))


# ---------------------------------------------------------------------------- the claims
def test_the_world_spans_five_zones_and_two_days(world: World) -> None:
    dialled = {r.destination for r in world.created}
    assert len({ZONES[p] for p in dialled}) >= 5
    assert max(r.created_at for r in world.created) - T0 > timedelta(days=1, hours=12)
    assert world.dispatch_rounds > 150  # the dispatcher looked often, including while shut


def test_every_call_starts_inside_the_contacts_window(world: World) -> None:
    assert world.created
    for record in world.created:
        assert in_window(record.created_at, record.destination), (
            record.destination,
            local(record.created_at, record.destination).isoformat(),
        )


def test_in_window_contacts_are_dialled_at_once(world: World) -> None:
    for phone in (AMS, LON, BOM, BER):
        assert world.calls(phone)[0].created_at == T0, phone
    assert [r.outcome for r in world.calls(AMS)] == ["answered"]


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        (NYC, at_local(5, 9, 0, NYC)),  # Sat 08:00 EDT: the same morning at 09:00
        (SFO, at_local(5, 9, 0, SFO)),  # Sat 05:00 PDT
        (TYO, at_local(7, 9, 0, TYO)),  # Sat 21:00 JST: Sunday is shut, so Monday 09:00
        (SYD, at_local(7, 9, 0, SYD)),  # Sat 22:00 AEST: Monday 09:00, still Sunday in UTC
    ],
)
def test_out_of_window_contacts_are_dialled_at_their_local_opening(
    world: World, phone: str, expected: datetime
) -> None:
    first = world.calls(phone)[0]
    assert first.created_at == expected, local(first.created_at, phone).isoformat()
    assert local(first.created_at, phone).time() == OPEN
    # Deferred once, at the start, to exactly that instant and for the window's reason.
    deferred = world.events_of(phone, "attempt.deferred")
    assert [(e.at, e.data["reason"], e.data["until"]) for e in deferred[:1]] == [
        (T0, "window", expected.isoformat())
    ]
    assert deferred[0].data["zone"] == ZONES[phone]


def test_no_answer_retry_is_spaced_by_the_rule_and_lands_in_the_window(world: World) -> None:
    first, second = world.calls(SFO)
    assert first.outcome == "no_answer" and second.outcome == "answered"
    # 09:00 PDT + ring + 3 h is still inside the window: exactly the rule's spacing.
    assert second.created_at == world.ended_at(first) + NO_ANSWER_AFTER


def test_busy_retry_uses_the_busy_rule(world: World) -> None:
    first, second = world.calls(TYO)
    assert (first.outcome, second.outcome) == ("busy", "answered")
    assert second.created_at == world.ended_at(first) + BUSY_AFTER


def test_a_retry_that_falls_after_closing_moves_to_the_next_opening(world: World) -> None:
    first, second = world.calls(BOM)
    due = world.ended_at(first) + NO_ANSWER_AFTER
    assert not in_window(due, BOM)  # 20:30 IST on Saturday
    # Sunday is shut too: Monday 09:00 in Kolkata.
    assert second.created_at == opening(due, BOM) == at_local(7, 9, 0, BOM)
    planned = world.events_of(BOM, "attempt.retry_planned")
    assert [(e.data["reason"], e.data["due_at"]) for e in planned] == [
        ("retry:no_answer", second.created_at.isoformat())
    ]


def test_the_frequency_cap_defers_the_third_call_with_its_reason(world: World) -> None:
    calls = world.calls(LON)
    assert [r.outcome for r in calls] == ["no_answer", "no_answer", "answered"]
    assert calls[1].created_at == world.ended_at(calls[0]) + NO_ANSWER_AFTER
    retry_due = world.ended_at(calls[1]) + NO_ANSWER_AFTER
    assert in_window(retry_due, LON)  # only the cap stands in the way (2 calls a day)
    cap_free = calls[0].created_at + timedelta(days=1)  # Sunday noon: shut
    assert calls[2].created_at == opening(cap_free, LON) == at_local(7, 9, 0, LON)
    # No window of 24 h ever holds more than the cap's two calls.
    for earlier, later in zip(calls, calls[2:], strict=False):
        assert later.created_at - earlier.created_at >= timedelta(days=1)
    capped = [e for e in world.events_of(LON, "attempt.deferred") if e.data["reason"] == "cap"]
    assert [(e.at, e.data["until"]) for e in capped] == [
        (retry_due, calls[2].created_at.isoformat())
    ]
    assert world.attempts_of(LON)[2].reason is None  # dialled since; the event keeps the why


def test_a_retry_due_after_the_deadline_is_dropped_and_recorded(world: World) -> None:
    (only,) = world.calls(BER)
    assert (only.created_at, only.outcome) == (T0, "no_answer")
    deadline = at_local(5, 16, 0, BER)
    assert world.ended_at(only) + NO_ANSWER_AFTER >= deadline
    (attempt,) = world.attempts_of(BER)
    assert (attempt.state, attempt.outcome) == ("ended", "no_answer")
    expired = [e for e in world.events if e.kind == "retry.expired" and e.attempt_id == attempt.id]
    assert [e.data["outcome"] for e in expired] == ["no_answer"]


@pytest.mark.parametrize("phone", [AMS_DNC, NYC_DNC], ids=["config-dnc", "campaign-dnc"])
def test_do_not_call_numbers_are_never_dialled_and_say_why(world: World, phone: str) -> None:
    assert world.calls(phone) == []
    (attempt,) = world.attempts_of(phone)
    assert (attempt.state, attempt.reason, attempt.dialing_at) == ("skipped", "dnc", None)
    skipped = world.events_of(phone, "attempt.skipped")
    assert [(e.at, e.data["reason"]) for e in skipped] == [(T0, "dnc")]


def test_every_contact_ends_settled_with_one_call_per_attempt(world: World) -> None:
    by_phone = {p: world.attempts_of(p) for p in ZONES}
    for phone, attempts in by_phone.items():
        last = attempts[-1]
        assert last.state in ("ended", "skipped"), (phone, last.state)
        expected = {AMS_DNC: 0, NYC_DNC: 0, BER: 1}.get(phone, len(OUTCOMES[phone]))
        dialled = [a for a in attempts if a.call_id is not None]
        assert len(dialled) == len(world.calls(phone)) == expected, phone
