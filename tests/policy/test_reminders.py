"""Reminder timing: not_before and deadline from call_at / appointment_at / deadline / expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.policy.reminders import ContactTiming, timing_bounds

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("timing", "call_before", "expires_at", "bounds"),
    [
        (ContactTiming(), None, None, (None, None)),
        (ContactTiming(), H, T0, (None, T0)),  # nothing per contact: only the campaign expiry
        # a reminder 24 h ahead of the appointment, never after it
        (ContactTiming(appointment_at=T0 + 48 * H), 24 * H, None, (T0 + 24 * H, T0 + 48 * H)),
        # no call_before: call as soon as the window allows, still before the appointment
        (ContactTiming(appointment_at=T0), None, None, (None, T0)),
        # call_at wins over appointment - call_before
        (ContactTiming(call_at=T0, appointment_at=T0 + 48 * H), 24 * H, None, (T0, T0 + 48 * H)),
        # the earliest of appointment, deadline and expiry is the deadline
        (ContactTiming(call_at=T0, deadline=T0 + 3 * H), None, T0 + H, (T0, T0 + H)),
        (
            ContactTiming(appointment_at=T0 + 5 * H, deadline=T0 + 2 * H),
            H,
            T0 + 9 * H,
            (T0 + 4 * H, T0 + 2 * H),  # not_before after the deadline: the contact expires
        ),
    ],
)
def test_timing_bounds(
    timing: ContactTiming,
    call_before: timedelta | None,
    expires_at: datetime | None,
    bounds: tuple[datetime | None, datetime | None],
) -> None:
    assert timing_bounds(timing, call_before=call_before, expires_at=expires_at) == bounds


def test_instants_in_any_zone_compare_as_instants() -> None:
    appointment = datetime(2026, 11, 25, 9, 0, tzinfo=ZoneInfo("America/New_York"))
    expiry = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)  # 09:30 in New York: later
    assert timing_bounds(
        ContactTiming(appointment_at=appointment), call_before=H, expires_at=expiry
    ) == (appointment - H, appointment)


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        ContactTiming(call_at=datetime(2026, 11, 25, 9))


instants = st.none() | st.integers(-1000, 1000).map(lambda h: T0 + h * H)


@given(
    call_at=instants,
    appointment_at=instants,
    deadline=instants,
    expires_at=instants,
    call_before=st.none() | st.integers(0, 200).map(lambda h: h * H),
)
def test_bounds_follow_their_definition(
    call_at: datetime | None,
    appointment_at: datetime | None,
    deadline: datetime | None,
    expires_at: datetime | None,
    call_before: timedelta | None,
) -> None:
    timing = ContactTiming(call_at=call_at, appointment_at=appointment_at, deadline=deadline)
    not_before, last = timing_bounds(timing, call_before=call_before, expires_at=expires_at)
    limits = [t for t in (appointment_at, deadline, expires_at) if t is not None]
    assert last == (min(limits) if limits else None)
    if call_at is not None:
        assert not_before == call_at
    elif appointment_at is not None and call_before is not None:
        assert not_before == appointment_at - call_before
    else:
        assert not_before is None
