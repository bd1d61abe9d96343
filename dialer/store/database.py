"""Opening the database: the URL with the driver we ship, and SQLite's settings."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import URL, Engine, make_url

from dialer.errors import StoreError


def with_psycopg(url: URL) -> URL:
    """The URL with psycopg (3), the driver we ship, where it names PostgreSQL without a driver
    (SQLAlchemy's bare ``postgresql`` means psycopg2)."""
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    return url


#: what installs PostgreSQL support (psycopg), which an SQLite-only install leaves out
POSTGRES_EXTRA = "pip install 'voicedock-dialer[postgres]'"


def postgres_driver_missing() -> str | None:
    """What to do when psycopg, PostgreSQL's driver, is not installed; None when it is."""
    try:
        import psycopg  # noqa: F401 - only whether it imports
    except ImportError:
        return f"PostgreSQL needs the postgres extra, which is not installed: {POSTGRES_EXTRA}"
    return None


#: how long a statement waits for SQLite's write lock held by another process (the CLI's
#: default: a person can wait)
LOCK_WAIT_S = 30.0
#: the daemon's wait: SQLite waits inside the statement, which blocks the daemon's event loop
#: (signals, webhooks, answers to read); a longer lock is ridden out by the engine's loops,
#: which back off with the event loop free (dialer.engine.outages)
DAEMON_LOCK_WAIT_S = 2.0
#: seconds to connect to PostgreSQL before the attempt counts as failed: without it, a host
#: that drops packets holds the daemon's event loop for the OS's own timeout (minutes)
PG_CONNECT_TIMEOUT_S = 5
#: milliseconds a sent request may stay unacknowledged before the connection counts as lost
#: (TCP_USER_TIMEOUT): a server that vanished mid-statement fails the statement instead of
#: holding it for TCP's retransmission timeout (about a quarter of an hour)
PG_TCP_USER_TIMEOUT_MS = 10_000


def make_engine(url: str, *, echo: bool, lock_wait_s: float = LOCK_WAIT_S) -> Engine:
    parsed = with_psycopg(make_url(url))
    if parsed.drivername == "postgresql+psycopg":
        missing = postgres_driver_missing()
        if missing is not None:
            raise StoreError(missing)
    if parsed.drivername.startswith("sqlite"):
        engine = sa.create_engine(parsed, echo=echo, connect_args={"timeout": lock_wait_s})
        busy_timeout_ms = round(lock_wait_s * 1000)

        @sa_event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets `dialer status` read while the daemon writes; busy_timeout makes a second
            # process wait for the write lock instead of failing.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            cursor.close()

        return engine
    return sa.create_engine(
        parsed,
        echo=echo,
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": PG_CONNECT_TIMEOUT_S,
            "tcp_user_timeout": PG_TCP_USER_TIMEOUT_MS,
        },
    )
