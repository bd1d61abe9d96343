"""Retry rules per outcome, as decisions (values), never side effects.

The delay after the n-th attempt ending with one outcome is ``after * backoff ** (n - 1)``
plus a uniform jitter in ``[0, jitter]``; the dial gate (dialer.policy.gate) then moves the
retry into the next allowed window, and expires it when that is at or after the contact's
deadline. Outcomes in
``PERMANENT_OUTCOMES`` are never retried, and neither is ``unknown`` unless a campaign asks
for it: the call may have reached the person.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dialer.policy.outcomes import PERMANENT_OUTCOMES, Outcome

__all__ = [
    "MAX_DELAY",
    "RetryDecision",
    "RetryPolicy",
    "RetryRule",
    "decide_retry",
    "may_retry",
]

#: the longest backoff delay: next_allowed searches 366 days ahead, never further
MAX_DELAY = timedelta(days=366)


@dataclass(frozen=True, kw_only=True)
class RetryRule:
    """Retry up to ``max`` times after this outcome, ``after * backoff ** (n - 1)`` + jitter later.

    >>> rule = RetryRule(after=timedelta(minutes=10), max=3, backoff=2.0)  # 10m, 20m, 40m
    """

    after: timedelta
    max: int
    backoff: float = 1.0
    jitter: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if (
            self.after < timedelta(0)
            or self.max < 0
            or not self.backoff >= 1.0  # also refuses NaN
            or self.jitter < timedelta(0)
        ):
            raise ValueError(
                "a retry rule needs after >= 0, max >= 0, backoff >= 1 and jitter >= 0"
            )


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """``max_attempts`` counts every call to a contact (the first one included), across the
    runs of its campaign. An outcome in ``done_when`` meets the campaign's goal: the contact
    is done, and no rule retries it."""

    max_attempts: int = 3
    rules: Mapping[Outcome, RetryRule] = field(default_factory=dict)
    done_when: frozenset[Outcome] = frozenset({Outcome.COMPLETED})

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        permanent = sorted(Outcome(o).value for o in self.rules if o in PERMANENT_OUTCOMES)
        if permanent:
            raise ValueError(f"outcomes {permanent} are permanent and never retried")

    @classmethod
    def default(cls) -> RetryPolicy:
        """no_answer 2h x2, busy 30m x2, voicemail 4h x1, failed_transient 10m x3 doubling."""
        return cls(
            max_attempts=3,
            rules={
                Outcome.NO_ANSWER: RetryRule(after=timedelta(hours=2), max=2),
                Outcome.BUSY: RetryRule(after=timedelta(minutes=30), max=2),
                Outcome.VOICEMAIL: RetryRule(after=timedelta(hours=4), max=1),
                Outcome.FAILED_TRANSIENT: RetryRule(
                    after=timedelta(minutes=10), max=3, backoff=2.0
                ),
            },
        )


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    not_before: datetime | None
    reason: str


def decide_retry(
    policy: RetryPolicy,
    *,
    outcome: Outcome,
    attempts_made: int,
    same_outcome_count: int,
    ended_at: datetime,
    rng: random.Random,
) -> RetryDecision:
    """Whether and when (before windows) to call again after an attempt ended with ``outcome``.

    ``attempts_made`` counts every attempt so far, this one included; ``same_outcome_count``
    counts those that ended with this outcome, this one included. Tests pass a seeded ``rng``
    (or a rule without jitter) to get exact instants.
    """
    if attempts_made < 1 or same_outcome_count < 1:
        raise ValueError("attempts_made and same_outcome_count count this attempt: at least 1")
    if ended_at.utcoffset() is None:
        raise ValueError("policy decisions need aware datetimes")
    refusal = _refusal(policy, outcome, attempts_made)
    if refusal is not None:
        return RetryDecision(False, None, refusal)
    rule = policy.rules[outcome]
    if same_outcome_count > rule.max:
        return RetryDecision(False, None, f"{outcome.value} retried {rule.max} times already")
    delay = _backoff_delay(rule, same_outcome_count)
    if rule.jitter > timedelta(0):
        delay += timedelta(seconds=rng.uniform(0.0, rule.jitter.total_seconds()))
    return RetryDecision(True, ended_at + delay, f"retry after {outcome.value}")


def may_retry(policy: RetryPolicy, *, outcome: Outcome, attempts_made: int) -> bool:
    """Whether any retry is possible before counting earlier outcomes (which costs a read)."""
    return _refusal(policy, outcome, attempts_made) is None


def _refusal(policy: RetryPolicy, outcome: Outcome, attempts_made: int) -> str | None:
    if outcome in PERMANENT_OUTCOMES:
        return f"{outcome.value} is permanent"
    if outcome in policy.done_when:
        return f"{outcome.value} meets the goal (done_when)"
    if outcome not in policy.rules:
        return f"no retry rule for {outcome.value}"
    if attempts_made >= policy.max_attempts:
        return f"max_attempts {policy.max_attempts} reached"
    return None


def _backoff_delay(rule: RetryRule, n: int) -> timedelta:
    """``after * backoff ** (n - 1)``, capped where no calling window could be searched anyway
    (a large ``max`` with doubling would otherwise overflow timedelta)."""
    if rule.after == timedelta(0):
        return rule.after
    try:
        factor = float(rule.backoff) ** (n - 1)
    except OverflowError:
        factor = float("inf")
    return timedelta(seconds=min(rule.after.total_seconds() * factor, MAX_DELAY.total_seconds()))
