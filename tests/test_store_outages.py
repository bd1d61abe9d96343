"""The store tells a database that is away for a while (unreachable, locked, full) from a real
error, on real SQLite files and the real PostgreSQL, and serves again once it is back."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import text

from dialer.errors import (
    DatabaseBusy,
    DatabaseFull,
    DatabaseUnreachable,
    StoreError,
    StoreUnavailable,
)
from dialer.store import ContactRecord, Store
from tests.outages import pg_behind_proxy, size_limited, sqlite_path

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def sync(store: Store, name: str, phones: range) -> int:
    return store.sync_campaign(
        name=name,
        source=f"{name}.toml",
        definition_hash=name,
        api_key_name="default",
        contacts=[
            ContactRecord(
                phone=f"+3161{n:07d}", name="x" * 300, timezone=None, variables={"n": "y" * 500}
            )
            for n in phones
        ],
        now=NOW,
    )


def test_a_lock_held_past_the_wait_is_busy_and_nothing_is_written(sqlite_url: str) -> None:
    with Store(sqlite_url) as setup:
        setup.create_schema()
    other = sqlite3.connect(sqlite_path(sqlite_url), isolation_level=None)
    with Store(sqlite_url, lock_wait_s=0.05) as store:
        other.execute("BEGIN EXCLUSIVE")  # a backup, the CLI, a long transaction elsewhere
        with pytest.raises(DatabaseBusy) as caught:
            store.heartbeat("w1", now=NOW)
        assert not caught.value.commit_unknown
        assert store.live_workers(now=NOW, ttl=NOW - NOW) == set()  # reads go on (WAL)
        other.execute("COMMIT")
        store.heartbeat("w1", now=NOW)
        assert store.live_workers(now=NOW, ttl=NOW - NOW) == {"w1"}
    other.close()


def test_a_full_database_refuses_writes_whole_and_takes_them_once_freed(sqlite_url: str) -> None:
    with Store(sqlite_url) as setup:
        setup.create_schema()
    with size_limited(sqlite_url) as limit, Store(sqlite_url) as store:
        sync(store, "first", range(20))
        limit.full()
        with pytest.raises(DatabaseFull):
            sync(store, "second", range(100, 400))  # needs pages the file may not have
        assert store.campaign("second") is None  # nothing half-written
        limit.free()
        sync(store, "second", range(100, 400))
        second = store.campaign("second")
        assert second is not None and len(store.contacts(second.id)) == 300


def test_a_real_error_stays_a_store_error(db_url: str) -> None:
    with Store(db_url) as store:
        with pytest.raises(StoreError) as caught, store.session() as session:
            session.exec(text("SELECT * FROM no_such_table"))
        assert not isinstance(caught.value, StoreUnavailable)


@pytest.mark.postgres
def test_postgres_refusing_connections_is_unreachable_then_serves_again(pg_url: str) -> None:
    with pg_behind_proxy(pg_url) as (url, proxy), Store(url) as store:
        store.heartbeat("w1", now=NOW)  # a pooled connection through the proxy
        proxy.refuse()  # the server gone: the pooled connection cut, connects refused
        with pytest.raises(DatabaseUnreachable):
            store.heartbeat("w1", now=NOW)
        proxy.accept()
        store.heartbeat("w1", now=NOW)  # no restart needed
        assert store.live_workers(now=NOW, ttl=NOW - NOW) == {"w1"}


@pytest.mark.postgres
def test_a_terminated_backend_is_unreachable_and_the_next_statement_reconnects(
    pg_url: str,
) -> None:
    def terminated_midway(store: Store, admin: Store) -> None:
        with store.session() as session:
            pid = session.exec(text("SELECT pg_backend_pid()")).one()[0]
            with admin.session() as other:
                other.exec(text(f"SELECT pg_terminate_backend({int(pid)})"))
            session.exec(text("SELECT 1"))

    with Store(pg_url) as store, Store(pg_url) as admin:
        store.heartbeat("w1", now=NOW)
        with pytest.raises(DatabaseUnreachable):
            terminated_midway(store, admin)
        store.heartbeat("w1", now=NOW)


@pytest.mark.postgres
def test_a_connection_lost_during_the_commit_leaves_the_commit_unknown(pg_url: str) -> None:
    with pg_behind_proxy(pg_url) as (url, proxy), Store(url) as store:
        store.heartbeat("w1", now=NOW)

        def cut_before_commit(_connection: sa.Connection) -> None:
            proxy.cut()

        sa.event.listen(sa.engine.Engine, "commit", cut_before_commit)
        try:
            with pytest.raises(DatabaseUnreachable) as caught:
                store.heartbeat("w1", now=NOW)
        finally:
            sa.event.remove(sa.engine.Engine, "commit", cut_before_commit)
        assert caught.value.commit_unknown
        store.heartbeat("w1", now=NOW)  # and the next transaction reconnects


def test_store_errors_name_no_statement_parameters(tmp_path: Path) -> None:
    """A translated error says what the driver said, not the SQL or its parameters (a contact's
    name, a request body): those would land in the daemon's log line about the outage."""
    url = f"sqlite:///{tmp_path}/dialer.db"
    with Store(url) as setup:
        setup.create_schema()
    other = sqlite3.connect(tmp_path / "dialer.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with Store(url, lock_wait_s=0.05) as store, pytest.raises(DatabaseBusy) as caught:
        store.heartbeat("secret-worker-name", now=NOW)
    other.execute("COMMIT")
    other.close()
    assert "database is locked" in str(caught.value)
    assert "secret-worker-name" not in str(caught.value)
