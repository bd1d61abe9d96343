"""When to look at a call again: a table of looks, then properties over every status and age."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.policy.polling import (
    KeyLoad,
    PollPlan,
    creates_per_minute,
    list_interval,
    list_spare,
    next_poll_at,
)

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PLAN = PollPlan()  # first look 8 s, ringing 5 s, talk 90 s, bounds 2-60 s
S = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("status", "talking_s", "delay_s"),
    [
        (None, 0, 8),  # never seen: the first look, after the create
        ("queued", 0, 5),
        ("ringing", 12, 5),
        ("in-progress", 0, 60),  # 90 s to go: 72 s, capped at the maximum
        ("in-progress", 40, 40),  # 50 s to go: 80 % of it
        ("in-progress", 80, 8),  # 10 s to go: 8 s
        ("in-progress", 87, 15),  # 3 s to go (< 2 x minimum): the overdue pace, talk / 6
        ("in-progress", 100, 15),  # 10 s over: still talk / 6 (over / 2 = 5 s is shorter)
        ("in-progress", 150, 30),  # 60 s over: half the overrun
        ("in-progress", 400, 60),  # 310 s over: capped at the maximum
        ("forwarding", 10, 5),  # any other live status is treated like ringing
    ],
)
def test_looks_follow_the_call(status: str | None, talking_s: int, delay_s: float) -> None:
    dialed = T0 - talking_s * S - 5 * S
    answered = T0 - talking_s * S
    looked = next_poll_at(PLAN, status=status, now=T0, dialed_at=dialed, answered_at=answered)
    assert looked - T0 == delay_s * S


def test_without_an_answer_time_the_talk_is_counted_from_the_dial() -> None:
    dialed = T0 - 100 * S
    assert next_poll_at(PLAN, status="in-progress", now=T0, dialed_at=dialed) == T0 + 15 * S


def test_scaling_divides_every_duration_and_keeps_the_threshold() -> None:
    fast = PLAN.scaled(60)
    assert fast.expected_talk == timedelta(seconds=1.5)
    assert fast.list_interval == PLAN.list_interval / 60
    assert fast.list_threshold == PLAN.list_threshold
    dialed = T0 - 150 * S / 60
    assert next_poll_at(fast, status="in-progress", now=T0, dialed_at=dialed) - T0 == 30 * S / 60


statuses = st.sampled_from([None, "queued", "ringing", "in-progress", "forwarding"])
ages = st.integers(min_value=0, max_value=24 * 3600)


@given(status=statuses, talking_s=ages, ring_s=st.integers(min_value=0, max_value=60))
def test_every_look_lies_within_the_bounds(status: str | None, talking_s: int, ring_s: int) -> None:
    answered = T0 - talking_s * S
    looked = next_poll_at(
        PLAN, status=status, now=T0, dialed_at=answered - ring_s * S, answered_at=answered
    )
    assert PLAN.minimum <= looked - T0 <= PLAN.maximum


@given(shorter=ages, longer=ages)
def test_an_overrunning_call_is_never_looked_at_more_often_as_it_runs_on(
    shorter: int, longer: int
) -> None:
    """Past the expected end, the pause between looks never shrinks as the call runs longer."""
    shorter, longer = sorted((shorter, longer))
    end = int(PLAN.expected_talk.total_seconds())

    def pause(talking_s: int) -> timedelta:
        answered = T0 - (end + talking_s) * S
        return (
            next_poll_at(
                PLAN, status="in-progress", now=T0, dialed_at=answered, answered_at=answered
            )
            - T0
        )

    assert pause(shorter) <= pause(longer)


@given(talking_s=st.integers(min_value=0, max_value=80))
def test_before_the_expected_end_a_look_never_lands_after_it(talking_s: int) -> None:
    answered = T0 - talking_s * S
    looked = next_poll_at(
        PLAN, status="in-progress", now=T0, dialed_at=answered, answered_at=answered
    )
    assert looked <= answered + PLAN.expected_talk


# --------------------------------------------------------------------------- the list interval
def _load(**kw: object) -> KeyLoad:
    values: dict[str, object] = {"rate_per_minute": 95, "in_flight": 50}
    values.update(kw)
    return KeyLoad(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("load", "interval_s"),
    [
        # concurrency-bound (the bench's campaign): 50 calls of ~98 s need ~30.6 creates a
        # minute of 95; half the other ~64 pays for a list every 1.9 s: the 2 s floor
        (_load(line_wanted=True), 2.0),
        # the tail: nobody waits for a line, the whole rate is spare, but only the last end
        # decides when the run is over: the floor with one call left, 2 s a call before
        (_load(in_flight=1), 2.0),
        (_load(in_flight=2), 4.0),
        (_load(in_flight=7), 14.0),
        (_load(in_flight=50), 20.0),
        # few lines, contacts waiting: the spare would pay for the floor, but 5 calls of ~98 s
        # end one every 19.6 s, and a list more often than an end mostly finds nothing
        (_load(in_flight=5, line_wanted=True), 98 / 5),
        (_load(in_flight=12, line_wanted=True), 98 / 12),
        # a create queued for a moment is demand within the minute: 2 s still
        (_load(line_wanted=True, creates_waiting=1), 2.0),
        # creates queued for the budget take what the ends leave: the slowest look
        (_load(line_wanted=True, creates_waiting=64), 20.0),
        # 150 lines of ~98 s want ~92 creates a minute of 95: 1.4 lists a minute is less
        # than the slowest look's 3
        (_load(in_flight=150, line_wanted=True), 20.0),
        # 120 lines: 95 - 73.5 = 21.5 spare, 10.8 lists a minute: every 5.6 s
        (_load(in_flight=120, line_wanted=True), 60 * 98 / (0.5 * (95 * 98 - 120 * 60))),
        # a list of three pages costs three requests: every 16.7 s
        (_load(in_flight=120, line_wanted=True, pages=3), 3 * 60 * 98 / (0.5 * (95 * 98 - 7200))),
        # four pages: slower than the slowest look
        (_load(in_flight=120, line_wanted=True, pages=4), 20.0),
        # a key limited to 20 a minute (shared with other systems): 10 spare, every 6 s
        (_load(rate_per_minute=20, in_flight=1), 6.0),
        # three daemons share the bench's key: each lists on a third of the spare (5.6 s),
        # and together they may list once per end: each every 3 x 98 / 50 = 5.9 s
        (_load(line_wanted=True, daemons=3), 3 * 98 / 50),
        # ... and in the tail, 2 calls left: each every 3 x 2 x 2 s
        (_load(in_flight=2, daemons=3), 12.0),
    ],
)
def test_the_list_interval_follows_the_spare_budget(load: KeyLoad, interval_s: float) -> None:
    assert list_interval(PLAN, load).total_seconds() == pytest.approx(interval_s)


def test_a_plan_whose_slowest_list_is_faster_than_the_floor_keeps_it() -> None:
    plan = replace(PLAN, list_interval=timedelta(seconds=1))
    assert list_interval(plan, _load(in_flight=1)) == timedelta(seconds=1)
    assert list_interval(plan, _load(creates_waiting=300)) == timedelta(seconds=1)


loads = st.builds(
    KeyLoad,
    rate_per_minute=st.integers(min_value=1, max_value=10_000),
    in_flight=st.integers(min_value=0, max_value=2_000),
    creates_waiting=st.integers(min_value=0, max_value=500),
    line_wanted=st.booleans(),
    pages=st.integers(min_value=1, max_value=20),
    daemons=st.integers(min_value=1, max_value=10),
)


@given(load=loads)
def test_lists_never_plan_more_requests_than_the_spare(load: KeyLoad) -> None:
    interval = list_interval(PLAN, load)
    assert PLAN.list_interval_min <= interval <= PLAN.list_interval
    if interval < PLAN.list_interval:
        # below the slowest look, lists are paid for by the spare, never a create's slot
        per_minute = load.pages * 60 / interval.total_seconds()
        assert per_minute <= list_spare(PLAN, load) * (1 + 1e-9)
        all_daemons = per_minute * load.daemons
        assert all_daemons + creates_per_minute(PLAN, load) <= load.rate_per_minute * (1 + 1e-9)


@given(load=loads, more=st.integers(min_value=0, max_value=10_000))
def test_more_spare_budget_never_lists_less_often(load: KeyLoad, more: int) -> None:
    richer = replace(load, rate_per_minute=load.rate_per_minute + more)
    assert list_interval(PLAN, richer) <= list_interval(PLAN, load)


@given(load=loads, more=st.integers(min_value=0, max_value=500))
def test_more_demand_for_creates_never_lists_more_often(load: KeyLoad, more: int) -> None:
    shared = replace(load, daemons=load.daemons + more)
    assert list_interval(PLAN, shared) >= list_interval(PLAN, load)
    queued = replace(load, creates_waiting=load.creates_waiting + more)
    assert list_interval(PLAN, queued) >= list_interval(PLAN, load)


@given(load=loads)
def test_a_list_never_comes_sooner_than_it_can_pay_for_itself(load: KeyLoad) -> None:
    interval = list_interval(PLAN, load)
    calls = max(load.in_flight, 1)
    if load.line_wanted:
        # at most lists_per_end lists for each end expected among the calls in flight, from
        # all the daemons sharing the key together
        ends_per_minute = calls * 60 / (PLAN.first_look + PLAN.expected_talk).total_seconds()
        lists_per_minute = load.daemons * 60 / interval.total_seconds()
        assert lists_per_minute <= max(
            ends_per_minute * PLAN.lists_per_end * (1 + 1e-9),
            load.daemons * 60 / PLAN.list_interval.total_seconds(),  # the slowest look, each
        )
    else:
        # the daemons together: no more often than list_interval_min a call left
        together = interval / load.daemons
        assert together >= min(PLAN.list_interval / load.daemons, PLAN.list_interval_min * calls)


@given(load=loads, more=st.integers(min_value=0, max_value=500))
def test_in_the_tail_more_calls_left_never_list_more_often(load: KeyLoad, more: int) -> None:
    tail = replace(load, line_wanted=False)
    longer = replace(tail, in_flight=tail.in_flight + more)
    assert list_interval(PLAN, longer) >= list_interval(PLAN, tail)


@given(rate=st.integers(min_value=60, max_value=10_000))
def test_the_last_call_of_a_run_is_listed_at_the_floor_when_the_budget_has_room(
    rate: int,
) -> None:
    last = KeyLoad(rate_per_minute=rate, in_flight=1)
    assert list_interval(PLAN, last) == PLAN.list_interval_min
