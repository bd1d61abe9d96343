"""Retry rules per outcome, as decisions (values), never side effects."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dialer.policy.outcomes import PERMANENT_OUTCOMES, Outcome
from dialer.policy.windows import CallingWindow


@dataclass(frozen=True, kw_only=True)
class RetryRule:
    """Retry ``max`` times after this outcome, ``after`` * ``backoff`` ** (n - 1) + jitter apart."""

    after: timedelta
    max: int
    backoff: float = 1.0
    jitter: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if (
            self.after < timedelta(0)
            or self.max < 0
            or self.backoff < 1.0
            or self.jitter < timedelta(0)
        ):
            raise ValueError(
                "a retry rule needs after >= 0, max >= 0, backoff >= 1 and jitter >= 0"
            )


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    max_attempts: int = 3
    rules: Mapping[Outcome, RetryRule] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        permanent = sorted(o.value for o in self.rules if o in PERMANENT_OUTCOMES)
        if permanent:
            raise ValueError(f"outcomes {permanent} are permanent and never retried")

    @classmethod
    def default(cls) -> RetryPolicy:
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
    """Whether and when to try again after an attempt ended with ``outcome``.

    ``attempts_made`` counts every attempt so far (this one included); ``same_outcome_count``
    counts those that ended with this outcome (this one included).
    """
    if outcome in PERMANENT_OUTCOMES:
        return RetryDecision(False, None, f"{outcome.value} is permanent")
    rule = policy.rules.get(outcome)
    if rule is None:
        return RetryDecision(False, None, f"no retry rule for {outcome.value}")
    if attempts_made >= policy.max_attempts:
        return RetryDecision(False, None, f"max_attempts {policy.max_attempts} reached")
    if same_outcome_count > rule.max:
        return RetryDecision(False, None, f"{outcome.value} retried {rule.max} times already")
    delay = rule.after * (rule.backoff ** max(0, same_outcome_count - 1))
    if rule.jitter > timedelta(0):
        delay += rule.jitter * rng.random()
    return RetryDecision(True, ended_at + delay, f"retry after {outcome.value}")


def next_attempt_at(
    decision: RetryDecision, window: CallingWindow, zone: ZoneInfo, deadline: datetime | None
) -> datetime | None:
    """The retry moved into the next allowed window; None when none opens before the deadline."""
    if not decision.retry or decision.not_before is None:
        return None
    return window.next_allowed(decision.not_before, zone, deadline=deadline)
