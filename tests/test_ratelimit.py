"""The request budget on virtual time: a fake clock and a fake sleep, no real waiting.

``FakeClock(autojump=True)`` moves the clock forward by whatever the budget's dispatcher sleeps
(it is the only sleeper, so virtual time stays consistent); ``autojump=False`` holds the
dispatcher until the test calls ``advance``, so a test can place waiters in between.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.ratelimit import (
    MAX_HOLD_S,
    MAX_RETRY_AFTER_S,
    WINDOW_S,
    Priority,
    RequestBudget,
    SharedBudget,
    budget_rate,
    seconds_until_reset,
    spaced_burst,
)
from dialer.store import Store
from tests.clock import FakeClock

WALL0 = 1_700_000_000.0
START = datetime.fromtimestamp(WALL0, UTC)


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds; a state to reach, not a time to wait."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


def budget_on(fake: FakeClock, rpm: int, **kwargs: object) -> RequestBudget:
    return RequestBudget(
        rpm,
        margin=kwargs.pop("margin", 0.0),  # type: ignore[arg-type]
        clock=fake.monotonic,
        wall_clock=fake.unix,
        sleep=fake.sleep,
        **kwargs,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------------------- rate
@pytest.mark.parametrize(
    ("rpm", "margin", "rate"),
    [(100, 0.05, 95), (100, 0.0, 100), (60, 0.05, 57), (10, 0.5, 5), (100, 0.29, 71), (1, 0.99, 1)],
)
def test_effective_rate_is_floored_after_the_margin(rpm: int, margin: float, rate: int) -> None:
    assert RequestBudget(rpm, margin=margin).rate_per_minute == rate


@pytest.mark.parametrize(("rpm", "margin"), [(0, 0.05), (100, 1.0), (100, -0.1)])
def test_nonsense_limits_are_refused(rpm: int, margin: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        RequestBudget(rpm, margin=margin)


async def test_no_window_of_a_minute_ever_holds_more_than_the_rate() -> None:
    fake = FakeClock(START)
    budget = budget_on(fake, 10)
    granted: list[float] = []

    async def one(priority: Priority) -> None:
        await budget.acquire(priority)
        granted.append(fake.monotonic())

    await asyncio.gather(*(one(Priority(i % 2)) for i in range(35)))

    for start in granted:
        assert sum(start <= t < start + WINDOW_S for t in granted) <= 10
    # ...and no slower than that: each window is used to the full
    assert granted == [0.0] * 10 + [60.0] * 10 + [120.0] * 10 + [180.0] * 5
    assert budget.sent_total == 35
    assert budget.waiting() == 0


async def test_a_time_scaled_budget_counts_the_simulators_minutes() -> None:
    # the bench's simulator at x60: its minute is one second, and so is the budget's
    fake = FakeClock(START)
    budget = budget_on(fake, 10, time_scale=60.0)
    assert budget.window_s == 1.0
    granted: list[float] = []

    async def one() -> None:
        await budget.acquire(Priority.CREATE)
        granted.append(fake.monotonic())

    await asyncio.gather(*(one() for _ in range(25)))
    assert granted == [0.0] * 10 + [1.0] * 10 + [2.0] * 5


def test_a_time_scaled_budget_reads_the_simulators_seconds_as_simulated_ones() -> None:
    fake = FakeClock(START)
    budget = budget_on(fake, 100, time_scale=60.0, margin=0.05)
    # X-RateLimit-Reset comes in whole real seconds, a simulated minute: no hold on it
    budget.observe(
        {
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(fake.unix()) + 1),
        }
    )
    assert budget.paused_until is None
    budget.pause_for(60.0)  # a 429's Retry-After: 60 of the simulator's seconds
    assert budget.paused_until == fake.monotonic() + 1.0


async def test_a_burst_limit_spaces_the_slots_beyond_it() -> None:
    fake = FakeClock(START)
    budget = budget_on(fake, 60, burst=3)  # a slot a second, three back to back
    granted: list[float] = []

    async def one() -> None:
        await budget.acquire(Priority.CREATE)
        granted.append(fake.monotonic())

    await asyncio.gather(*(one() for _ in range(7)))
    assert granted == [0.0, 0.0, 0.0, 3.0, 3.0, 3.0, 6.0]


async def test_the_window_slides_rather_than_resetting_on_the_minute() -> None:
    fake = FakeClock(START)
    budget = budget_on(fake, 2)
    await budget.acquire(Priority.POLL)  # t=0
    fake.now = START + timedelta(seconds=45.0)
    await budget.acquire(Priority.POLL)  # t=45
    await budget.acquire(Priority.POLL)
    assert fake.monotonic() == 60.0  # the t=0 slot came free, not a fresh minute at t=60 for two
    await budget.acquire(Priority.POLL)
    assert fake.monotonic() == 105.0


# ---------------------------------------------------------------------------- priority
async def test_waiting_creates_go_before_waiting_polls_in_arrival_order() -> None:
    fake = FakeClock(START, autojump=False)
    budget = budget_on(fake, 1)
    await budget.acquire(Priority.POLL)  # uses the only slot of the first minute
    served: list[str] = []

    async def one(name: str, priority: Priority) -> None:
        await budget.acquire(priority)
        served.append(name)

    arrivals = [("p1", Priority.POLL), ("p2", Priority.POLL), ("c1", Priority.CREATE)]
    arrivals += [("p3", Priority.POLL), ("c2", Priority.CREATE)]
    tasks = [asyncio.create_task(one(name, priority)) for name, priority in arrivals]
    await until(lambda: budget.waiting() == 5)
    assert (budget.waiting(Priority.CREATE), budget.waiting(Priority.POLL)) == (2, 3)
    for n in range(1, 6):
        fake.advance(timedelta(seconds=60))
        await until(lambda n=n: len(served) == n)  # type: ignore[misc]
    await asyncio.gather(*tasks)
    assert served == ["c1", "c2", "p1", "p2", "p3"]


async def test_a_create_arriving_while_polls_wait_is_next() -> None:
    fake = FakeClock(START, autojump=False)
    budget = budget_on(fake, 1)
    await budget.acquire(Priority.POLL)
    served: list[str] = []

    async def one(name: str, priority: Priority) -> None:
        await budget.acquire(priority)
        served.append(name)

    polls = [asyncio.create_task(one(f"p{i}", Priority.POLL)) for i in (1, 2)]
    await until(lambda: budget.waiting() == 2)
    fake.advance(timedelta(seconds=60))
    await until(lambda: served == ["p1"])
    create = asyncio.create_task(one("c", Priority.CREATE))
    await until(lambda: budget.waiting(Priority.CREATE) == 1)
    fake.advance(timedelta(seconds=60))
    await until(lambda: len(served) == 2)
    fake.advance(timedelta(seconds=60))
    await asyncio.gather(*polls, create)
    assert served == ["p1", "c", "p2"]


# ---------------------------------------------------------------------------- cancellation
async def test_a_cancelled_waiter_loses_its_place_and_consumes_nothing() -> None:
    fake = FakeClock(START, autojump=False)
    budget = budget_on(fake, 1)
    await budget.acquire(Priority.POLL)
    served: list[str] = []

    async def one(name: str) -> None:
        await budget.acquire(Priority.POLL)
        served.append(name)

    a, b, c = (asyncio.create_task(one(name)) for name in "abc")
    await until(lambda: budget.waiting() == 3)
    b.cancel()
    await until(lambda: budget.waiting() == 2)
    fake.advance(timedelta(seconds=60))
    await until(lambda: served == ["a"])
    fake.advance(timedelta(seconds=60))
    await asyncio.gather(a, c)
    assert served == ["a", "c"]
    assert b.cancelled()
    assert budget.sent_total == 3  # the first slot, a and c


async def test_a_slot_handed_to_a_waiter_cancelled_before_it_ran_is_given_back() -> None:
    fake = FakeClock(START, autojump=False)
    budget = budget_on(fake, 1)
    await budget.acquire(Priority.POLL)
    waiter = asyncio.create_task(budget.acquire(Priority.POLL))
    await until(lambda: budget.waiting() == 1)

    fake.advance(timedelta(seconds=60))
    await asyncio.sleep(0)  # the dispatcher runs and hands the slot over...
    assert budget.sent_total == 2 and not waiter.done()  # ...but the waiter has not resumed
    waiter.cancel()
    await until(waiter.done)

    assert waiter.cancelled()
    assert budget.sent_total == 1
    await budget.acquire(Priority.POLL)  # the returned slot, at once: no advance needed
    assert fake.monotonic() == 60.0


async def test_when_every_waiter_gives_up_no_task_is_left_sleeping() -> None:
    budget = RequestBudget(100)  # the real clock and sleep
    for _ in range(budget.rate_per_minute):
        await budget.acquire(Priority.CREATE)  # within the rate: no waiting at all
    late = asyncio.create_task(budget.acquire(Priority.POLL))
    await until(lambda: budget.waiting() == 1)
    (dispatcher,) = [t for t in asyncio.all_tasks() if t.get_name() == "dialer.budget.dispatch"]
    coro = dispatcher.get_coro()
    assert inspect.iscoroutine(coro)
    await until(lambda: inspect.getcoroutinestate(coro) == inspect.CORO_SUSPENDED)
    assert not dispatcher.done()  # sleeping out the minute

    late.cancel()
    await until(dispatcher.done)
    assert late.cancelled()
    assert (budget.sent_total, budget.waiting()) == (95, 0)


# ---------------------------------------------------------------------------- pauses
async def test_a_pause_holds_all_traffic_and_only_ever_extends() -> None:
    fake = FakeClock(START)
    budget = budget_on(fake, 100)
    assert budget.paused_until is None
    budget.pause_for(30)
    budget.pause_for(10)
    assert budget.paused_until == 30.0
    budget.pause_for(45)
    budget.pause_for(0)
    budget.pause_for(-5)
    budget.pause_for(float("nan"))
    assert budget.paused_until == 45.0

    await asyncio.gather(budget.acquire(Priority.CREATE), budget.acquire(Priority.POLL))
    assert fake.monotonic() == 45.0  # capacity was there; the pause alone held both
    assert budget.paused_until is None


# ---------------------------------------------------------------------------- header steering
def headers(remaining: str | None, reset: str | None) -> dict[str, str]:
    pairs = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": remaining}
    pairs["X-RateLimit-Reset"] = reset
    return {k: v for k, v in pairs.items() if v is not None}


@pytest.mark.parametrize(
    ("sent", "held_for"),
    [
        (headers("0", str(int(WALL0) + 20)), 20.0),
        (httpx.Headers(headers("0", str(int(WALL0) + 20))), 20.0),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(WALL0) + 20)}, 20.0),
        (headers("5", str(int(WALL0) + 20)), 20.0),  # at the reserve (100 - 95)
        (headers("6", str(int(WALL0) + 20)), None),  # above it
        (headers("0", str(int(WALL0) * 1000 + 20_000)), 20.0),  # milliseconds
        (headers("0", "20"), 20.0),  # a delta, not a timestamp
        (headers("0", str(int(WALL0) + 86_400)), MAX_HOLD_S),  # skew: capped
        (headers("0", str(int(WALL0) - 5)), None),  # already past
        (headers("0", None), None),
        (headers(None, str(int(WALL0) + 20)), None),
        (headers("lots", str(int(WALL0) + 20)), None),
        (headers("inf", str(int(WALL0) + 20)), None),  # not a count: ignored, not raised
        (headers("1e400", str(int(WALL0) + 20)), None),
        ({**headers("0", str(int(WALL0) + 20)), "X-RateLimit-Limit": "Infinity"}, 20.0),
        (headers("0", "soon"), None),
        ({}, None),
    ],
)
def test_observe_holds_until_the_reset_once_remaining_hits_the_reserve(
    sent: dict[str, str], held_for: float | None
) -> None:
    fake = FakeClock(START)
    fake.now = START + timedelta(seconds=1000.0)
    budget = RequestBudget(
        100, margin=0.05, clock=fake.monotonic, wall_clock=lambda: WALL0, sleep=fake.sleep
    )
    budget.observe(sent)
    assert budget.paused_until == (None if held_for is None else 1000.0 + held_for)


def test_a_pause_is_never_longer_than_max_hold() -> None:
    fake = FakeClock(START)
    budget = budget_on(fake, 100, reserve=0)
    budget.pause_for(86_400)  # a Retry-After of a day
    assert budget.paused_until == MAX_RETRY_AFTER_S


async def test_a_hold_from_headers_delays_the_next_request() -> None:
    fake = FakeClock(START)
    budget = budget_on(fake, 100, reserve=0)
    budget.observe(headers("1", str(int(fake.unix()) + 20)))
    await budget.acquire(Priority.POLL)
    assert fake.monotonic() == 0.0  # one left is not zero
    budget.observe(headers("0", str(int(fake.unix()) + 20)))
    await budget.acquire(Priority.POLL)
    assert fake.monotonic() == 20.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1702479645", 45.0), ("1702479645.5", 45.5), (" 30 ", 30.0), ("nan", None), ("-1", None)],
)
def test_seconds_until_reset(value: str, expected: float | None) -> None:
    assert seconds_until_reset(value, now_wall=1702479600.0) == expected


# ---------------------------------------------------------------------------- shared budget
def shared_on(fake: FakeClock, store: Store, rpm: int = 60) -> SharedBudget:
    """A daemon's budget whose slots are also the key's row in ``store`` (as on PostgreSQL)."""
    return SharedBudget(
        rpm,
        slots=store,
        margin=0.0,
        clock=fake.monotonic,
        wall_clock=fake.unix,
        sleep=fake.sleep,
        wall_now=lambda: datetime.fromtimestamp(fake.unix(), UTC),
    )


@pytest.fixture
def slot_store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path}/slots.db") as store:
        store.create_schema()
        yield store


async def test_a_shared_budget_serves_creates_before_polls(slot_store: Store) -> None:
    fake = FakeClock(START)
    mine = shared_on(fake, slot_store)
    now = datetime.fromtimestamp(fake.unix(), UTC)
    # another daemon just took the key's slot (60/min, burst 1): the next is a second away
    assert slot_store.take_request_slot(
        "default", now=now, interval=timedelta(seconds=1), burst=1
    ) == timedelta(0)
    order: list[str] = []

    async def take(name: str, priority: Priority) -> None:
        await mine.acquire(priority)
        order.append(name)

    polls = [asyncio.create_task(take(f"poll{i}", Priority.POLL)) for i in range(3)]
    await until(lambda: mine.waiting() == 3)
    create = asyncio.create_task(take("create", Priority.CREATE))
    await asyncio.gather(*polls, create)
    assert order[0] == "create"


async def test_a_429_on_one_daemon_holds_every_daemon_on_the_key(slot_store: Store) -> None:
    fake = FakeClock(START)
    paused, other = shared_on(fake, slot_store), shared_on(fake, slot_store)
    await paused.acquire(Priority.POLL)
    paused.pause_for(30)
    await other.acquire(Priority.CREATE)
    assert fake.monotonic() >= 30  # the other daemon's request waited out the pause too
    await paused.acquire(Priority.CREATE)
    assert fake.monotonic() >= 30


async def test_a_shared_hold_is_capped_too(slot_store: Store) -> None:
    fake = FakeClock(START)
    paused, other = shared_on(fake, slot_store), shared_on(fake, slot_store)
    await paused.acquire(Priority.POLL)
    paused.pause_for(1e12)  # beyond any datetime: capped, not an OverflowError
    await other.acquire(Priority.CREATE)
    assert MAX_RETRY_AFTER_S <= fake.monotonic() <= MAX_RETRY_AFTER_S + 5  # not for 30,000 years


async def test_nothing_is_sent_while_the_shared_row_cannot_be_read(tmp_path: Path) -> None:
    """The others' share of the key cannot be known while the database is away: requests wait
    (the budget holds) instead of failing, and go once the row can be read again."""
    import sqlite3

    import structlog

    url = f"sqlite:///{tmp_path}/slots.db"
    with Store(url) as setup:
        setup.create_schema()
    fake = FakeClock(START, autojump=False)
    lock = sqlite3.connect(tmp_path / "slots.db", isolation_level=None)
    with Store(url, lock_wait_s=0.01) as store, structlog.testing.capture_logs() as logs:
        budget = shared_on(fake, store)
        lock.execute("BEGIN EXCLUSIVE")  # the row cannot be written: DatabaseBusy
        waiting = asyncio.create_task(budget.acquire(Priority.CREATE))
        await until(lambda: budget.waiting() == 1)
        budget.pause_for(5)  # a 429 meanwhile: held here, not shared (the row is locked)
        fake.advance(timedelta(seconds=30))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        lock.execute("COMMIT")
        for _ in range(10):
            fake.advance(timedelta(seconds=30))
            await asyncio.sleep(0.01)
            if waiting.done():
                break
        await waiting
        assert budget.sent_total == 1
    lock.close()
    said = [line["event"] for line in logs if line["event"].startswith("dialer.budget.")]
    assert said.count("dialer.budget.shared_row_unavailable") == 1
    assert "dialer.budget.hold_not_shared" in said
    assert said[-1] == "dialer.budget.shared_row_back"


@pytest.mark.parametrize(
    ("limit", "rate", "burst"),
    [
        (100, 95, 2),  # the default 5 % margin: 2 back to back, 3 left for latency
        (100, 90, 5),  # a 10 % margin: the cap
        (100, 99, 1),  # never below one
        (20, 19, 1),
        (1000, 950, 5),
    ],
)
def test_the_burst_takes_half_the_margin(limit: int, rate: int, burst: int) -> None:
    assert spaced_burst(limit, rate) == burst


@given(limit=st.integers(min_value=1, max_value=100_000), margin=st.floats(0.0, 0.5))
def test_rate_and_burst_leave_the_other_half_of_the_margin(limit: int, margin: float) -> None:
    rate = budget_rate(limit, margin)
    burst = spaced_burst(limit, rate)
    assert burst >= 1
    if limit - rate >= 2:
        # rate + burst, plus at least as much again for requests latency moves into a window
        assert rate + 2 * burst <= limit
