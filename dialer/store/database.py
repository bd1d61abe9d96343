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


def make_engine(url: str, *, echo: bool) -> Engine:
    parsed = with_psycopg(make_url(url))
    if parsed.drivername == "postgresql+psycopg":
        missing = postgres_driver_missing()
        if missing is not None:
            raise StoreError(missing)
    if parsed.drivername.startswith("sqlite"):
        engine = sa.create_engine(parsed, echo=echo, connect_args={"timeout": 30})

        @sa_event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets `dialer status` read while the daemon writes; busy_timeout makes a second
            # process wait for the write lock instead of failing.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return sa.create_engine(parsed, echo=echo, pool_pre_ping=True)
