"""Shared fixtures: real SQLite files and the real PostgreSQL at 127.0.0.1:5432."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, settings

from dialer.store import Store

# Bounded and deadline-free: CI runs on 2 shared cores, where a slow draw is not a bug.
settings.register_profile(
    "dialer", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("dialer")

PG_ADMIN_DSN = os.environ.get("DIALER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def require_postgres() -> None:
    """Skip without PostgreSQL on a developer machine; fail loudly in CI, where it must run."""
    if _pg_available():
        return
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI but {PG_ADMIN_DSN} is unreachable")
    pytest.skip("PostgreSQL at 127.0.0.1:5432 is not running (these tests always run in CI)")


@pytest.fixture(autouse=True)
def _no_config_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own $DIALER_DATABASE_URL or $DIALER_LOG_LEVEL never reaches a test."""
    monkeypatch.delenv("DIALER_DATABASE_URL", raising=False)
    monkeypatch.delenv("DIALER_LOG_LEVEL", raising=False)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throwaway database for this test session, dropped at the end."""
    require_postgres()
    name = f"dialer_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg://{base.removeprefix('postgresql://')}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The session database with a fresh, empty schema for this test."""
    with Store(pg_database) as store:
        store.drop_schema()
        store.create_schema()
    return pg_database


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite:///{tmp_path}/dialer.db"  # type: ignore[str-bytes-safe]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """Both backends: every store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/dialer.db"
        with Store(url) as store:
            store.create_schema()
        return url
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store(db_url) as s:
        yield s
