"""Outcomes, retries, time zones, reminders, caps and durations: tables plus properties."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.policy.caps import FrequencyCap, cap_next_allowed
from dialer.policy.durations import format_duration, parse_duration
from dialer.policy.outcomes import PERMANENT_OUTCOMES, Outcome, OutcomeRule, classify
from dialer.policy.reminders import ContactTiming, timing_bounds
from dialer.policy.retries import RetryPolicy, RetryRule, decide_retry, next_attempt_at
from dialer.policy.timezones import resolve_zone
from dialer.policy.windows import CallingWindow, parse_range

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


# ----------------------------------------------------------------------- outcomes
@pytest.mark.parametrize(
    ("call", "outcome"),
    [
        ({"status": "ended", "end_reason": "customer-ended-call"}, Outcome.COMPLETED),
        ({"status": "ended", "end_reason": "voicemail"}, Outcome.VOICEMAIL),
        ({"status": "ended", "summary": "Voicemail detected. Left message: hi"}, Outcome.VOICEMAIL),
        (
            {"status": "failed", "error": "no-answer", "end_reason": "customer-did-not-answer"},
            Outcome.NO_ANSWER,
        ),
        ({"status": "failed", "error": "busy", "end_reason": "customer-busy"}, Outcome.BUSY),
        ({"status": "failed", "error": "invalid-number"}, Outcome.INVALID_NUMBER),
        (
            {"status": "failed", "error": "call-rejected", "end_reason": "customer-declined"},
            Outcome.DECLINED,
        ),
        ({"status": "failed", "error": "sip-503-service-unavailable"}, Outcome.FAILED_TRANSIENT),
        ({"status": "failed"}, Outcome.FAILED_TRANSIENT),
        ({"status": "rejected"}, Outcome.FAILED_PERMANENT),
    ],
)
def test_default_classification(call: dict[str, str], outcome: Outcome) -> None:
    assert classify(call) is outcome


def test_config_rules_come_first() -> None:
    from dialer.policy.outcomes import DEFAULT_OUTCOME_RULES

    rules = (
        OutcomeRule(outcome=Outcome.NO_ANSWER, status="ended", end_reason="^silence"),
        *DEFAULT_OUTCOME_RULES,
    )
    assert (
        classify({"status": "ended", "end_reason": "silence-timeout"}, rules) is Outcome.NO_ANSWER
    )
    assert (
        classify({"status": "ended", "end_reason": "customer-ended-call"}, rules)
        is Outcome.COMPLETED
    )
    with pytest.raises(ValueError, match="regular expression"):
        OutcomeRule(outcome=Outcome.BUSY, error="(")


@given(
    st.dictionaries(
        st.sampled_from(["status", "error", "end_reason", "summary"]),
        st.none() | st.text(max_size=20),
    )
)
def test_classify_is_total(call: dict[str, str | None]) -> None:
    assert classify(call) in set(Outcome)


# ----------------------------------------------------------------------- retries
def test_retry_rules() -> None:
    policy = RetryPolicy(
        max_attempts=4,
        rules={
            Outcome.NO_ANSWER: RetryRule(after=timedelta(hours=2), max=2, backoff=2.0),
        },
    )
    rng = random.Random(1)
    first = decide_retry(
        policy,
        outcome=Outcome.NO_ANSWER,
        attempts_made=1,
        same_outcome_count=1,
        ended_at=T0,
        rng=rng,
    )
    assert first.retry and first.not_before == T0 + timedelta(hours=2)
    second = decide_retry(
        policy,
        outcome=Outcome.NO_ANSWER,
        attempts_made=2,
        same_outcome_count=2,
        ended_at=T0,
        rng=rng,
    )
    assert second.not_before == T0 + timedelta(hours=4)
    assert not decide_retry(
        policy,
        outcome=Outcome.NO_ANSWER,
        attempts_made=3,
        same_outcome_count=3,
        ended_at=T0,
        rng=rng,
    ).retry
    assert not decide_retry(
        policy, outcome=Outcome.BUSY, attempts_made=1, same_outcome_count=1, ended_at=T0, rng=rng
    ).retry
    with pytest.raises(ValueError, match="permanent"):
        RetryPolicy(rules={Outcome.COMPLETED: RetryRule(after=timedelta(0), max=1)})


@given(
    outcome=st.sampled_from(list(Outcome)),
    made=st.integers(1, 6),
    same=st.integers(1, 6),
    seed=st.integers(0, 1000),
)
def test_retries_respect_every_limit(outcome: Outcome, made: int, same: int, seed: int) -> None:
    policy = RetryPolicy.default()
    decision = decide_retry(
        policy,
        outcome=outcome,
        attempts_made=made,
        same_outcome_count=same,
        ended_at=T0,
        rng=random.Random(seed),
    )
    if decision.retry:
        rule = policy.rules[outcome]
        assert outcome not in PERMANENT_OUTCOMES
        assert made < policy.max_attempts and same <= rule.max
        assert decision.not_before is not None and decision.not_before >= T0 + rule.after


@settings(max_examples=100, deadline=None)
@given(hours_after=st.integers(0, 72), jitter_seed=st.integers(0, 100))
def test_retry_lands_in_window_and_never_at_night(hours_after: int, jitter_seed: int) -> None:
    zone = ZoneInfo("America/New_York")
    window = CallingWindow(days=frozenset(range(5)), ranges=(parse_range("09:00-17:00"),))
    policy = RetryPolicy(
        rules={
            Outcome.BUSY: RetryRule(
                after=timedelta(hours=hours_after), max=3, jitter=timedelta(minutes=10)
            )
        }
    )
    decision = decide_retry(
        policy,
        outcome=Outcome.BUSY,
        attempts_made=1,
        same_outcome_count=1,
        ended_at=T0,
        rng=random.Random(jitter_seed),
    )
    deadline = T0 + timedelta(days=2)
    due = next_attempt_at(decision, window, zone, deadline)
    if due is not None:
        assert window.allows(due, zone) and due < deadline
        assert 9 <= due.astimezone(zone).hour < 17


# ----------------------------------------------------------------------- zones
@pytest.mark.parametrize(
    ("phone", "explicit", "campaign", "policy", "zone", "source"),
    [
        ("+31612345678", None, None, "skip", "Europe/Amsterdam", "phone"),
        ("+31612345678", "Asia/Tokyo", None, "skip", "Asia/Tokyo", "explicit"),
        ("+12125550123", None, None, "skip", "America/New_York", "phone"),
        ("+61412345678", None, "Australia/Sydney", "skip", "Australia/Sydney", "campaign"),
        ("+61412345678", None, "Europe/Amsterdam", "skip", None, None),
        ("+61412345678", None, "Europe/Amsterdam", "campaign", "Europe/Amsterdam", "campaign"),
        ("+61412345678", "Not/AZone", None, "skip", None, None),
    ],
)
def test_resolve_zone(
    phone: str,
    explicit: str | None,
    campaign: str | None,
    policy: str,
    zone: str | None,
    source: str | None,
) -> None:
    resolution = resolve_zone(
        phone, explicit=explicit, campaign_zone=campaign, unknown_policy=policy
    )  # type: ignore[arg-type]
    assert (str(resolution.zone) if resolution.zone else None, resolution.source) == (zone, source)
    if zone is None:
        assert resolution.reason == "unknown_timezone"


# ----------------------------------------------------------------------- reminders, caps, durations
def test_timing_bounds() -> None:
    appt = T0 + timedelta(days=2)
    assert timing_bounds(
        ContactTiming(appointment_at=appt), call_before=timedelta(hours=24), expires_at=None
    ) == (appt - timedelta(hours=24), appt)
    assert timing_bounds(
        ContactTiming(call_at=T0, deadline=T0 + timedelta(hours=3)),
        call_before=None,
        expires_at=T0 + timedelta(hours=1),
    ) == (T0, T0 + timedelta(hours=1))
    assert timing_bounds(ContactTiming(), call_before=None, expires_at=None) == (None, None)


def test_frequency_cap() -> None:
    cap = FrequencyCap(count=2, period=timedelta(days=7))
    calls = [T0 - timedelta(days=6), T0 - timedelta(days=1)]
    assert cap_next_allowed(cap, calls, T0) == T0 + timedelta(days=1)
    assert cap_next_allowed(cap, calls[1:], T0) == T0
    assert cap_next_allowed(cap, [T0 - timedelta(days=8)] * 5, T0) == T0


@given(st.lists(st.integers(0, 20 * 24), max_size=12), st.integers(1, 5))
def test_cap_never_allows_more_than_count(offsets: list[int], count: int) -> None:
    cap = FrequencyCap(count=count, period=timedelta(days=7))
    calls = [T0 - timedelta(hours=h) for h in offsets]
    allowed = cap_next_allowed(cap, calls, T0)
    in_period = [t for t in calls if allowed - cap.period < t <= allowed]
    assert len(in_period) < count


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(format_duration(timedelta(seconds=seconds))) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "ten minutes", "2 weeks", "-5m", "h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="accepted"):
        parse_duration(text)
