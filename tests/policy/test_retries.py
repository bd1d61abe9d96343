"""Retry decisions: tables for the default policy, properties for every limit and window."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.policy import gate
from dialer.policy.outcomes import PERMANENT_OUTCOMES, Outcome
from dialer.policy.reminders import ContactTiming
from dialer.policy.retries import (
    MAX_DELAY,
    RetryDecision,
    RetryPolicy,
    RetryRule,
    decide_retry,
)
from dialer.policy.windows import CallingWindow, parse_range

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday
NY = ZoneInfo("America/New_York")
AMS = ZoneInfo("Europe/Amsterdam")


def next_attempt_at(
    decision: RetryDecision, window: CallingWindow, zone: ZoneInfo, deadline: datetime | None
) -> datetime | None:
    """Where the engine places a retry: the dial gate asked at the backoff's instant."""
    if not decision.retry or decision.not_before is None:
        return None
    facts = gate.ContactFacts(
        phone="+31612345678", timezone=zone.key, timing=ContactTiming(deadline=deadline)
    )
    placed = gate.decide(facts, gate.DialRules(window=window), now=decision.not_before)
    return gate.first_allowed(placed, decision.not_before)


def decide(policy: RetryPolicy, outcome: str, made: int, same: int, seed: int = 0) -> RetryDecision:
    return decide_retry(
        policy,
        outcome=Outcome(outcome),
        attempts_made=made,
        same_outcome_count=same,
        ended_at=T0,
        rng=random.Random(seed),
    )


@pytest.mark.parametrize(
    ("outcome", "made", "same", "delay", "reason"),
    [
        ("no_answer", 1, 1, timedelta(hours=2), "retry after no_answer"),
        ("no_answer", 2, 2, timedelta(hours=2), "retry after no_answer"),
        ("no_answer", 3, 3, None, "max_attempts 3 reached"),
        ("busy", 1, 1, timedelta(minutes=30), "retry after busy"),
        ("busy", 2, 1, timedelta(minutes=30), "retry after busy"),  # after a no_answer
        ("voicemail", 1, 1, timedelta(hours=4), "retry after voicemail"),
        ("voicemail", 2, 2, None, "voicemail retried 1 times already"),
        ("failed_transient", 1, 1, timedelta(minutes=10), "retry after failed_transient"),
        ("failed_transient", 2, 2, timedelta(minutes=20), "retry after failed_transient"),
        ("completed", 1, 1, None, "completed is permanent"),
        ("declined", 1, 1, None, "declined is permanent"),
        ("invalid_number", 1, 1, None, "invalid_number is permanent"),
        ("failed_permanent", 1, 1, None, "failed_permanent is permanent"),
        ("unknown", 1, 1, None, "no retry rule for unknown"),  # it may have reached them
    ],
)
def test_default_policy(
    outcome: str, made: int, same: int, delay: timedelta | None, reason: str
) -> None:
    decision = decide(RetryPolicy.default(), outcome, made, same)
    expected = T0 + delay if delay is not None else None
    assert decision == RetryDecision(delay is not None, expected, reason)


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(
        max_attempts=100,
        rules={Outcome.FAILED_TRANSIENT: RetryRule(after=timedelta(minutes=10), max=99, backoff=2)},
    )
    delays = [decide(policy, "failed_transient", n, n).not_before for n in (1, 2, 3, 4)]
    assert delays == [T0 + timedelta(minutes=m) for m in (10, 20, 40, 80)]
    # 10m * 2**98 would overflow timedelta: capped at the search horizon instead
    assert decide(policy, "failed_transient", 99, 99).not_before == T0 + MAX_DELAY
    huge = RetryPolicy(
        max_attempts=5000,
        rules={Outcome.BUSY: RetryRule(after=timedelta(minutes=1), max=4000, backoff=10)},
    )
    assert decide(huge, "busy", 3000, 3000).not_before == T0 + MAX_DELAY


def test_jitter_is_uniform_within_its_bound_and_seeded() -> None:
    policy = RetryPolicy(
        rules={
            Outcome.BUSY: RetryRule(after=timedelta(minutes=30), max=2, jitter=timedelta(minutes=5))
        }
    )
    offsets = {decide(policy, "busy", 1, 1, seed).not_before - T0 for seed in range(200)}  # type: ignore[operator]
    assert all(timedelta(minutes=30) <= o <= timedelta(minutes=35) for o in offsets)
    assert len(offsets) > 150  # really random, not a constant
    assert min(offsets) < timedelta(minutes=31) and max(offsets) > timedelta(minutes=34)
    assert decide(policy, "busy", 1, 1, 7) == decide(policy, "busy", 1, 1, 7)


def test_policies_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="permanent"):
        RetryPolicy(rules={Outcome.COMPLETED: RetryRule(after=timedelta(0), max=1)})
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    for bad in (
        {"after": timedelta(minutes=-1), "max": 1},
        {"after": timedelta(0), "max": -1},
        {"after": timedelta(0), "max": 1, "backoff": 0.5},
        {"after": timedelta(0), "max": 1, "backoff": float("nan")},
        {"after": timedelta(0), "max": 1, "jitter": timedelta(seconds=-1)},
    ):
        with pytest.raises(ValueError, match="retry rule"):
            RetryRule(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        decide(RetryPolicy.default(), "busy", 0, 0)
    with pytest.raises(ValueError, match="aware"):
        decide_retry(
            RetryPolicy.default(),
            outcome=Outcome.BUSY,
            attempts_made=1,
            same_outcome_count=1,
            ended_at=datetime(2026, 1, 1),
            rng=random.Random(0),
        )


def test_the_retry_moves_into_the_next_window_or_expires() -> None:
    window = CallingWindow(
        days=frozenset(range(5)),
        ranges=(parse_range("09:00-17:00"),),
        holiday_regions=("NL",),
    )
    late = RetryDecision(True, datetime(2026, 12, 24, 18, tzinfo=AMS), "retry after busy")
    # Christmas Eve evening -> Christmas and Boxing Day are holidays, then a weekend: Monday
    monday = datetime(2026, 12, 28, 9, tzinfo=AMS)
    assert next_attempt_at(late, window, AMS, None) == monday
    assert next_attempt_at(late, window, AMS, monday) is None  # at the deadline: expire
    assert next_attempt_at(late, window, AMS, monday + timedelta(minutes=1)) == monday
    assert next_attempt_at(RetryDecision(False, None, "x"), window, AMS, None) is None
    inside = RetryDecision(True, datetime(2026, 12, 23, 10, tzinfo=AMS), "retry after busy")
    assert next_attempt_at(inside, window, AMS, None) == datetime(2026, 12, 23, 10, tzinfo=AMS)


# ----------------------------------------------------------------------- properties
rules = st.builds(
    RetryRule,
    after=st.integers(0, 48 * 60).map(lambda m: timedelta(minutes=m)),
    max=st.integers(0, 4),
    backoff=st.sampled_from([1.0, 1.5, 2.0, 3.0]),
    jitter=st.integers(0, 30).map(lambda m: timedelta(minutes=m)),
)
policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 6),
    rules=st.dictionaries(
        st.sampled_from([o for o in Outcome if o not in PERMANENT_OUTCOMES]), rules
    ),
)


@given(policy=policies, outcomes=st.lists(st.sampled_from(list(Outcome)), min_size=1, max_size=12))
def test_a_contact_is_never_called_more_than_the_rules_allow(
    policy: RetryPolicy, outcomes: list[Outcome]
) -> None:
    """Play a contact's life: each attempt's outcome comes from the list while retries last."""
    rng = random.Random(0)
    caused = {o: 0 for o in Outcome}
    attempts = 0
    ended = T0
    for outcome in outcomes:
        attempts += 1
        same = sum(1 for o in outcomes[:attempts] if o is outcome)
        decision = decide_retry(
            policy,
            outcome=outcome,
            attempts_made=attempts,
            same_outcome_count=same,
            ended_at=ended,
            rng=rng,
        )
        if not decision.retry:
            break
        rule = policy.rules[outcome]
        caused[outcome] += 1
        assert decision.not_before is not None
        assert decision.not_before >= ended + rule.after  # backoff never shrinks the delay
        assert (
            decision.not_before
            <= ended + min(rule.after * rule.backoff ** (same - 1), MAX_DELAY) + rule.jitter
        )
        ended = decision.not_before
    assert attempts <= policy.max_attempts
    for outcome, count in caused.items():
        assert outcome not in PERMANENT_OUTCOMES or count == 0
        assert count <= (policy.rules[outcome].max if outcome in policy.rules else 0)


@settings(max_examples=150)
@given(
    hours_after=st.integers(0, 96),
    seed=st.integers(0, 100),
    deadline_hours=st.none() | st.integers(0, 120),
    zone=st.sampled_from(["America/New_York", "Europe/Amsterdam", "Asia/Tokyo", "Pacific/Apia"]),
)
def test_a_retry_lands_inside_the_window_before_the_deadline(
    hours_after: int, seed: int, deadline_hours: int | None, zone: str
) -> None:
    tz = ZoneInfo(zone)
    window = CallingWindow(
        days=frozenset(range(5)),
        ranges=(parse_range("09:00-17:00"),),
        skip_dates=frozenset({date(2026, 11, 26)}),
    )
    policy = RetryPolicy(
        rules={
            Outcome.BUSY: RetryRule(
                after=timedelta(hours=hours_after), max=3, jitter=timedelta(minutes=10)
            )
        }
    )
    decision = decide(policy, "busy", 1, 1, seed)
    deadline = None if deadline_hours is None else T0 + timedelta(hours=deadline_hours)
    due = next_attempt_at(decision, window, tz, deadline)
    assert decision.not_before is not None
    if due is None:
        assert deadline is not None
        assert window.next_allowed(decision.not_before, tz) >= deadline  # type: ignore[operator]
        return
    local = due.astimezone(tz)
    assert due >= decision.not_before and (deadline is None or due < deadline)
    assert local.weekday() < 5 and local.date() != date(2026, 11, 26)
    # 09:00 at the earliest; 16:50 at the latest (10 minutes before close)
    assert time(9) <= local.time() < time(16, 50)
