"""When to look at a call again: a table of looks, then properties over every status and age."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.policy.polling import PollPlan, next_poll_at

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
