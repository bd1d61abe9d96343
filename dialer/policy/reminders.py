"""Reminder timing: when a contact may first be called, and after when never."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["ContactTiming", "timing_bounds"]


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
