"""Who a refused create blames: the table row by row, and properties of the hold's arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.policy.rejections import (
    RULES,
    Blame,
    Rejection,
    blame,
    hold_threshold,
    same_error,
    unanswered_allowed,
)

C, P = Blame.CAMPAIGN, Blame.CONTACT

#: (status, code, param, message) -> blame: the bodies the docs show, the simulator's, guesses
TABLE: list[tuple[int, str | None, str | None, str, Blame]] = [
    # the override, the assistant, the number: every contact would get the same answer
    (422, "invalid_request", "assistant_override.frist_message", "Unknown field", C),
    (422, None, "assistant_override", "Unknown field in assistant_override: frist_message", C),
    (422, None, None, "Unknown field in assistant_override: frist_message", C),
    (400, "invalid_request", "assistant_id", "exactly one of assistant_id or assistant", C),
    (400, "missing_field", "assistant_id", "assistant_id is required", C),
    (400, None, "agent_config", "deprecated field", C),
    (400, None, "number_id", "Number has no SIP trunk for outbound", C),
    (400, None, "metadata.dialer_run_id", "must be a string", C),
    (404, None, None, "Not Found: Assistant not found", C),
    (404, None, None, "Number not found", C),
    (404, None, None, "Not Found", C),  # base_url without /api/v1
    (409, None, None, "Assistant is inactive", C),
    (409, "conflict", None, "Duplicate", C),
    (422, None, None, "llm_config.messages must be a list", C),
    (400, None, None, "body must be an object", C),
    (413, None, None, "Request Entity Too Large", C),
    (302, None, None, "Found (redirect to /login; check base_url)", C),
    # the contact's own number: that contact alone
    (400, "invalid_request", "destination", "destination must be an E.164 number", P),
    (422, None, "destination", "not dialable", P),
    (400, None, "customer.number", "invalid", P),
    (400, None, None, "Invalid destination: +3161234", P),
    (422, None, None, "The number is not a valid phone number", P),
    (400, None, None, "invalid number", P),
    (422, None, None, "Unsupported country for outbound calls", P),
    (409, None, None, "blocked number", P),
    # a 404 naming the destination is still not about a contact resource
    (404, None, "destination", "Destination not found", C),
    # the assistant's name wins over the destination's when both are named
    (422, None, None, "assistant cannot call this destination", C),
]


@pytest.mark.parametrize(("status", "code", "param", "message", "expected"), TABLE)
def test_the_table(
    status: int, code: str | None, param: str | None, message: str, expected: Blame
) -> None:
    rejection = Rejection(status=status, code=code, param=param, message=message)
    assert blame(rejection) is expected


def test_every_row_decides_some_rejection_and_the_last_catches_all() -> None:
    """No row is shadowed by the rows above it for every input, and the last matches anything."""
    examples = [Rejection(status=s, code=c, param=p, message=m) for s, c, p, m, _ in TABLE] + [
        Rejection(status=None)
    ]
    deciding = set()
    for rejection in examples:
        for index, rule in enumerate(RULES):
            if rule.matches(rejection):
                deciding.add(index)
                break
    assert deciding == set(range(len(RULES)))
    assert RULES[-1].matches(Rejection(status=None, message=""))
    assert all(rule.why for rule in RULES)


text = st.text(max_size=60)
maybe = st.none() | text


@given(st.integers(100, 599) | st.none(), maybe, maybe, text)
def test_only_the_contact_rows_blame_a_contact(
    status: int | None, code: str | None, param: str | None, message: str
) -> None:
    """Whatever VoiceDock answers, a contact is blamed only for a 400/409/422 that names its
    number, never for a 404 or a status the docs do not give for a refused body."""
    decided = blame(Rejection(status=status, code=code, param=param, message=message))
    if decided is Blame.CONTACT:
        assert status in (400, 409, 422)
        about = f"{param or ''} {message}".lower()
        words = ("destination", "customer", "phone", "e.164", "number", "dial", "unsupported")
        assert any(word in about for word in (*words, "e164", "blocked"))


@given(st.integers(400, 499), maybe, text, st.sampled_from(["assistant_id", "number_id"]))
def test_a_campaign_field_is_always_the_campaign(
    status: int, code: str | None, message: str, param: str
) -> None:
    assert blame(Rejection(status=status, code=code, param=param, message=message)) in (
        Blame.CAMPAIGN,
    ) or status not in (400, 404, 409, 422)


def test_same_error_ignores_numbers_and_case() -> None:
    a = Rejection(status=422, code="x", param="p", message="Unknown field for +31612345601")
    b = Rejection(status=422, code="X", param="P", message="unknown field for +44207946010")
    assert same_error(a, b)
    assert not same_error(a, Rejection(status=400, code="x", param="p", message=a.message))
    assert not same_error(a, Rejection(status=422, code="y", param="p", message=a.message))
    assert not same_error(a, Rejection(status=422, code="x", param="q", message=a.message))
    assert not same_error(a, Rejection(status=422, code="x", param="p", message="Other"))


@given(
    st.builds(
        Rejection, status=st.integers(0, 999) | st.none(), code=maybe, param=maybe, message=text
    )
)
def test_same_error_is_reflexive(rejection: Rejection) -> None:
    assert same_error(rejection, rejection)


@pytest.mark.parametrize(
    ("hold_after", "contacts", "expected"),
    [(3, 200, 3), (3, 3, 3), (3, 2, 2), (3, 1, 1), (3, 0, 1), (1, 200, 1), (10, 4, 4)],
)
def test_hold_threshold(hold_after: int, contacts: int, expected: int) -> None:
    assert hold_threshold(hold_after, contacts) == expected


def test_hold_threshold_refuses_zero() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        hold_threshold(0, 10)


@given(st.integers(1, 50), st.integers(0, 10_000), st.integers(0, 60))
def test_never_more_refusals_than_the_threshold(
    hold_after: int, contacts: int, streak: int
) -> None:
    """Sending at most ``unanswered_allowed`` at a time, a campaign whose every create is refused
    is held after at most ``threshold`` refusals: the creates out never exceed what is left."""
    threshold = hold_threshold(hold_after, contacts)
    if streak >= threshold:
        return  # held already
    allowed = unanswered_allowed(threshold, streak, proven=False)
    assert allowed is not None and 1 <= allowed <= threshold - streak
    assert unanswered_allowed(threshold, streak, proven=True) is None
