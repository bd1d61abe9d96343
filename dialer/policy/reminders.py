"""Reminders: when a contact may first be called and after when never, and which contact of a
changing list is which (its reminder key).

A campaign fed by a list its owner exports again every day must recognise each row from one
export to the next: the patient reminded yesterday must not be reminded again today, and an
appointment moved to another day is a new reminder. A contact's **key** is its ``id`` (the
appointment or invoice id of the user's own system) when it has one, else its phone number;
with an ``appointment_at`` the appointment is part of the key, so a rescheduled appointment is
a new key while the contact (the same id, or the same number) stays the same **identity**.

    >>> visit = datetime(2027, 3, 4, 13, 0, tzinfo=UTC)
    >>> reminder_key(phone="+31612345678", contact_id=None, appointment_at=visit)
    '+31612345678@2027-03-04T13:00:00+00:00'
    >>> reminder_key(phone="+31612345678", contact_id="A-1041", appointment_at=None)
    'id:A-1041'
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

__all__ = [
    "ContactTiming",
    "KeyState",
    "key_identity",
    "key_state",
    "reminder_identity",
    "reminder_key",
    "timing_bounds",
]


@dataclass(frozen=True, kw_only=True)
class ContactTiming:
    """Per-contact instants from the campaign file (all aware)."""

    call_at: datetime | None = None
    appointment_at: datetime | None = None
    deadline: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("call_at", "appointment_at", "deadline"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"{name} must be an aware datetime, got {value!r}")


def timing_bounds(
    timing: ContactTiming, *, call_before: timedelta | None, expires_at: datetime | None
) -> tuple[datetime | None, datetime | None]:
    """(not_before, deadline) for one contact.

    not_before: ``call_at``, else ``appointment_at - call_before``, else None (as soon as the
    window allows). deadline: the earliest of the appointment, the contact's deadline and the
    campaign's ``expires_at`` that are set: a reminder after the appointment is worse than none.
    A not_before at or after the deadline means the contact can only expire.

    >>> from datetime import UTC
    >>> visit = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    >>> timing_bounds(ContactTiming(appointment_at=visit), call_before=timedelta(days=1),
    ...               expires_at=None) == (visit - timedelta(days=1), visit)
    True
    """
    not_before = timing.call_at
    if not_before is None and timing.appointment_at is not None and call_before is not None:
        not_before = timing.appointment_at - call_before
    limits = [t for t in (timing.appointment_at, timing.deadline, expires_at) if t is not None]
    return not_before, (min(limits) if limits else None)


def reminder_identity(*, phone: str, contact_id: str | None) -> str:
    """Who a contact is across exports: its ``id`` when the list has one, else its number."""
    return f"id:{contact_id}" if contact_id else phone


def reminder_key(*, phone: str, contact_id: str | None, appointment_at: datetime | None) -> str:
    """The contact's reminder key within its campaign: its identity, and the appointment (in
    UTC) when it has one. Two contacts with one key in a list are the same reminder."""
    identity = reminder_identity(phone=phone, contact_id=contact_id)
    if appointment_at is None:
        return identity
    return f"{identity}@{appointment_at.astimezone(UTC).isoformat()}"


def key_identity(key: str) -> str:
    """The identity part of a reminder key (the key itself when it has no appointment)."""
    identity, at, when = key.rpartition("@")
    if not at:
        return key
    try:
        datetime.fromisoformat(when)
    except ValueError:
        return key  # an id with an "@" of its own, and no appointment
    return identity


class KeyState(StrEnum):
    """Where one reminder key of a campaign stands."""

    #: on the list, never planned yet (the next fire, or the next pass of a running campaign)
    NEW = "new"
    #: an attempt is planned, being dialled or in flight
    PENDING = "pending"
    #: its last outcome meets the campaign's goal (done_when): never called again
    DONE = "done"
    #: its attempts ran out, or it was skipped or expired: not called again (once per key)
    CLOSED = "closed"
    #: gone from the list: what was never dialled is cancelled
    REMOVED = "removed"


#: attempt states in which a key still waits for (or is on) a call
_PENDING_STATES = frozenset({"planned", "dialing", "in_flight"})


def key_state(
    *, removed: bool, attempt_state: str | None, outcome: str | None, done_when: Collection[str]
) -> KeyState:
    """The state of a key from its latest attempt that was not cancelled (None: none)."""
    if removed:
        return KeyState.REMOVED
    if attempt_state is None:
        return KeyState.NEW
    if attempt_state in _PENDING_STATES:
        return KeyState.PENDING
    return KeyState.DONE if outcome in done_when else KeyState.CLOSED
