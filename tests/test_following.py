"""Following calls when VoiceDock answers badly: a list endpoint that keeps failing, a call id
that is never found. Every call still reaches an outcome (or `unknown`), within the budget."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from dialer.attempts import AttemptState
from dialer.engine import Engine
from dialer.ratelimit import RequestBudget
from tests.clock import FakeClock
from tests.e2e import nl_numbers
from tests.engine_world import PHONE, T0, World, world


class Stubborn:
    """Creates succeed; then GET /calls answers ``list_status`` and every call stays
    in progress, or is never found (``found=False``)."""

    def __init__(
        self,
        *,
        list_status: int = 503,
        found: bool = True,
        get_status: int = 200,
        call_status: str | None = "in-progress",
    ) -> None:
        self.list_status = list_status
        self.found = found
        self.get_status = get_status
        self.call_status = call_status
        self.seen: Counter[str] = Counter()

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST":
            self.seen["POST"] += 1
            body = json.loads(request.content)
            call_id = f"call-{body['destination']}-{self.seen['POST']}"
            return httpx.Response(201, json={"call_id": call_id})
        if path.endswith("/calls"):
            self.seen["LIST"] += 1
            return httpx.Response(self.list_status, json={"error": "unavailable"})
        self.seen["GET"] += 1
        if not self.found:
            return httpx.Response(404, json={"error": "Call not found"})
        call_id = path.rsplit("/", 1)[1]
        if self.get_status != 200:
            return httpx.Response(self.get_status, json={"error": "unavailable"})
        return httpx.Response(200, json={"id": call_id, "status": self.call_status})


@contextlib.asynccontextmanager
async def placed(
    tmp_path: Path,
    api: Stubborn,
    clock: FakeClock,
    phones: Sequence[str] = (PHONE,),
    *,
    extra: str = "",
) -> AsyncIterator[tuple[World, Engine]]:
    """A world whose calls (one per phone) were all placed at T0 on ``api``."""
    transport = httpx.MockTransport(api.handler)
    async with world(tmp_path, transport, clock, phones=phones, extra=extra) as w:
        engine = await w.engine("a")
        assert engine.fire("e2e", T0) is not None
        assert await engine.dispatch_once() == len(phones)
        await engine.drain()
        yield w, engine


async def follow_until(engine: Engine, clock: FakeClock, end: datetime, step: timedelta) -> None:
    while clock.now < end:
        await engine.follow_once()
        clock.now += step


async def test_calls_are_given_up_on_even_while_listing_keeps_failing(tmp_path: Path) -> None:
    api = Stubborn(list_status=503)
    clock = FakeClock(T0)
    phones = nl_numbers(3)  # enough calls in flight to follow them by listing
    async with placed(tmp_path, api, clock, phones) as (w, engine):
        end = T0 + engine.settings.stuck_after + timedelta(minutes=2)
        await follow_until(engine, clock, end, timedelta(seconds=20))
        states = {a.phone: a.state for a in w.store.attempts()}
        assert states == dict.fromkeys(phones, AttemptState.UNKNOWN)
        assert api.seen["LIST"] > 0 and api.seen["GET"] > 0  # lists failed; GETs took over


async def test_an_unknown_call_that_is_never_found_is_looked_at_seldom(tmp_path: Path) -> None:
    api = Stubborn(found=False)
    clock = FakeClock(T0)
    async with placed(tmp_path, api, clock) as (w, engine):
        step = timedelta(seconds=5)
        while w.attempt().state is not AttemptState.UNKNOWN:
            await engine.follow_once()
            clock.now += step
        gets = api.seen["GET"]
        await follow_until(engine, clock, clock.now + timedelta(hours=1), step)
        # one look per `late` interval (10 min), not one per ringing interval (5 s)
        assert api.seen["GET"] - gets <= 7


@pytest.mark.parametrize(
    "api",
    [Stubborn(get_status=503), Stubborn(call_status=None)],
    ids=["get_503", "unreadable_call"],
)
async def test_a_call_that_cannot_be_read_is_given_up_on_and_looked_at_less_often(
    tmp_path: Path, api: Stubborn
) -> None:
    clock = FakeClock(T0)
    async with placed(tmp_path, api, clock) as (w, engine):
        end = T0 + engine.settings.stuck_after + timedelta(minutes=2)
        await follow_until(engine, clock, end, timedelta(seconds=5))
        # its line and its run are not held for ever by a call we cannot see
        assert w.attempt().state is AttemptState.UNKNOWN
        assert "unreadable" in (w.attempt().reason or "")
        # each miss in a row doubles the wait (5 s ... 10 min): about ten looks in half an
        # hour, each repeated by the client on a 5xx, not a look every 5 s (360 looks)
        assert api.seen["GET"] <= 60, api.seen


async def test_an_unknown_call_is_not_looked_at_past_the_late_result_horizon(
    tmp_path: Path,
) -> None:
    api = Stubborn(found=False)
    clock = FakeClock(T0)
    async with placed(tmp_path, api, clock) as (w, engine):
        end = T0 + engine.settings.late_result_horizon + timedelta(minutes=30)
        await follow_until(engine, clock, end, engine.settings.poll.late)
        assert w.attempt().state is AttemptState.UNKNOWN
        gets = api.seen["GET"]
        for _ in range(30):
            clock.now += timedelta(days=1)
            await engine.follow_once()
        assert api.seen["GET"] == gets
        assert w.attempt().next_poll_at is None


async def test_a_call_given_up_on_while_still_talking_holds_its_number(tmp_path: Path) -> None:
    """`unknown` after stuck_after, but last seen in progress: the person may still be on the
    phone, so another run's (or campaign's) attempt waits, until late results stop being
    looked for."""
    api = Stubborn(call_status="in-progress")
    clock = FakeClock(T0)
    # a campaign that calls everyone at every fire: its next run has a new attempt to wait
    async with placed(tmp_path, api, clock, extra='repeat = "every_run"') as (w, engine):
        end = T0 + engine.settings.stuck_after + timedelta(minutes=1)
        await follow_until(engine, clock, end, timedelta(seconds=30))
        (stuck,) = w.store.attempts()
        assert (stuck.state, stuck.call_status) == (AttemptState.UNKNOWN, "in-progress")

        assert engine.fire("e2e", clock.now) is not None  # the next run
        assert await engine.dispatch_once() == 0
        waiting = next(a for a in w.store.attempts() if a.id != stuck.id)
        assert (waiting.state, waiting.reason) == (AttemptState.PLANNED, "phone_busy")
        assert api.seen["POST"] == 1

        clock.now = T0 + engine.settings.late_result_horizon + timedelta(minutes=1)
        assert await engine.dispatch_once() == 1


class EndsAt:
    """Creates succeed; each call is in progress until ``end`` by ``clock``, then ended; the
    list and GET both answer it, and every request is counted by kind."""

    def __init__(self, clock: FakeClock, end: datetime) -> None:
        self.clock = clock
        self.end = end
        self.calls: list[str] = []
        self.seen: Counter[str] = Counter()

    def view(self, call_id: str) -> dict[str, object]:
        ended = self.clock.now >= self.end
        return {
            "id": call_id,
            "status": "ended" if ended else "in-progress",
            "started_at": T0.isoformat(),
            "ended_at": self.end.isoformat() if ended else None,
            "end_reason": "customer-ended-call" if ended else None,
            "created_at": T0.isoformat(),
        }

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.seen["POST"] += 1
            self.calls.append(f"call-{len(self.calls)}")
            return httpx.Response(201, json={"call_id": self.calls[-1]})
        if request.url.path.endswith("/calls"):
            self.seen["LIST"] += 1
            views = [self.view(c) for c in self.calls]
            return httpx.Response(
                200, json={"calls": views, "pagination": {"total": len(views), "offset": 0}}
            )
        self.seen["GET"] += 1
        return httpx.Response(200, json=self.view(request.url.path.rsplit("/", 1)[1]))


async def seen_ended_at(engine: Engine, w: World, clock: FakeClock, until: datetime) -> datetime:
    """Follow every half second until the call is recorded ended; when that was."""
    while clock.now < until:
        await engine.follow_once()
        if w.attempt().state is AttemptState.ENDED:
            return clock.now
        clock.now += timedelta(milliseconds=500)
    raise AssertionError("the end was never seen")


async def test_the_last_call_of_a_run_is_listed_as_often_as_the_spare_budget_allows(
    tmp_path: Path,
) -> None:
    # One call left, nobody waiting for a line, and a budget with room: its end is seen
    # within list_interval_min (2 s), where GETs timed by the expected length of a call
    # looked at a call 10 s past its expected end every 15 s.
    clock = FakeClock(T0)
    end = T0 + timedelta(seconds=100)
    api = EndsAt(clock, end)
    async with placed(tmp_path, api, clock) as (w, engine):
        seen = await seen_ended_at(engine, w, clock, end + timedelta(minutes=2))
    assert seen - end <= timedelta(seconds=2)
    # a list every 2 s from the create on, one request for all the calls left
    assert api.seen["GET"] == 0
    assert 45 <= api.seen["LIST"] <= 52


async def test_a_key_without_room_follows_its_last_call_by_the_poll_plan(tmp_path: Path) -> None:
    # 3 requests a minute: half of it pays for a list every 40 s, slower than list_interval
    # (20 s): below list_threshold the call is looked at by GETs, as before.
    clock = FakeClock(T0)
    end = T0 + timedelta(seconds=100)
    api = EndsAt(clock, end)
    transport = httpx.MockTransport(api.handler)
    async with world(tmp_path, transport, clock) as w:
        budget = RequestBudget(
            3, margin=0.0, clock=clock.monotonic, wall_clock=clock.unix, sleep=clock.sleep
        )
        engine = await w.engine("a", budget)
        assert engine.fire("e2e", T0) is not None
        assert await engine.dispatch_once() == 1
        await engine.drain()
        await seen_ended_at(engine, w, clock, end + timedelta(minutes=2))
    assert api.seen["LIST"] == 0
    assert 0 < api.seen["GET"] <= 6


async def test_a_campaign_at_its_own_limit_with_contacts_waiting_is_listed_for_its_ends(
    tmp_path: Path,
) -> None:
    # 11 contacts, the campaign's own limit 9 lines under the daemon's 10: contacts wait for
    # its lines as they would for the daemon's, so the 9 calls of ~95 s are listed once per
    # expected end (every 95 / 9 = 10.6 s), not at the tail's pace (2 s x 9 calls = 18 s).
    clock = FakeClock(T0)
    api = EndsAt(clock, T0 + timedelta(minutes=5))
    transport = httpx.MockTransport(api.handler)
    async with world(
        tmp_path, transport, clock, phones=nl_numbers(11), extra="max_concurrent_calls = 9"
    ) as w:
        engine = await w.engine("a")
        assert engine.fire("e2e", T0) is not None
        # a campaign's first creates are 3 until one is accepted (hold_after_rejections)
        assert await engine.dispatch_once() == 3
        await engine.drain()
        assert await engine.dispatch_once() == 6
        await engine.drain()
        assert await engine.dispatch_once() == 0  # at its limit, two contacts due
        await engine.follow_once()
        assert api.seen["LIST"] == 1
        clock.now = T0 + timedelta(seconds=11)
        await engine.follow_once()
        assert api.seen["LIST"] == 2
