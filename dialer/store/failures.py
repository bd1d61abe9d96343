"""Which database errors mean "the database is away for a while", and which are real.

    StoreUnavailable (dialer.errors): the engine's loops hold, back off and try again
    ├── DatabaseUnreachable  no connection, or it was lost: refused, dropped, terminated by an
    │                        administrator (pg_terminate_backend), the server shutting down or
    │                        refusing connections for now; SQLite's file unreadable (I/O error)
    ├── DatabaseBusy         a lock held elsewhere outlasted our wait: SQLite's `database is
    │                        locked`; a PostgreSQL deadlock, serialization failure or NOWAIT lock
    └── DatabaseFull         no room to write: SQLITE_FULL, PostgreSQL's disk_full

Anything else stays a plain StoreError: a real problem (a constraint, a missing table, a bug),
which is raised to whoever asked and, in a loop, stops the daemon rather than being retried.

Told apart by what the drivers say, not by message text: SQLite's result code (the primary
code, so SQLITE_BUSY_SNAPSHOT is SQLITE_BUSY), PostgreSQL's SQLSTATE, and SQLAlchemy's own
verdict that a connection was lost (``connection_invalidated``). psycopg is not imported: a
SQLite-only install need not have it.
"""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from dialer.errors import (
    DatabaseBusy,
    DatabaseFull,
    DatabaseUnreachable,
    StoreError,
    StoreUnavailable,
)

__all__ = ["translate"]

#: SQLite primary result codes (https://sqlite.org/rescode.html) that pass with time
_SQLITE_CODES: dict[int, type[StoreUnavailable]] = {
    5: DatabaseBusy,  # SQLITE_BUSY: another connection holds the lock we need
    6: DatabaseBusy,  # SQLITE_LOCKED: a conflict within one shared cache
    10: DatabaseUnreachable,  # SQLITE_IOERR: the OS could not read or write the file
    13: DatabaseFull,  # SQLITE_FULL: the disk, or max_page_count, is full
    14: DatabaseUnreachable,  # SQLITE_CANTOPEN: the file (or its directory) went away
}

#: PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html)
_PG_STATES: dict[str, type[StoreUnavailable]] = {
    "57P01": DatabaseUnreachable,  # admin_shutdown: pg_terminate_backend, a restart
    "57P02": DatabaseUnreachable,  # crash_shutdown
    "57P03": DatabaseUnreachable,  # cannot_connect_now: starting up, in recovery
    "53300": DatabaseUnreachable,  # too_many_connections
    "53100": DatabaseFull,  # disk_full
    "40001": DatabaseBusy,  # serialization_failure
    "40P01": DatabaseBusy,  # deadlock_detected
    "55P03": DatabaseBusy,  # lock_not_available
}
#: SQLSTATE classes: 08 is every connection exception
_PG_CLASSES: dict[str, type[StoreUnavailable]] = {"08": DatabaseUnreachable}


def translate(exc: SQLAlchemyError, *, committing: bool = False) -> StoreError:
    """Our error for a SQLAlchemy (or driver) error; ``committing``: it struck during COMMIT,
    where a lost connection leaves unknown whether the transaction was committed."""
    message = f"database error: {type(exc).__name__}: {exc.args[0] if exc.args else exc}"
    kind = _passing_kind(exc)
    if kind is None:
        return StoreError(message)
    return kind(message, commit_unknown=committing and kind is DatabaseUnreachable)


def _passing_kind(exc: SQLAlchemyError) -> type[StoreUnavailable] | None:
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return DatabaseUnreachable
    if isinstance(exc, sa.exc.TimeoutError):
        return DatabaseBusy  # no pooled connection came free in time
    cause = getattr(exc, "orig", None)
    if isinstance(cause, sqlite3.Error):
        code = getattr(cause, "sqlite_errorcode", None)
        return _SQLITE_CODES.get(code & 0xFF) if isinstance(code, int) else None
    state = getattr(cause, "sqlstate", None)
    if isinstance(state, str):
        return _PG_STATES.get(state) or _PG_CLASSES.get(state[:2])
    if isinstance(exc, sa.exc.OperationalError) and cause is not None:
        # A driver's OperationalError with no SQLSTATE never reached the server: the client
        # could not connect (refused, timed out) or found its connection closed.
        return DatabaseUnreachable
    return None
