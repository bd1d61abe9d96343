"""A dial that waits for the request budget (a 429's pause) while other daemons look at it.

One fake time drives the engines, the simulator and the budgets; a budget paused by
``pause_for`` holds its create until the test moves time past the pause, so each test can act
(as another daemon would) while the POST is queued. Double dials are judged from the
simulator's record of creates, never from our own database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from dialer.attempts import AttemptState
from dialer.campaign import Campaign, load_campaign
from dialer.daemon import worker_id
from dialer.engine import YIELD_EVERY, Engine
from dialer.policy.polling import PollPlan
from dialer.simulator import Faults, Simulator, SimulatorConfig
from dialer.store import AttemptView, CampaignState, Store
from dialer.voicedock import Call
from dialer.webhooks import parse_event
from tests.clock import FakeClock, eventually
from tests.e2e import ASSISTANT, KEY, nl_numbers, write_config
from tests.engine_world import (
    CREATE_TIMEOUT,
    PHONE,
    RECHECK,
    RETRY_AFTER_S,
    SETTLE,
    T0,
    World,
    held_budget,
    simulator,
    world,
)


# ---------------------------------------------------------------------------- withdrawn creates
async def test_a_create_queued_past_a_takeover_is_withdrawn_not_sent(tmp_path: Path) -> None:
    """Daemon A's create waits out a 429 pause; meanwhile daemon B takes A for dead,
    reconciles the dial as absent and dials the contact itself. A's POST must never go out."""
    clock = FakeClock(T0, autojump=False)
    sim = simulator(clock)
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock) as w:
        a_budget = held_budget(w)
        a = await w.engine("a", a_budget)
        b = await w.engine("b")
        assert a.fire("e2e", T0) is not None
        assert await a.dispatch_once() == 1
        await eventually(lambda: a_budget.waiting() == 1)  # the create is queued, unsent

        clock.advance(CREATE_TIMEOUT + SETTLE + RECHECK + timedelta(seconds=1))
        assert await b.reconcile_once() == 1  # nothing listed: released for a new dial
        assert await b.dispatch_once() == 1
        await b.drain()
        taken = w.attempt()
        assert (taken.state, taken.owner) == (AttemptState.IN_FLIGHT, "b")

        clock.advance(timedelta(seconds=RETRY_AFTER_S))  # A's pause ends; its slot comes
        await a.drain()
        assert a.stats.get("withdrawn") == 1
        assert [r.destination for r in sim.created] == [PHONE]  # one call, B's
        after = w.attempt()
        assert (after.state, after.call_id, after.owner) == (
            AttemptState.IN_FLIGHT,
            taken.call_id,
            "b",
        )


async def test_a_create_that_waited_past_the_window_is_withdrawn_and_deferred(
    tmp_path: Path,
) -> None:
    """The window was open when the dial was queued and is shut when its slot comes: nothing
    is sent, and the contact waits for the next opening (non-negotiable 3)."""
    clock = FakeClock(T0, autojump=False)
    sim = simulator(clock)
    closes_soon = (
        '[window]\ndays = ["mon-sun"]\nhours = ["09:00-09:35"]\nmin_time_before_close = "0s"\n'
    )
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock, window=closes_soon) as w:
        a_budget = held_budget(w)
        a = await w.engine("a", a_budget)
        assert a.fire("e2e", T0) is not None
        assert await a.dispatch_once() == 1  # 09:30 local: open
        await eventually(lambda: a_budget.waiting() == 1)

        clock.advance(timedelta(seconds=RETRY_AFTER_S))  # 09:40 local: shut
        await a.drain()
        assert sim.created == []
        released = w.attempt()
        assert (released.state, released.reason) == (AttemptState.PLANNED, "withdrawn:window")

        assert await a.dispatch_once() == 0  # the usual rules now defer it
        deferred = w.attempt()
        tomorrow_nine = datetime(2027, 3, 2, 9, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
        assert (deferred.reason, deferred.due_at) == ("window", tomorrow_nine)


async def test_a_create_queued_when_its_number_was_put_on_the_dnc_list_is_withdrawn(
    tmp_path: Path,
) -> None:
    dnc = tmp_path / "dnc.txt"
    dnc.write_text("# do-not-call\n", encoding="utf-8")
    clock = FakeClock(T0, autojump=False)
    sim = simulator(clock)
    extra = 'suppression_files = ["dnc.txt"]'
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock, extra=extra) as w:
        a_budget = held_budget(w)
        a = await w.engine("a", a_budget)
        assert a.fire("e2e", T0) is not None
        assert await a.dispatch_once() == 1
        await eventually(lambda: a_budget.waiting() == 1)
        dnc.write_text(f"{PHONE}\n", encoding="utf-8")  # asked while the dial waited
        assert await a.dispatch_once() == 0  # the next pass reads the list again

        clock.advance(timedelta(seconds=RETRY_AFTER_S))
        await a.drain()
        assert sim.created == []
        assert w.attempt().reason == "withdrawn:dnc"
        assert await a.dispatch_once() == 0
        assert (w.attempt().state, w.attempt().reason) == (AttemptState.SKIPPED, "dnc")


async def test_a_short_budget_wait_sends_without_a_recheck(tmp_path: Path) -> None:
    """The re-check costs a write, so it is only made after a wait worth one."""
    clock = FakeClock(T0)
    sim = simulator(clock)
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock) as w:
        a = await w.engine("a")
        assert a.fire("e2e", T0) is not None
        assert await a.dispatch_once() == 1
        await a.drain()
        assert [r.destination for r in sim.created] == [PHONE]
        assert w.store.events(kind="attempt.sending") == []
        assert w.attempt().state is AttemptState.IN_FLIGHT


# ---------------------------------------------------------------------------- settle delay
class LateListing:
    """VoiceDock as an ambiguous create sees it: the POST answers 504 although the call was
    made, and the call shows up in ``GET /calls`` only once ``visible`` is set."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.visible = False
        self.posts: list[datetime] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.posts.append(self.clock.now)
            return httpx.Response(504, json={"error": "gateway timeout"})
        assert request.url.path.endswith("/calls"), request.url
        calls = [self.call()] if self.visible and self.posts else []
        return httpx.Response(
            200, json={"calls": calls, "pagination": {"total": len(calls), "offset": 0}}
        )

    def call(self) -> dict[str, object]:
        return {
            "id": "call-late-1",
            "status": "connecting",
            "caller_phone": PHONE,
            "agent_id": ASSISTANT,
            "created_at": self.posts[0].isoformat(),
        }


async def test_the_settle_delay_counts_from_the_send_not_from_the_queueing(
    tmp_path: Path,
) -> None:
    """An ambiguous create that waited in the budget: reconciliation gives VoiceDock its settle
    delay from when the POST went out, so a call listed late is adopted, not dialled again."""
    clock = FakeClock(T0, autojump=False)
    api = LateListing(clock)
    async with world(tmp_path, httpx.MockTransport(api.handler), clock) as w:
        a_budget = held_budget(w)
        a = await w.engine("a", a_budget)
        assert a.fire("e2e", T0) is not None
        assert await a.dispatch_once() == 1
        await eventually(lambda: a_budget.waiting() == 1)
        clock.advance(timedelta(seconds=RETRY_AFTER_S))
        await a.drain()
        sent_at = T0 + timedelta(seconds=RETRY_AFTER_S)
        assert api.posts == [sent_at]
        (sending,) = w.store.events(kind="attempt.sending")
        assert sending.data["queued_s"] == RETRY_AFTER_S
        ambiguous = w.attempt()
        assert (ambiguous.state, ambiguous.reason) == (AttemptState.DIALING, "ambiguous_create")
        assert ambiguous.dialing_at == sent_at

        # Long past the settle delay counted from the queueing, within it from the send.
        clock.advance(CREATE_TIMEOUT + SETTLE)
        assert await a.reconcile_once() == 0
        assert w.attempt().state is AttemptState.DIALING

        api.visible = True  # VoiceDock's list caught up
        clock.advance(RECHECK)
        assert await a.reconcile_once() == 1
        adopted = w.attempt()
        assert (adopted.state, adopted.call_id) == (AttemptState.IN_FLIGHT, "call-late-1")
        assert len(api.posts) == 1


# ---------------------------------------------------------------------------- heartbeat
async def test_the_heartbeat_goes_on_while_every_request_is_held(tmp_path: Path) -> None:
    """A daemon whose requests all wait out a 429 pause is alive: its heartbeat must not wait
    behind them, or another daemon would reconcile its queued dials as dead ones."""
    clock = FakeClock(T0, autojump=False)
    sim = simulator(clock)
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock) as w:
        a_budget = held_budget(w)
        a = await w.engine("a", a_budget)
        assert a.fire("e2e", T0) is not None
        # A dial of ours from before a restart: reconciliation lists calls, which waits.
        (planned,) = w.store.due_attempts(now=T0, limit=1)
        assert w.store.begin_dialing(planned.id, owner="a", body={}, now=T0 - timedelta(hours=1))

        stop = asyncio.Event()
        running = asyncio.create_task(a.run(stop))
        try:
            await eventually(lambda: a_budget.waiting() == 1)  # the reconcile's list waits
            ttl = timedelta(seconds=30)
            for _ in range(3):
                clock.advance(ttl)
                await eventually(lambda: "a" in w.store.live_workers(now=clock.now, ttl=ttl))
            assert a_budget.waiting() == 1  # still held: nothing was sent meanwhile
            assert sim.created == []
        finally:
            stop.set()
            await running


# ---------------------------------------------------------------------------- webhooks
def webhook(
    kind: str, call_id: str, *, attempt_id: int | None = None, **fields: object
) -> dict[str, object]:
    metadata = {} if attempt_id is None else {"dialer_attempt_id": attempt_id}
    return {
        "message": {
            "type": kind,
            "call": {"id": call_id, "type": "outbound_phone_call", "status": "ended"},
            "customer": {"number": PHONE},
            "assistant": {"metadata": metadata},
            **fields,
        }
    }


#: campaigns whose every fire calls everyone again (what tests of several runs of one list need)
EVERY_RUN = 'repeat = "every_run"'

REPORT = {
    "end_reason": "customer-ended-call",
    "duration_seconds": 61,
    "summary": "Confirmed the appointment.",
    "analysis": {"successEvaluation": "true"},
    "messages": [{"role": "assistant", "content": "Hello"}],
}


@dataclass(frozen=True)
class Placed:
    """One call placed on the simulator by daemon "a", now followed as in flight."""

    w: World
    engine: Engine
    call_id: str
    sim: Simulator
    clock: FakeClock

    def over_and_not_polled(self) -> AttemptView:
        """An hour later (the simulated call is over), with no poll due for a day: only a
        webhook, or the grace GET after one, can end it."""
        self.clock.advance(timedelta(hours=1))
        attempt = self.w.attempt()
        later = self.clock.now + timedelta(days=1)
        self.w.store.reschedule_poll(attempt.id, next_poll_at=later, now=self.clock.now)
        return attempt


def looks_by_plan() -> PollPlan:
    """Looks only when the poll plan says (no lists on the spare budget, as with webhooks
    configured), so that only a webhook, or the grace GET after one, ends a call."""
    plan = PollPlan()
    return replace(plan, list_interval_min=plan.list_interval)


@contextlib.asynccontextmanager
async def lines_world(
    tmp_path: Path, *, contacts: int, lines: int
) -> AsyncIterator[tuple[World, Simulator]]:
    """``contacts`` contacts on the simulator, a campaign of at most ``lines`` calls at once."""
    clock = FakeClock(T0)
    sim = simulator(clock)
    async with world(
        tmp_path,
        httpx.ASGITransport(app=sim.app),
        clock,
        phones=nl_numbers(contacts),
        extra=f"max_concurrent_calls = {lines}",
    ) as w:
        yield w, sim


@pytest.fixture
async def placed(tmp_path: Path) -> AsyncIterator[Placed]:
    clock = FakeClock(T0)
    sim = simulator(clock)
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock) as w:
        engine = await w.engine("a", poll=looks_by_plan())
        assert engine.fire("e2e", T0) is not None
        assert await engine.dispatch_once() == 1
        await engine.drain()
        call_id = w.attempt().call_id
        assert call_id is not None
        yield Placed(w=w, engine=engine, call_id=call_id, sim=sim, clock=clock)


async def test_the_outcome_comes_from_the_report_not_from_the_ended_status_update(
    placed: Placed,
) -> None:
    w = placed.w
    engine = placed.engine
    call_id = placed.call_id
    sim = placed.sim
    clock = placed.clock
    requests = len(sim.request_log)

    ended = parse_event(webhook("status-update", call_id, status="ended"))
    await engine.on_webhook(ended)
    assert w.attempt().state is AttemptState.IN_FLIGHT  # the report is on its way

    await engine.on_webhook(parse_event(webhook("end-of-call-report", call_id, **REPORT)))
    recorded = w.attempt()
    assert recorded.state is AttemptState.ENDED
    assert (recorded.duration_seconds, recorded.summary) == (61, REPORT["summary"])

    await engine.on_webhook(ended)  # a late duplicate of the status-update
    await engine.on_webhook(parse_event(webhook("end-of-call-report", call_id, **REPORT)))
    clock.advance(timedelta(minutes=5))
    await engine.follow_once()
    assert len(sim.request_log) == requests  # not one request spent on the call's end
    assert len(w.store.events(kind="attempt.ended")) == 1


@pytest.mark.parametrize("by_metadata", [False, True])
async def test_an_ended_status_update_frees_the_line_before_the_report_comes(
    tmp_path: Path, by_metadata: bool
) -> None:
    """One line, two contacts: the first call's `ended` status-update lets the second be
    dialled at once, while the first waits in flight for the report that brings its outcome.
    Its line is freed once: the report's end does not free it again. ``by_metadata``: the
    webhook's call id is not the create's (UNCONFIRMED, §4); our metadata names the attempt."""
    async with lines_world(tmp_path, contacts=3, lines=1) as (w, sim):
        engine = await w.engine("a", poll=looks_by_plan())
        assert engine.fire("e2e", T0) is not None
        assert await engine.dispatch_once() == 1
        await engine.drain()
        assert await engine.dispatch_once() == 0  # the one line is taken
        (first,) = w.store.attempts(states=[AttemptState.IN_FLIGHT])
        assert first.call_id is not None

        ended = (
            webhook("status-update", "5c4d030f-uuid", attempt_id=first.id, status="ended")
            if by_metadata
            else webhook("status-update", first.call_id, status="ended")
        )
        await engine.on_webhook(parse_event(ended))
        assert await engine.dispatch_once() == 1  # the line is free; the outcome is not in
        await engine.drain()
        assert w.store.attempt(first.id).state is AttemptState.IN_FLIGHT
        assert len(w.store.attempts(states=[AttemptState.IN_FLIGHT])) == 2
        assert await engine.dispatch_once() == 0  # the second call takes the line

        report = webhook(
            "end-of-call-report",
            "5c4d030f-uuid" if by_metadata else first.call_id,
            attempt_id=first.id,
            **REPORT,
        )
        await engine.on_webhook(parse_event(report))
        assert w.store.attempt(first.id).state is AttemptState.ENDED
        assert await engine.dispatch_once() == 0  # still one line, the second call's
        assert len(sim.created) == 2


async def test_a_line_freed_by_a_status_update_is_not_freed_again_once_the_end_is_in(
    tmp_path: Path,
) -> None:
    """An end recorded by another way (a list, another daemon) while the report is awaited:
    the store no longer counts the call, and the freed line is not subtracted a second time."""
    async with lines_world(tmp_path, contacts=4, lines=2) as (w, sim):
        engine = await w.engine("a", poll=looks_by_plan())
        b = await w.engine("b", poll=looks_by_plan())
        assert engine.fire("e2e", T0) is not None
        assert await engine.dispatch_once() == 2
        await engine.drain()
        first, _ = w.store.attempts(states=[AttemptState.IN_FLIGHT])
        assert first.call_id is not None
        ended = webhook("status-update", first.call_id, status="ended")
        await engine.on_webhook(parse_event(ended))
        # daemon b receives the report (its own receiver) and records the end
        await b.on_webhook(parse_event(webhook("end-of-call-report", first.call_id, **REPORT)))
        assert w.store.attempt(first.id).state is AttemptState.ENDED
        assert await engine.dispatch_once() == 1  # one line free, not two
        await engine.drain()
        assert len(sim.created) == 3
        assert await engine.dispatch_once() == 0
        assert not engine.store.live_among([first.id])


async def test_a_report_without_the_call_id_is_recorded_by_our_metadata(
    placed: Placed,
) -> None:
    w = placed.w
    report = webhook("end-of-call-report", placed.call_id, attempt_id=w.attempt().id, **REPORT)
    message = report["message"]
    assert isinstance(message, dict)
    del message["call"]["id"]
    await placed.engine.on_webhook(parse_event(report))
    recorded = w.attempt()
    assert recorded.state is AttemptState.ENDED
    assert (recorded.call_id, recorded.summary) == (placed.call_id, REPORT["summary"])


async def test_an_ended_call_whose_report_never_comes_is_read_after_the_grace(
    placed: Placed,
) -> None:
    w = placed.w
    engine = placed.engine
    call_id = placed.call_id
    sim = placed.sim
    clock = placed.clock
    placed.over_and_not_polled()

    await engine.on_webhook(parse_event(webhook("status-update", call_id, status="ended")))
    await engine.follow_once()
    assert w.attempt().state is AttemptState.IN_FLIGHT  # within the grace: no GET yet

    clock.advance(engine.settings.report_grace)
    await engine.follow_once()
    recorded = w.attempt()
    assert recorded.state is AttemptState.ENDED
    assert recorded.outcome is not None and recorded.call_status in ("ended", "failed")
    gets = [r for r in sim.request_log if r.method == "GET" and call_id in r.path]
    assert len(gets) == 1


async def test_the_grace_get_finds_the_attempt_by_its_metadata_when_ids_differ(
    placed: Placed,
) -> None:
    """Whether webhook call ids equal the create's is UNCONFIRMED (§4): the attempt id our
    metadata carries still finds the call to read."""
    w = placed.w
    engine = placed.engine
    call_id = placed.call_id
    sim = placed.sim
    clock = placed.clock
    attempt = placed.over_and_not_polled()
    ended = webhook("status-update", "5c4d030f-uuid", attempt_id=attempt.id, status="ended")
    await engine.on_webhook(parse_event(ended))
    clock.advance(engine.settings.report_grace)
    await engine.follow_once()
    assert w.attempt().state is AttemptState.ENDED
    assert [r.path for r in sim.request_log if r.method == "GET"] == [f"/api/v1/calls/{call_id}"]


async def test_an_answered_call_that_ends_with_an_error_waits_for_its_report(
    placed: Placed,
) -> None:
    w = placed.w
    engine = placed.engine
    call_id = placed.call_id
    await engine.on_webhook(parse_event(webhook("status-update", call_id, status="in-progress")))
    error = webhook("status-update", call_id, status="ended-with-error", error="STT failed")
    await engine.on_webhook(parse_event(error))
    assert w.attempt().state is AttemptState.IN_FLIGHT
    await engine.on_webhook(parse_event(webhook("end-of-call-report", call_id, **REPORT)))
    recorded = w.attempt()
    assert (recorded.state, recorded.summary) == (AttemptState.ENDED, REPORT["summary"])


async def test_a_call_that_never_connected_is_recorded_from_its_error_at_once(
    placed: Placed,
) -> None:
    w = placed.w
    engine = placed.engine
    call_id = placed.call_id
    error = webhook("status-update", call_id, status="ended-with-error", error="busy")
    await engine.on_webhook(parse_event(error))
    recorded = w.attempt()
    assert (recorded.state, recorded.call_status) == (AttemptState.ENDED, "failed")


async def test_a_long_dispatch_pass_lets_the_heartbeat_run(tmp_path: Path) -> None:
    """A run fired outside its window defers every contact in one pass, a write each (35,000
    took 74 s on PostgreSQL): the event loop must keep turning, or the heartbeat stalls past
    worker_ttl and the other daemons take this one's dials for dead."""
    clock = FakeClock(T0)
    closed = '[window]\ndays = ["mon-sun"]\nhours = ["20:00-21:00"]\n'
    phones = nl_numbers(200)
    async with world(tmp_path, httpx.MockTransport(lambda r: httpx.Response(500)), clock,
                     phones=phones, window=closed) as w:  # fmt: skip
        engine = await w.engine("a")
        assert engine.fire("e2e", T0) is not None
        turns = 0

        async def other_loop() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        other = asyncio.create_task(other_loop())
        await asyncio.sleep(0)
        before = turns
        assert await engine.dispatch_once() == 0
        other.cancel()
        assert {a.state for a in w.store.attempts()} == {AttemptState.PLANNED}
        assert engine.stats["deferred"] == len(phones)
        assert turns - before >= len(phones) // YIELD_EVERY


# ---------------------------------------------------------------------------- stops and cancels
async def test_a_stop_does_not_wait_out_a_429_pause_and_frees_the_queued_dial(
    tmp_path: Path,
) -> None:
    clock = FakeClock(T0, autojump=False)
    sim = simulator(clock)
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock) as w:
        a_budget = held_budget(w)
        a = await w.engine("a", a_budget)
        assert a.fire("e2e", T0) is not None
        stop = asyncio.Event()
        running = asyncio.create_task(a.run(stop))
        await eventually(
            lambda: a_budget.waiting() == 1 and w.attempt().state is AttemptState.DIALING
        )
        stop.set()
        async with asyncio.timeout(2):  # far less than drain's 10 s grace for sent POSTs
            await running
        assert sim.created == []
        freed = w.attempt()
        assert (freed.state, freed.reason) == (AttemptState.PLANNED, "stopped")


async def test_a_stop_frees_a_dial_whose_post_was_refused_and_waits_to_be_sent_again(
    tmp_path: Path,
) -> None:
    """A 429 on the POST itself: VoiceDock did nothing, and the re-send waits for its pause.
    A stop then releases the dial at once, as for a create that never went out."""
    clock = FakeClock(T0, autojump=False)
    posts = 0

    def refuse_creates(request: httpx.Request) -> httpx.Response:
        nonlocal posts
        if request.method == "POST":
            posts += 1
            retry_after = {"Retry-After": str(int(RETRY_AFTER_S))}
            return httpx.Response(429, headers=retry_after, json={"error": "slow down"})
        return httpx.Response(200, json={"calls": [], "pagination": {"total": 0}})

    async with world(tmp_path, httpx.MockTransport(refuse_creates), clock) as w:
        budget = w.budget()
        a = await w.engine("a", budget)
        assert a.fire("e2e", T0) is not None
        stop = asyncio.Event()
        running = asyncio.create_task(a.run(stop))
        await eventually(lambda: posts == 1 and budget.waiting() == 1)
        stop.set()
        async with asyncio.timeout(2):  # far less than drain's 10 s grace for sent POSTs
            await running
        freed = w.attempt()
        assert (freed.state, freed.reason) == (AttemptState.PLANNED, "stopped")
        assert posts == 1


async def test_a_stop_frees_a_dial_waiting_to_be_sent_again_after_a_refused_connection(
    tmp_path: Path,
) -> None:
    """The POST never connected (nothing sent); its re-send waits out the client's back-off.
    A stop releases the dial then too, instead of waiting for it."""
    clock = FakeClock(T0)
    connects = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal connects
        connects += 1
        raise httpx.ConnectError("connection refused", request=request)

    async with world(tmp_path, httpx.MockTransport(refuse), clock) as w:
        a = await w.engine("a", backoff_s=60)
        assert a.fire("e2e", T0) is not None
        stop = asyncio.Event()
        running = asyncio.create_task(a.run(stop))
        await eventually(lambda: connects == 1)
        stop.set()
        async with asyncio.timeout(2):  # the back-off is a minute
            await running
        freed = w.attempt()
        assert (freed.state, freed.reason) == (AttemptState.PLANNED, "stopped")


async def test_a_dial_withdrawn_after_its_campaign_was_cancelled_is_cancelled_too(
    tmp_path: Path,
) -> None:
    """`dialer cancel` cancels what is planned; a dial queued at that moment comes back to
    `planned` later, and must not keep its run open for ever."""
    clock = FakeClock(T0, autojump=False)
    sim = simulator(clock)
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock) as w:
        a_budget = held_budget(w)
        a = await w.engine("a", a_budget)
        run_id = a.fire("e2e", T0)
        assert await a.dispatch_once() == 1
        await eventually(lambda: a_budget.waiting() == 1)
        change = w.store.change_campaign_state("e2e", CampaignState.CANCELLED, now=clock.now)
        assert change is not None and change.cancelled == 0

        clock.advance(timedelta(seconds=RETRY_AFTER_S))
        await a.drain()
        assert sim.created == []
        assert w.attempt().reason == "withdrawn:campaign_inactive"
        assert w.store.cancel_stragglers(now=clock.now) == 1
        assert w.attempt().state is AttemptState.CANCELLED
        assert w.store.finish_runs(now=clock.now) == [run_id]


# ---------------------------------------------------------------------------- stale views
async def test_a_stale_view_of_an_ended_call_does_not_stop_the_daemon(placed: Placed) -> None:
    """Another daemon recorded the end after this one read the attempt: giving up on the
    call as stuck must leave that outcome alone, not raise out of the follow loop."""
    w = placed.w
    engine = placed.engine
    call_id = placed.call_id
    clock = placed.clock
    stale = w.attempt()
    engine.observe_call(stale, Call.from_api({"id": call_id, "status": "ended"}))
    assert w.attempt().state is AttemptState.ENDED

    clock.advance(engine.settings.stuck_after)
    engine.observe_call(stale, Call.from_api({"id": call_id, "status": "in-progress"}))
    assert w.attempt().state is AttemptState.ENDED
    assert w.store.events(kind="attempt.unknown") == []


def test_worker_ids_differ_even_for_one_host_and_pid() -> None:
    assert worker_id() != worker_id()


# ---------------------------------------------------------------------------- clocks
@pytest.mark.postgres
async def test_a_daemon_whose_clock_is_off_from_the_database_holds_its_dials(
    tmp_path: Path, pg_url: str
) -> None:
    """On PostgreSQL daemons judge each other by timestamps: one whose clock is a minute
    behind would look dead to the others at once, and its fresh dials old enough to redial."""
    real = FakeClock(datetime.now(UTC))
    behind = FakeClock(real.now - timedelta(minutes=1))
    sim = simulator(real)
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), behind, db_url=pg_url) as w:
        a = await w.engine("a")
        assert a.fire("e2e", behind.now) is not None
        a.check_clock()
        assert a.clock_skew is not None and a.clock_skew < -timedelta(seconds=50)
        assert await a.dispatch_once() == 0
        assert await a.reconcile_once() == 0
        assert sim.created == []

        behind.now = datetime.now(UTC)  # NTP caught up
        a.check_clock()
        assert a.clock_skew is None
        assert await a.dispatch_once() == 1
        await a.drain()
        assert [r.destination for r in sim.created] == [PHONE]


def edit_campaign(folder: Path, old: str, new: str) -> Campaign:
    path = folder / "e2e.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return load_campaign(path)


@pytest.mark.parametrize(
    ("field", "edited"),
    [("number_id", "deadbeef-1d2e-4f3a-8b4c-5d6e7f8a9b0c"), ("assistant_id", "1111-2222")],
)
async def test_an_ambiguous_dial_is_judged_by_what_was_sent_not_by_the_edited_file(
    tmp_path: Path, field: str, edited: str
) -> None:
    """A 502 on the create (the call was placed), then the caller id or assistant is edited
    and the daemon restarted: the listed call still matches the dial, and is adopted."""
    clock = FakeClock(T0)
    sim = simulator(clock)
    sim.set_faults(Faults(ambiguous_create=1.0, ambiguous_kinds=("error",)))
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock) as w:
        a = await w.engine("a")
        assert a.fire("e2e", T0) is not None
        assert await a.dispatch_once() == 1
        await a.drain()
        assert w.attempt().state is AttemptState.DIALING
        sim.set_faults(Faults())
        w.campaign = edit_campaign(
            tmp_path, f'{field} = "{getattr(w.campaign, field)}"', f'{field} = "{edited}"'
        )
        b = await w.engine("b")  # the restarted daemon

        clock.advance(CREATE_TIMEOUT + SETTLE + RECHECK + timedelta(seconds=1))
        assert await b.reconcile_once() == 1
        assert w.attempt().state is AttemptState.IN_FLIGHT  # adopted
        await b.dispatch_once()
        await b.drain()
        assert [r.destination for r in sim.created] == [PHONE]


async def test_an_ambiguous_dial_is_reconciled_with_the_key_it_was_sent_with(
    tmp_path: Path,
) -> None:
    """The campaign moves to another key (another organisation) after an ambiguous create:
    the call is looked for in the old key's list, where it is, and followed with that key."""
    clock = FakeClock(T0)
    other_key = "sim_test_key_north"
    sim = Simulator(
        SimulatorConfig(
            api_key=KEY, extra_api_keys=(other_key,), requests_per_minute=100_000, seed=3
        ),
        clock=clock.monotonic,
        wall_clock=clock,
    )
    sim.set_faults(Faults(ambiguous_create=1.0, ambiguous_kinds=("error",)))
    keys = {"default": KEY, "north": other_key}
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock) as w:
        a = await w.engine("a", keys=keys)
        assert a.fire("e2e", T0) is not None
        assert await a.dispatch_once() == 1
        await a.drain()
        sim.set_faults(Faults())
        w.campaign = edit_campaign(tmp_path, "contacts_file", 'key = "north"\ncontacts_file')
        assert w.campaign.api_key_name == "north"
        b = await w.engine("b", keys=keys)
        assert w.attempt().api_key_name == "default"  # the dial's key, not the file's

        clock.advance(CREATE_TIMEOUT + SETTLE + RECHECK + timedelta(seconds=1))
        assert await b.reconcile_once() == 1
        assert w.attempt().state is AttemptState.IN_FLIGHT
        await b.dispatch_once()
        await b.drain()
        assert [r.destination for r in sim.created] == [PHONE]


async def test_a_person_gets_one_call_at_a_time_whatever_the_campaign(tmp_path: Path) -> None:
    """An attempt to a number whose call of another run (another campaign alike) is still
    going: it waits for that call to end instead of ringing the same phone twice."""
    clock = FakeClock(T0)
    sim = simulator(clock)
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock, extra=EVERY_RUN) as w:
        engine = await w.engine("a")
        assert engine.fire("e2e", T0 - timedelta(hours=1)) is not None
        assert await engine.dispatch_once() == 1
        await engine.drain()
        assert engine.fire("e2e", T0) is not None
        assert await engine.dispatch_once() == 0
        first, second = sorted(w.store.attempts(), key=lambda a: a.state.value)
        assert first.state is AttemptState.IN_FLIGHT
        assert (second.state, second.reason) == (AttemptState.PLANNED, "phone_busy")
        assert second.due_at > T0
        assert [r.destination for r in sim.created] == [PHONE]


# ---------------------------------------------------------------------------- do-not-call
@pytest.mark.parametrize("level", ["campaign", "config"])
@pytest.mark.parametrize("when", ["running", "starting"])
async def test_an_opt_out_written_while_the_daemon_runs_is_honoured(
    tmp_path: Path, level: str, when: str
) -> None:
    """The person phones the clinic and asks not to be called; the list is updated while
    the daemon runs, or while it starts (after the lists were read, before the engine runs):
    no dial. A number taken off the list stays blocked until a restart."""
    dnc = tmp_path / "dnc.txt"
    dnc.write_text("# do-not-call\n", encoding="utf-8")
    clock = FakeClock(T0)
    sim = simulator(clock)
    extra = 'suppression_files = ["dnc.txt"]' if level == "campaign" else ""
    extra += "\n" + EVERY_RUN  # the next day's run tries the number again
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock, extra=extra) as w:
        if level == "config":
            w.config = write_config(
                tmp_path, db_url=w.config.database.url, extra='suppression_files = ["dnc.txt"]'
            )
        if when == "starting":
            dnc.write_text(f"# do-not-call\n{PHONE}\n", encoding="utf-8")
        engine = await w.engine("a")
        if when == "running":
            dnc.write_text(f"# do-not-call\n{PHONE}\n", encoding="utf-8")
        clock.advance(timedelta(hours=1))
        assert engine.fire("e2e", clock.now) is not None
        assert await engine.dispatch_once() == 0
        assert (w.attempt().state, w.attempt().reason) == (AttemptState.SKIPPED, "dnc")

        dnc.write_text("# do-not-call\n# (taken off, halfway through an edit?)\n", "utf-8")
        clock.advance(timedelta(days=1))
        assert engine.fire("e2e", clock.now) is not None  # the next day's run
        assert await engine.dispatch_once() == 0
        assert [(a.state, a.reason) for a in w.store.attempts()] == [
            (AttemptState.SKIPPED, "dnc")
        ] * 2
    assert sim.created == []


async def test_a_dnc_file_replaced_with_one_of_the_same_size_and_time_is_read_again(
    tmp_path: Path,
) -> None:
    """``cp -p`` or ``rsync -t`` keeps the modification time, and the size may be the same."""
    dnc = tmp_path / "dnc.txt"
    other = nl_numbers(2)[1]  # same length as PHONE
    dnc.write_text(f"{other}\n", encoding="utf-8")
    stat = dnc.stat()
    clock = FakeClock(T0)
    sim = simulator(clock)
    extra = 'suppression_files = ["dnc.txt"]'
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock, extra=extra) as w:
        engine = await w.engine("a")
        replacement = tmp_path / "dnc.new"
        replacement.write_text(f"{PHONE}\n", encoding="utf-8")
        os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        replacement.replace(dnc)
        assert (dnc.stat().st_mtime_ns, dnc.stat().st_size) == (stat.st_mtime_ns, stat.st_size)
        assert engine.fire("e2e", T0) is not None
        assert await engine.dispatch_once() == 0
        assert (w.attempt().state, w.attempt().reason) == (AttemptState.SKIPPED, "dnc")
    assert sim.created == []


@pytest.mark.postgres
async def test_two_daemons_claiming_one_number_at_once_on_postgres_claim_it_once(
    tmp_path: Path, pg_url: str
) -> None:
    """Two attempts to each number (two runs), claimed at the same instant by two daemons
    (threads, one connection each): under READ COMMITTED the 'no other live attempt' check
    alone let both through; the claim must hold for one of them only."""
    clock = FakeClock(T0)
    phones = nl_numbers(60)
    transport = httpx.MockTransport(lambda r: httpx.Response(500))
    async with world(
        tmp_path, transport, clock, db_url=pg_url, phones=phones, extra=EVERY_RUN
    ) as w:
        engine = await w.engine("a")
        earlier, later = engine.fire("e2e", T0 - timedelta(hours=1)), engine.fire("e2e", T0)
        pairs: dict[str, dict[int | None, int]] = {}
        for a in w.store.attempts():
            pairs.setdefault(a.phone, {})[a.run_id] = a.id
        stores = [Store(pg_url), Store(pg_url)]
        barrier = threading.Barrier(2)

        def daemon(i: int) -> None:
            for pair in pairs.values():
                barrier.wait()
                stores[i].begin_dialing(
                    pair[earlier if i == 0 else later], owner=f"d{i}", body={}, now=T0
                )

        threads = [threading.Thread(target=daemon, args=(i,)) for i in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for store in stores:
            store.close()
        dialing = Counter(a.phone for a in w.store.attempts() if a.state is AttemptState.DIALING)
        assert set(dialing) == set(phones) and set(dialing.values()) == {1}


async def test_a_new_run_supersedes_what_earlier_runs_still_had_to_dial(tmp_path: Path) -> None:
    """A daily reminder paused for three days: each day's fire still makes its run, and on
    resume the person is called once, by the newest run, not once per day missed (a campaign
    that calls everyone at every fire; once per key, the first run's attempt simply waits)."""
    clock = FakeClock(T0)
    sim = simulator(clock)
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock, extra=EVERY_RUN) as w:
        engine = await w.engine("a")
        w.store.change_campaign_state("e2e", CampaignState.PAUSED, now=T0)
        for day in range(3):
            assert engine.fire("e2e", T0 + timedelta(days=day)) is not None
        clock.advance(timedelta(days=2, hours=1))
        w.store.change_campaign_state("e2e", CampaignState.ACTIVE, now=clock.now)
        assert await engine.dispatch_once() == 1
        await engine.drain()
        by_state = Counter((a.run_id, a.state, a.reason) for a in w.store.attempts())
        assert sorted(by_state) == [
            (1, AttemptState.CANCELLED, "superseded"),
            (2, AttemptState.CANCELLED, "superseded"),
            (3, AttemptState.IN_FLIGHT, None),
        ]
        assert [r.destination for r in sim.created] == [PHONE]
