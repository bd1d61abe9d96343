"""The request budget several daemons share: one GCRA row per API key.

GCRA (the generic cell rate algorithm): requests are spaced ``interval`` apart on average with
at most ``burst`` sent back to back, so any window of length W holds at most
W / interval + burst requests, whichever daemon sent them. The row's theoretical arrival time
(``tat``) is all the state; its row lock serialises daemons. No library offers a
PostgreSQL-backed limiter, and this is ten lines. ``dialer.ratelimit.SharedBudget`` takes its
slots here, through ``Store.take_request_slot`` and ``Store.hold_request_slots``.

A campaign's pace (``calls_per_minute``) is a row of the same table, named ``pace:<campaign>``
(dialer.policy.pacing has its maths and bounds): ``take_pace_slot`` grants a create its slot
under the row lock, and ``move_pace_slot`` moves the row only if no other grant came since, so
a dial can re-stamp its slot with the instant its create really goes out (or give it back).

What the budget was used for is kept too, for the status page: each daemon adds its requests
per key and minute (``add_request_counts``) once a minute, never a write per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa

from dialer.policy.pacing import Pace, Slot, pace_key, take_slot
from dialer.store import statements as sql


def _tat(connection: sa.Connection, key_name: str) -> datetime | None:
    """The key's theoretical arrival time, its row locked to the commit where that matters."""
    locked = connection.dialect.name == "postgresql"
    query = sql.BUDGET_TAT_LOCKED if locked else sql.BUDGET_TAT
    tat: datetime | None = connection.execute(query, {"key_name": key_name}).scalar()
    return tat


def take_request_slot(
    connection: sa.Connection, key_name: str, *, now: datetime, interval: timedelta, burst: int
) -> timedelta:
    """Ask for one request of ``key_name``'s budget; zero means granted, else wait that long."""
    tolerance = interval * (burst - 1)
    tat = _tat(connection, key_name)
    if tat is None:
        insert = sql.insert_budget_unless_there(connection.dialect.name)
        created = connection.execute(insert, {"key_name": key_name, "tat": now + interval})
        if created.first() is None:  # another daemon created it first: ask again
            return timedelta(milliseconds=1)
        return timedelta(0)
    tat = max(tat, now)
    if tat - now > tolerance:
        return tat - now - tolerance
    connection.execute(sql.SET_BUDGET_TAT, {"budget_key": key_name, "tat": tat + interval})
    return timedelta(0)


def hold_request_slots(
    connection: sa.Connection, key_name: str, *, until: datetime, interval: timedelta, burst: int
) -> None:
    """No slot of ``key_name`` before ``until`` for any daemon (a 429's Retry-After), and then
    the steady rate, not a burst: the theoretical arrival time moves to ``until`` plus the
    burst tolerance, never back."""
    held = until + interval * (burst - 1)
    tat = _tat(connection, key_name)
    if tat is None:
        connection.execute(sql.INSERT_BUDGET, {"key_name": key_name, "tat": held})
    elif tat < held:
        connection.execute(sql.SET_BUDGET_TAT, {"budget_key": key_name, "tat": held})


def take_pace_slot(connection: sa.Connection, campaign: str, *, now: datetime, pace: Pace) -> Slot:
    """Ask for the next create slot of ``campaign`` at ``now``: granted (the row moved to the
    answer's ``tat``) or refused with how long to wait (the row untouched)."""
    name = pace_key(campaign)
    tat = _tat(connection, name)
    slot = take_slot(tat, now=now, pace=pace)
    if not slot.granted:
        return slot
    if tat is None:
        insert = sql.insert_budget_unless_there(connection.dialect.name)
        if connection.execute(insert, {"key_name": name, "tat": slot.tat}).first() is None:
            # another daemon created the row (and took its first slot) between our read and
            # our insert: refused, ask again shortly
            return Slot(granted=False, tat=now, wait=timedelta(milliseconds=1))
        return slot
    connection.execute(sql.SET_BUDGET_TAT, {"budget_key": name, "tat": slot.tat})
    return slot


def move_pace_slot(
    connection: sa.Connection, campaign: str, *, expected: datetime, to: datetime
) -> bool:
    """Move ``campaign``'s pace row from ``expected`` (what our own grant left there) to
    ``to``; False, and nothing moved, when another grant moved it meanwhile."""
    moved = connection.execute(
        sql.MOVE_BUDGET_TAT, {"budget_key": pace_key(campaign), "expected": expected, "tat": to}
    )
    return bool(moved.rowcount)


def add_request_counts(
    connection: sa.Connection,
    worker_id: str,
    *,
    minute: datetime,
    counts: Mapping[str, tuple[int, int]],
    forget_before: datetime,
) -> None:
    """Add ``counts`` (key name -> requests, of them 429s) to ``minute``'s rows of this
    daemon, and forget every daemon's minutes before ``forget_before``."""
    rows = [
        {
            "minute": minute,
            "key_name": key_name,
            "worker_id": worker_id,
            "requests": requests,
            "rate_limited": rate_limited,
        }
        for key_name, (requests, rate_limited) in sorted(counts.items())
    ]
    if rows:
        connection.execute(sql.add_request_counts(connection.dialect.name), rows)
    connection.execute(sql.FORGET_REQUEST_COUNTS, {"before": forget_before})
