"""What the engine makes of the ground moving under it, step by step under one fake time:
the database's outages as the loops meet them, VoiceDock keys that do not answer, and the
writes that are retried (a create's answer) or left for reconciliation (everything else).

The long outages of a whole campaign, judged from the simulator's record, are in
tests/test_ride_out.py.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from dialer.attempts import AttemptState
from dialer.engine import EngineSettings
from dialer.engine.outages import DatabaseWatch, Reachability
from dialer.errors import DatabaseBusy, DatabaseFull, DatabaseUnreachable, TransportFailure
from dialer.metrics import readiness_of
from dialer.policy.backoff import Backoff
from tests.clock import FakeClock, eventually
from tests.e2e import nl_numbers
from tests.engine_world import T0, simulator, world
from tests.outages import sqlite_path

S = timedelta(seconds=1)
SETTINGS = EngineSettings(worker_ttl=30 * S)


def events(logs: list[dict[str, Any]], prefix: str) -> Counter[str]:
    return Counter(line["event"] for line in logs if line["event"].startswith(prefix))


# ---------------------------------------------------------------------------- the database
def test_an_outage_is_said_once_then_once_a_minute_then_its_end_once() -> None:
    clock = FakeClock(T0)
    watch = DatabaseWatch(SETTINGS, clock, random.Random(1))
    with structlog.testing.capture_logs() as logs:
        for _ in range(30):  # five minutes of failures, every 10 s, from two loops
            watch.failed(DatabaseUnreachable("refused"), loop="dispatch")
            watch.failed(DatabaseUnreachable("refused"), loop="follow")
            clock.advance(10 * S)
        assert watch.down and watch.outage is not None
        assert watch.outage.since == T0 and watch.outage.failures == 60
        watch.passed("dispatch")
        assert watch.down  # the follow loop has not got through yet
        watch.passed("follow")
        assert not watch.down and watch.outage is None
    assert events(logs, "dialer.database") == {
        "dialer.database.unavailable": 1,
        "dialer.database.still_unavailable": 4,  # at 1, 2, 3 and 4 minutes
        "dialer.database.back": 1,
    }
    (first,) = [line for line in logs if line["event"] == "dialer.database.unavailable"]
    assert first["kind"] == "unreachable" and "reconnects" in first["hint"]


def test_a_full_disk_that_flaps_is_one_outage_in_the_log() -> None:
    """Small writes get through a full disk: a loop passes, the next write fails again. Within
    a minute of its end, that is the same outage, not a new line each time."""
    clock = FakeClock(T0)
    watch = DatabaseWatch(SETTINGS, clock, random.Random(1))
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            watch.failed(DatabaseFull("full"), loop="follow")
            clock.advance(5 * S)
            watch.passed("follow")
            clock.advance(5 * S)
    assert events(logs, "dialer.database") == {
        "dialer.database.unavailable": 1,
        "dialer.database.back": 1,
    }
    (first,) = [line for line in logs if line["event"] == "dialer.database.unavailable"]
    assert first["kind"] == "full" and "free space" in first["hint"]


def test_the_loops_take_turns_backing_off_up_to_the_cap() -> None:
    """One try at a time, however many loops wait: each may hold the event loop for the lock
    wait or a connect timeout, and a signal must get through between them."""
    clock = FakeClock(T0)
    settings = EngineSettings(database_backoff=Backoff(base=S, cap=8 * S))
    watch = DatabaseWatch(settings, clock, random.Random(1))
    assert watch.wait_s(T0) == 0  # no outage: no waiting
    waits = []
    for loop in ["dispatch", "follow", "housekeeping", "heartbeat", "dispatch", "follow"]:
        watch.failed(DatabaseBusy("locked"), loop=loop)
        waits.append(watch.wait_s(clock()))
    steps = [1, 2, 4, 8, 8, 8]
    assert all(step / 2 <= w <= step for w, step in zip(waits, steps, strict=True)), waits
    watch.passed("heartbeat")  # it answered one loop (a full disk takes small writes)...
    assert watch.down and watch.wait_s(clock()) == 0  # ...so the others may try at once
    watch.failed(DatabaseFull("full"), loop="dispatch")
    assert 4 <= watch.wait_s(clock()) <= 8  # and the back-off was not reset by that
    for loop in ["dispatch", "follow", "housekeeping"]:
        watch.passed(loop)
    assert not watch.down and watch.wait_s(clock()) == 0
    watch.failed(DatabaseBusy("locked"), loop="follow")
    assert watch.wait_s(clock()) <= 1  # an outage's end starts the count afresh


async def test_a_writer_waiting_for_its_turn_is_let_go_at_a_stop() -> None:
    clock = FakeClock(T0)
    watch = DatabaseWatch(SETTINGS, clock, random.Random(1))
    watch.noticed(DatabaseUnreachable("refused"), by="dial")
    waiting = asyncio.create_task(watch.take_turn(0.01))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    clock.advance(S)  # past the first back-off (at most a second): its turn
    await asyncio.wait_for(waiting, timeout=5)
    watch.noticed(DatabaseUnreachable("refused"), by="dial")
    waiting = asyncio.create_task(watch.take_turn(0.01))
    await asyncio.sleep(0.05)
    watch.release_waiters()
    await asyncio.wait_for(waiting, timeout=5)


def test_claims_wait_for_a_heartbeat_and_a_claim_made_before_a_failure_is_confirmed() -> None:
    clock = FakeClock(T0)
    watch = DatabaseWatch(SETTINGS, clock, random.Random(1))
    assert not watch.beat_overdue(T0)  # never beaten (a daemon starting): nothing to judge
    watch.beat(T0)
    assert not watch.beat_overdue(T0 + 15 * S)
    assert watch.beat_overdue(T0 + 16 * S)  # half its lifetime: others may soon take us
    claimed = T0 + S
    assert not watch.interrupted_since(claimed, T0 + 2 * S)
    clock.advance(3 * S)
    watch.noticed(DatabaseUnreachable("refused"), by="dial")
    assert watch.interrupted_since(claimed, T0 + 4 * S)


def test_other_daemons_are_judged_again_once_they_could_have_beaten() -> None:
    clock = FakeClock(T0)
    watch = DatabaseWatch(SETTINGS, clock, random.Random(1))
    assert watch.trusts_heartbeats(T0)
    watch.failed(DatabaseUnreachable("refused"), loop="heartbeat")
    assert not watch.trusts_heartbeats(T0)
    clock.advance(12 * S)
    watch.passed("heartbeat")  # 12 s away: theirs could be 12 s late too
    assert not watch.trusts_heartbeats(T0 + 23 * S)
    assert watch.trusts_heartbeats(T0 + 24 * S)
    watch.failed(DatabaseUnreachable("refused"), loop="heartbeat")
    clock.advance(10 * 60 * S)
    watch.passed("heartbeat")  # ten minutes away: a heartbeat's lifetime is enough
    assert watch.trusts_heartbeats(clock() + SETTINGS.worker_ttl)


# ---------------------------------------------------------------------------- VoiceDock
def test_an_hour_without_voicedock_costs_a_probe_a_minute_and_a_line_a_minute() -> None:
    clock = FakeClock(T0)
    reachability = Reachability(SETTINGS, clock, random.Random(7))
    refused = TransportFailure("POST /calls/outbound: ConnectError: refused (not sent)")
    probes = 0
    with structlog.testing.capture_logs() as logs:
        reachability.failed("default", refused)
        for _ in range(10):  # the key's other requests in flight fail too: counted once
            reachability.failed("default", refused)
        while clock() < T0 + timedelta(hours=1):
            reachability.remind(clock())
            for key in reachability.probes_due(clock()):
                probes += 1
                reachability.probe_failed(key, refused)
            clock.advance(S)
        assert reachability.unreachable("default")
        assert reachability.held_keys() == {"default"}
        (outage,) = reachability.outages.values()
        assert outage.since == T0 and "VoiceDock (key default) unreachable since" in str(outage)
    lines = events(logs, "dialer.voicedock")
    print(f"\nan hour unreachable: {probes} probes, log lines {dict(lines)}")
    # 1, 2, 4, ... 32 s, then every 30-60 s: at most 7 + 3600/30
    assert 3600 / 60 <= probes <= 7 + 3600 / 30
    assert lines["dialer.voicedock.unreachable"] == 1
    assert lines["dialer.voicedock.still_unreachable"] == 59  # once a minute


def test_a_key_back_dials_only_after_its_reconciliation() -> None:
    clock = FakeClock(T0)
    reachability = Reachability(SETTINGS, clock, random.Random(7))
    reachability.failed("north", TransportFailure("refused"))
    clock.advance(2 * S)
    (due,) = reachability.probes_due(clock())
    with structlog.testing.capture_logs() as logs:
        reachability.returned(due)
        assert not reachability.unreachable("north")  # its calls are looked at again...
        assert reachability.held_keys() == {"north"}  # ...but nothing is dialled yet
        assert reachability.awaiting_reconciliation() == {"north"}
        reachability.reconciled("north")
    assert reachability.held_keys() == set() and reachability.outages == {}
    assert [line["event"] for line in logs] == [
        "dialer.voicedock.reachable",
        "dialer.voicedock.dialling_resumes",
    ]


# ---------------------------------------------------------------------------- the engine
class Unplugged(httpx.AsyncBaseTransport):
    """The simulator's app behind a cable the test can pull: unplugged, every connect is
    refused (nothing was sent)."""

    def __init__(self, app: Any) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self.plugged = True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.plugged:
            raise httpx.ConnectError("connection refused", request=request)
        return await self._inner.handle_async_request(request)


async def test_voicedock_unreachable_holds_creates_and_looks_then_reconciles_first(
    tmp_path: Path,
) -> None:
    clock = FakeClock(T0)
    sim = simulator(clock)
    cable = Unplugged(sim.app)
    phones = nl_numbers(3)
    async with world(tmp_path, cable, clock, phones=phones) as w:
        a = await w.engine("a")
        assert a.fire("e2e", T0) is not None
        assert await a.dispatch_once() == 3
        await a.drain()
        assert len(sim.created) == 3
        cable.plugged = False  # with the three calls in flight
        clock.advance(10 * S)
        await a.follow_once()  # the looks get no answer: the key is unreachable
        assert set(a.voicedock_outages) == {"default"}
        ready = await readiness_of(
            a
        )  # /readyz reports it, and stays ready: a restart fixes nothing
        assert ready.ok and ready.body["voicedock"]["default"].startswith(
            "VoiceDock (key default) unreachable since "
        )
        assert await a.dispatch_once() == 0
        # Far past stuck_after: a call we cannot see because VoiceDock is away is not given up.
        sent_while_away = a.requests_sent()
        for _ in range(40):
            clock.advance(timedelta(minutes=1))
            await a.follow_once()
            await a.reconcile_once()
            assert await a.dispatch_once() == 0
            await a.probe_unreachable()
        assert {x.state for x in w.store.attempts()} == {AttemptState.IN_FLIGHT}
        probes = sum(
            n for (m, path, _), n in (a.requests_sent() - sent_while_away).items() if m == "GET"
        )
        assert probes <= 40  # a probe at most each minute, not a look per call
        cable.plugged = True
        clock.advance(timedelta(minutes=1))
        assert await a.probe_unreachable() == 1
        assert a.voicedock_outages["default"].kind == "reconciling"
        await a.follow_once()  # the held looks are made at once: the calls ended long ago
        assert {x.state for x in w.store.attempts()} == {AttemptState.ENDED}
        assert await a.reconcile_once() == 0
        assert a.voicedock_outages == {}
    assert Counter(r.destination for r in sim.created) == Counter(phones)


async def test_a_create_refused_at_the_connect_holds_the_key_and_is_not_sent_again(
    tmp_path: Path,
) -> None:
    clock = FakeClock(T0)
    sim = simulator(clock)
    cable = Unplugged(sim.app)
    cable.plugged = False
    phones = nl_numbers(3)
    async with world(tmp_path, cable, clock, phones=phones) as w:
        a = await w.engine("a")
        assert a.fire("e2e", T0) is not None
        assert await a.dispatch_once() == 3
        await a.drain()
        tries = a.requests_sent()[("POST", "/calls/outbound", "error")]
        assert tries == 3 * 5  # each create: the first try and the client's four re-sends
        assert {x.state for x in w.store.attempts()} == {AttemptState.PLANNED}
        for _ in range(30):
            clock.advance(timedelta(minutes=1))
            assert await a.dispatch_once() == 0
        assert a.requests_sent()[("POST", "/calls/outbound", "error")] == tries
        cable.plugged = True
        clock.advance(timedelta(minutes=1))
        assert await a.probe_unreachable() == 1
        assert await a.dispatch_once() == 0  # not before the key's reconciliation
        await a.reconcile_once()
        assert await a.dispatch_once() == 3
        await a.drain()
    assert Counter(r.destination for r in sim.created) == Counter(phones)


async def test_a_create_answered_while_the_database_is_locked_is_recorded_once_it_lets_go(
    tmp_path: Path,
) -> None:
    clock = FakeClock(T0)
    sim = simulator(clock)
    sim.answer_after(0.3)  # real seconds (the world's simulator runs at 1x)
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock, lock_wait_s=0.05) as w:
        a = await w.engine("a")
        assert a.fire("e2e", T0) is not None
        assert await a.dispatch_once() == 1  # the claim is committed, the POST is out
        lock = sqlite3.connect(sqlite_path(w.config.database_url), isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # (a backup, the CLI) while the answer is on its way
        try:
            await eventually(lambda: a.database_outage is not None, within_s=10)
            assert len(sim.created) == 1
            assert w.attempt().state is AttemptState.DIALING
            clock.advance(timedelta(minutes=5))  # long past any settle: still ours, in hand
            assert await a.reconcile_once() == 0
        finally:
            lock.execute("COMMIT")
            lock.close()
        await eventually(lambda: w.attempt().state is AttemptState.IN_FLIGHT, within_s=30)
        await a.drain()
        assert w.attempt().call_id == sim.created[0].call_id
    assert len(sim.created) == 1


async def test_a_queued_create_is_not_sent_while_the_database_is_away(tmp_path: Path) -> None:
    """Claimed, then waiting for the budget when the database goes: when its slot comes it is
    confirmed first, which the database cannot do, so it is withdrawn unsent and left in
    `dialing`, which reconciliation releases once the database is back."""
    clock = FakeClock(T0, autojump=False)
    sim = simulator(clock)
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock, lock_wait_s=0.05) as w:
        budget = w.budget()
        budget.pause_for(60)
        a = await w.engine("a", budget)
        assert a.fire("e2e", T0) is not None
        assert await a.dispatch_once() == 1
        await eventually(lambda: budget.waiting() == 1)
        lock = sqlite3.connect(sqlite_path(w.config.database_url), isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            clock.advance(61 * S)  # the slot comes while the database is locked
            await a.drain()
            assert a.stats.get("withdrawn") == 1
            assert sim.created == []
        finally:
            lock.execute("COMMIT")
            lock.close()
        assert w.attempt().state is AttemptState.DIALING  # left for reconciliation
        clock.advance(timedelta(minutes=2))
        assert await a.reconcile_once() == 1  # listed: no call, so released
        assert await a.dispatch_once() == 1
        await eventually(lambda: len(sim.created) == 1)
        clock.advance(S)
        await a.drain()
    assert [r.destination for r in sim.created] == nl_numbers(1)


async def test_a_schedule_fired_while_the_database_is_locked_gets_its_run_later(
    tmp_path: Path,
) -> None:
    clock = FakeClock(T0)
    sim = simulator(clock)
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock, lock_wait_s=0.05) as w:
        a = await w.engine("a")
        campaign = w.store.campaign("e2e")
        assert campaign is not None
        lock = sqlite3.connect(sqlite_path(w.config.database_url), isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        assert a.fire("e2e", T0) is None  # not lost: kept for housekeeping
        lock.execute("COMMIT")
        lock.close()
        assert w.store.runs(campaign.id) == []
        clock.advance(S)  # past the back-off before the next try
        stop = asyncio.Event()
        running = asyncio.create_task(a.run(stop))
        await eventually(lambda: len(sim.created) == 1, within_s=20)
        stop.set()
        await running
        assert len(w.store.runs(campaign.id)) == 1
    assert [r.destination for r in sim.created] == nl_numbers(1)


@pytest.mark.parametrize("kind", [DatabaseUnreachable, DatabaseBusy, DatabaseFull])
def test_the_outage_says_what_kind(kind: type[DatabaseUnreachable]) -> None:
    watch = DatabaseWatch(SETTINGS, FakeClock(T0), random.Random(1))
    watch.failed(kind("x"), loop="follow")
    assert watch.outage is not None
    assert (
        watch.outage.kind
        == {
            DatabaseUnreachable: "unreachable",
            DatabaseBusy: "locked",
            DatabaseFull: "full",
        }[kind]
    )
