"""Human durations: what is read, what is refused (with the accepted forms), round trips."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.policy.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("10m", 600),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("0s", 0),
        ("1H 30M", 5400),
        (" 2d3h4m5s ", 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
        ("30m1h", 5400),  # parts add up in any order
        ("0.5s", 0.5),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "5",
        "ten minutes",
        "2 weeks",
        "-5m",
        "h",
        "1.h",
        ".5h",
        "1h30",
        "5 m s",
        "1e3s",
        "99999999d",
    ],
)
def test_bad_durations_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r'accepted: "90s", "10m", "2h", "1d", "1h30m" or "1.5h"'):
        parse_duration(text)


@pytest.mark.parametrize("value", [5, 1.5, None, timedelta(minutes=1)])
def test_only_text_is_a_duration(value: object) -> None:
    with pytest.raises(ValueError, match="accepted"):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (90, "1m30s"), (5400, "1h30m"), (86400, "1d"), (90061, "1d1h1m1s")],
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


def test_format_refuses_negative_durations() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(timedelta(seconds=-1))


@given(st.integers(0, 10_000 * 86400))
def test_format_and_parse_round_trip(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value
