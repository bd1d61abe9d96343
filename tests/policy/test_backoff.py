"""Back-off between tries of something that keeps failing: a table of steps, then properties
over every policy and failure count (bounded by the cap, never near zero, growing)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.policy.backoff import NO_BACKOFF, Backoff

S = timedelta(seconds=1)
POLICY = Backoff(base=S, cap=60 * S)


@pytest.mark.parametrize(
    ("failures", "step_s"),
    [(1, 1), (2, 2), (3, 4), (4, 8), (6, 32), (7, 60), (8, 60), (10_000, 60)],
)
def test_steps_double_up_to_the_cap(failures: int, step_s: float) -> None:
    assert POLICY.step(failures) == step_s * S


def test_a_huge_failure_count_neither_overflows_nor_passes_the_cap() -> None:
    policy = Backoff(base=timedelta(hours=1), cap=timedelta(days=30))
    assert policy.step(10**9) == timedelta(days=30)


def test_no_backoff_waits_nothing() -> None:
    assert NO_BACKOFF.delay(5, random.Random(1)) == timedelta(0)


@pytest.mark.parametrize(
    ("base", "cap", "failures"),
    [(2 * S, S, 1), (-S, S, 1), (S, S, 0)],
)
def test_nonsense_is_refused(base: timedelta, cap: timedelta, failures: int) -> None:
    with pytest.raises(ValueError, match=r"base|failures"):
        Backoff(base=base, cap=cap).step(failures)


def test_scaled_is_the_same_policy_faster() -> None:
    assert POLICY.scaled(60) == Backoff(base=S / 60, cap=S)


policies = st.builds(
    lambda base_ms, extra_ms: Backoff(
        base=timedelta(milliseconds=base_ms), cap=timedelta(milliseconds=base_ms + extra_ms)
    ),
    st.integers(min_value=0, max_value=60_000),
    st.integers(min_value=0, max_value=3_600_000),
)


@given(policies, st.integers(min_value=1, max_value=500), st.integers())
def test_every_wait_is_between_half_its_step_and_its_step(
    policy: Backoff, failures: int, seed: int
) -> None:
    step = policy.step(failures)
    wait = policy.delay(failures, random.Random(seed))
    assert step / 2 <= wait <= step <= policy.cap
    # never near zero (no busy loop): at least half the base, at least half the cap once there
    assert wait >= min(policy.base, policy.cap) / 2


@given(policies, st.integers(min_value=1, max_value=500))
def test_steps_never_shrink(policy: Backoff, failures: int) -> None:
    assert policy.step(failures) <= policy.step(failures + 1)


@given(st.integers())
def test_the_jitter_spreads_daemons_that_failed_together(seed: int) -> None:
    rng = random.Random(seed)
    waits = {POLICY.delay(6, rng) for _ in range(20)}
    assert len(waits) > 1  # twenty daemons do not all come back at the same instant
