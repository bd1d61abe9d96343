"""Reminder timing: when a contact may first be called, and after when never."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, kw_only=True)
class ContactTiming:
    """Per-contact instants from the campaign file (all aware)."""

    call_at: datetime | None = None
    appointment_at: datetime | None = None
    deadline: datetime | None = None


def timing_bounds(
    timing: ContactTiming, *, call_before: timedelta | None, expires_at: datetime | None
) -> tuple[datetime | None, datetime | None]:
    """(not_before, deadline) for one contact.

    not_before: ``call_at``, else ``appointment_at - call_before``, else None (as soon as allowed).
    deadline: the earliest of the appointment, the contact's deadline and the campaign's
    ``expires_at``: a reminder after the appointment is worse than none.
    """
    not_before = timing.call_at
    if not_before is None and timing.appointment_at is not None and call_before is not None:
        not_before = timing.appointment_at - call_before
    limits = [t for t in (timing.appointment_at, timing.deadline, expires_at) if t is not None]
    return not_before, (min(limits) if limits else None)
