"""The status page's pure parts: numbers masked, plain words, chart geometry."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.attempts import AttemptState
from dialer.phones import mask, mask_in_text
from dialer.policy.outcomes import Outcome
from dialer.web.charts import columns, horizontal_bars
from dialer.web.words import (
    ago,
    attempt_words,
    clock_skew_words,
    duration_words,
    key_hold_words,
    needs_a_person,
)

# ---------------------------------------------------------------------------- masked numbers


@pytest.mark.parametrize(
    ("e164", "shown"),
    [
        ("+31612345601", "+31 6 •••• 5601"),
        ("+12125550101", "+1 2 •••• 0101"),
        ("+4917012345602", "+49 1 •••• 5602"),
        ("+44207946", "+44 •••• 46"),
        ("not a number", "••••"),
    ],
)
def test_a_masked_number(e164: str, shown: str) -> None:
    assert mask(e164) == shown


@given(
    region=st.sampled_from(["NL", "US", "GB", "DE", "JP", "AU", "BR", "IN", "NZ", "FR"]),
    data=st.data(),
)
def test_a_mask_shows_the_country_code_and_five_digits_at_most(
    region: str, data: st.DataObject
) -> None:
    example = phonenumbers.example_number(region)
    assert example is not None
    national = str(example.national_number)
    digits = data.draw(st.text("0123456789", min_size=len(national), max_size=len(national)))
    e164 = f"+{example.country_code}{digits}"
    shown = mask(e164)
    assert e164 not in shown and digits not in shown
    cc, *rest = shown.removeprefix("+").split(" ")
    assert cc == str(example.country_code)
    assert len(re.sub(r"\D", "", "".join(rest))) <= 5
    assert shown.endswith(digits[-4:])


def test_numbers_in_text_are_hidden_however_they_are_written() -> None:
    text = "Call +31 6 1234 5601 or (020) 794-6010; order 12345 for 3 people."
    assert mask_in_text(text) == "Call •••• or ••••; order 12345 for 3 people."


# ---------------------------------------------------------------------------- words


@pytest.mark.parametrize(
    ("state", "outcome", "needs"),
    [
        (AttemptState.ENDED, Outcome.NO_ANSWER, True),
        (AttemptState.ENDED, Outcome.VOICEMAIL, True),
        (AttemptState.ENDED, Outcome.INVALID_NUMBER, True),
        (AttemptState.FAILED, Outcome.FAILED_PERMANENT, True),
        (AttemptState.UNKNOWN, Outcome.UNKNOWN, True),
        (AttemptState.SKIPPED, None, True),
        (AttemptState.EXPIRED, None, True),
        (AttemptState.ENDED, Outcome.COMPLETED, False),
        (AttemptState.ENDED, Outcome.DECLINED, False),
        (AttemptState.CANCELLED, None, False),
        (AttemptState.PLANNED, None, False),
        (AttemptState.IN_FLIGHT, None, False),
    ],
)
def test_who_needs_a_person(state: AttemptState, outcome: str | None, needs: bool) -> None:
    assert needs_a_person(state, outcome) is needs


def test_attempts_in_words() -> None:
    assert attempt_words(AttemptState.ENDED, "no_answer", None) == "no answer"
    assert attempt_words(AttemptState.SKIPPED, None, "dnc") == "skipped: on a do-not-call list"
    assert attempt_words(AttemptState.PLANNED, None, "retry:busy") == "waiting: a retry after busy"
    assert attempt_words(AttemptState.PLANNED, None, None) == "waiting"
    assert attempt_words(AttemptState.SKIPPED, None, "some_new_reason") == (
        "skipped: some new reason"
    )


def test_holds_in_words() -> None:
    assert "out of credits" in key_hold_words("north", 402)
    assert "refuses API key 'north' (VoiceDock answered 401)" in key_hold_words("north", 401)
    assert "7.2 s ahead of the database's" in clock_skew_words(timedelta(seconds=7.24))


def test_times_in_words() -> None:
    now = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    assert ago(now - timedelta(minutes=3, seconds=5), now) == "3 min 5 s ago"
    assert ago(now + timedelta(hours=2, minutes=5, seconds=9), now) == "in 2 h 5 min"
    assert ago(now, now) == "just now"
    assert duration_words(timedelta(days=3, hours=4, minutes=1)) == "3 d 4 h"
    assert duration_words(timedelta(hours=2, seconds=4)) == "2 h"


# ---------------------------------------------------------------------------- charts


@given(st.lists(st.integers(0, 10**6), max_size=30))
def test_bars_are_as_long_as_their_share_of_the_longest(values: list[int]) -> None:
    chart = horizontal_bars([(str(i), v, "") for i, v in enumerate(values)], width=300)
    longest = max(values, default=0)
    for bar, value in zip(chart.bars, values, strict=True):
        assert 0 <= bar.width <= 300
        assert bar.width == (pytest.approx(300 * value / longest) if longest else 0)
    assert chart.empty == (longest == 0)


@given(st.lists(st.integers(0, 5000), min_size=1, max_size=60), st.integers(1, 3000))
def test_columns_stand_on_the_baseline_and_the_limit_line_is_where_the_limit_is(
    values: list[int], limit: int
) -> None:
    chart = columns([(str(i), v) for i, v in enumerate(values)], width=600, height=100, limit=limit)
    scale = max([*values, limit])
    assert chart.limit_y == pytest.approx(100 - 100 * limit / scale)
    for bar, value in zip(chart.bars, values, strict=True):
        assert bar.y + bar.height == pytest.approx(100)
        assert bar.height == pytest.approx(100 * value / scale)
        assert (bar.kind == "over") == (value > limit)
        assert 0 <= bar.x < 600
