"""Outcome classification: the simulator's contract, config rules first, totality."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.policy.outcomes import (
    DEFAULT_OUTCOME_RULES,
    PERMANENT_OUTCOMES,
    Outcome,
    OutcomeRule,
    classify,
)

# The simulator's contract (dialer/simulator.py docstring), field for field.
SIMULATED = [
    (
        {"status": "ended", "end_reason": "customer-ended-call", "summary": "Confirmed."},
        "completed",
    ),
    (
        {
            "status": "ended",
            "end_reason": "voicemail",
            "summary": "Voicemail detected. Left message: hi",
        },
        "voicemail",
    ),
    (
        {"status": "failed", "error": "no-answer", "end_reason": "customer-did-not-answer"},
        "no_answer",
    ),
    ({"status": "failed", "error": "busy", "end_reason": "customer-busy"}, "busy"),
    (
        {"status": "failed", "error": "invalid-number", "end_reason": "invalid-destination"},
        "invalid_number",
    ),
    (
        {"status": "failed", "error": "call-rejected", "end_reason": "customer-declined"},
        "declined",
    ),
    (
        {
            "status": "failed",
            "error": "sip-503-service-unavailable",
            "end_reason": "pipeline-error",
        },
        "failed_transient",
    ),
]


@pytest.mark.parametrize(("call", "outcome"), SIMULATED)
def test_the_simulator_contract(call: dict[str, Any], outcome: str) -> None:
    assert classify(call) is Outcome(outcome)


@pytest.mark.parametrize(
    ("call", "outcome"),
    [
        # voicemail seen only in the summary (VoiceDock's documented example), any case
        ({"status": "ended", "summary": "  VOICEMAIL DETECTED. Hung up."}, "voicemail"),
        # a summary merely mentioning voicemail is a conversation
        ({"status": "ended", "summary": "Asked about voicemail detected errors"}, "completed"),
        # a reason that says what happened is believed on an ended call too
        ({"status": "ended", "end_reason": "customer-did-not-answer"}, "no_answer"),
        ({"status": "ended", "end_reason": "customer-busy"}, "busy"),
        # error text is read only on failed calls
        ({"status": "ended", "error": "busy"}, "completed"),
        ({"status": "failed", "end_reason": "no_answer"}, "no_answer"),
        ({"status": "failed"}, "failed_transient"),
        ({"status": "failed", "error": None, "end_reason": None}, "failed_transient"),
        # not terminal yet: we do not know
        ({"status": "connecting"}, "unknown"),
        ({"status": "in-progress", "end_reason": None}, "unknown"),
        ({"status": "dialing"}, "unknown"),
        ({}, "unknown"),
        ({"status": None}, "unknown"),
        # a status VoiceDock may add later: a failure a person should look at
        ({"status": "rejected"}, "failed_permanent"),
        ({"status": "cancelled", "end_reason": "customer-ended-call"}, "failed_permanent"),
        # "ended-with-error" is a webhook status; the receiver maps it to failed, but a raw one
        # is not mistaken for "ended"
        ({"status": "ended-with-error", "error": "STT connection failed"}, "failed_permanent"),
    ],
)
def test_edges_of_the_default_rules(call: dict[str, Any], outcome: str) -> None:
    assert classify(call) is Outcome(outcome)


def test_config_rules_come_first() -> None:
    rules = (
        OutcomeRule(outcome=Outcome.NO_ANSWER, status="ended", end_reason="^silence"),
        *DEFAULT_OUTCOME_RULES,
    )
    assert (
        classify({"status": "ended", "end_reason": "silence-timeout"}, rules) is Outcome.NO_ANSWER
    )
    assert classify({"status": "ended", "end_reason": "customer-ended-call"}, rules) is Outcome(
        "completed"
    )
    # with no rules at all nothing matches: unknown, never a guess
    assert classify({"status": "ended"}, ()) is Outcome.UNKNOWN


def test_a_rule_matches_only_when_every_named_field_matches() -> None:
    rule = OutcomeRule(outcome=Outcome.BUSY, status="failed", error="engaged")
    assert rule.matches({"status": "FAILED", "error": "Line engaged"})
    assert not rule.matches({"status": "failed"})  # error missing
    assert not rule.matches({"status": "failed", "error": None})
    assert not rule.matches({"status": "ended", "error": "engaged"})
    assert OutcomeRule(outcome=Outcome.BUSY).matches({})  # no field named: matches anything


def test_rules_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="regular expression"):
        OutcomeRule(outcome=Outcome.BUSY, error="(")
    with pytest.raises(ValueError, match="not a valid Outcome"):
        OutcomeRule(outcome="engaged")  # type: ignore[arg-type]
    assert OutcomeRule(outcome="busy").outcome is Outcome.BUSY  # type: ignore[arg-type]


def test_permanent_outcomes() -> None:
    assert sorted(PERMANENT_OUTCOMES) == [
        "completed",
        "declined",
        "failed_permanent",
        "invalid_number",
    ]
    assert [o.value for o in Outcome] == [
        "completed",
        "voicemail",
        "no_answer",
        "busy",
        "invalid_number",
        "declined",
        "failed_transient",
        "failed_permanent",
        "unknown",
    ]


field_values = (
    st.none()
    | st.text(max_size=30)
    | st.sampled_from(
        ["ended", "failed", "connecting", "voicemail", "busy", "no-answer", "Voicemail detected."]
    )
)


@given(st.dictionaries(st.sampled_from(["status", "error", "end_reason", "summary"]), field_values))
def test_classify_is_total_and_never_calls_a_live_or_failed_call_completed(
    call: dict[str, str | None],
) -> None:
    outcome = classify(call)
    assert outcome in set(Outcome)
    if outcome is Outcome.COMPLETED:
        assert str(call.get("status")).lower() == "ended"
    if call.get("status") in ("connecting", "in-progress"):
        assert outcome is Outcome.UNKNOWN
