"""/healthz and /readyz on the metrics listener: the verdicts as tables, then a real daemon
healthy and ready, unready while its clock is skewed, and unready when its database is gone."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from dialer.daemon import Daemon, open_daemon, run_until_stopped
from dialer.engine import Clock, utc_now
from dialer.errors import StoreError
from dialer.health import liveness, readiness
from tests.conftest import PG_ADMIN_DSN, require_postgres
from tests.e2e import KEY, fast_settings, write_config
from tests.test_metrics import free_port

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
LOOPS = {"heartbeat": 100.0, "dispatch": 99.5, "follow": 40.0, "housekeeping": 100.0}


def live(**changes: Any) -> tuple[bool, dict[str, Any]]:
    facts: dict[str, Any] = dict(
        running=True,
        loop_passes=LOOPS,
        last_heartbeat=T0 - timedelta(seconds=5),
        now=T0,
        now_monotonic=100.5,
        tick_s=1.0,
        worker_ttl=timedelta(seconds=30),
    )
    facts.update(changes)
    verdict = liveness(**facts)
    assert verdict.status_code == (200 if verdict.ok else 503)
    return verdict.ok, verdict.body


def test_healthy_while_the_loops_run_and_the_heartbeat_is_fresh() -> None:
    ok, body = live()
    assert ok and body["status"] == "ok" and body["problems"] == []
    # a loop waiting out a 429's pause for a minute is alive: reported, not judged
    assert body["loops_last_pass_s"]["follow"] == 60.5
    assert body["heartbeat_age_s"] == 5.0


@pytest.mark.parametrize(
    ("changes", "status", "problem"),
    [
        ({"running": False, "loop_passes": {}}, "starting", "not running"),
        ({"running": False}, "stopped", "not running"),
        ({"last_heartbeat": None}, "starting", "no heartbeat"),
        ({"now_monotonic": 111.0}, "unhealthy", "heartbeat loop has not passed"),
        ({"now_monotonic": 111.0, "tick_s": 0.05}, "unhealthy", "more than 10 s"),
        ({"now_monotonic": 125.0, "tick_s": 2.0}, "unhealthy", "more than 20 s"),
        ({"last_heartbeat": T0 - timedelta(seconds=31)}, "unhealthy", "31 s old"),
    ],
)
def test_unhealthy(changes: dict[str, Any], status: str, problem: str) -> None:
    ok, body = live(**changes)
    assert not ok and body["status"] == status
    assert any(problem in text for text in body["problems"]), body["problems"]


def test_a_stale_heartbeat_during_a_database_outage_is_reported_not_judged() -> None:
    # a restart would meet the same database: /healthz must not have the supervisor kill a
    # daemon that rides the outage out (its loops still pass; only the beat cannot be written)
    outage = "database unreachable since 2027-03-01 08:59:00 UTC (7 failed tries; last: refused)"
    ok, body = live(last_heartbeat=T0 - timedelta(seconds=45), database_outage=outage)
    assert ok and body["status"] == "ok" and body["problems"] == []
    assert body["riding_out"] == [
        f"the heartbeat is 45 s old: other daemons take this one for dead after 30 s; "
        f"riding out: {outage}"
    ]
    # loops that stopped passing are still a stall, outage or not
    ok, body = live(now_monotonic=111.0, database_outage=outage)
    assert not ok and "heartbeat loop has not passed" in body["problems"][0]


def test_readiness_table() -> None:
    def ready(**changes: Any) -> tuple[bool, dict[str, Any]]:
        facts: dict[str, Any] = dict(
            database_problem=None,
            schema_problem=None,
            clock_skew=None,
            account_holds={},
            voicedock={},
        )
        facts.update(changes)
        verdict = readiness(**facts)
        return verdict.ok, verdict.body

    ok, body = ready(account_holds={"clinic": "InsufficientCredits: 402"})
    assert (
        ok
        and body["status"] == "ready"
        and (body["database"], body["schema"])
        == (
            "ok",
            "current",
        )
    )
    assert body["account_holds"] == {"clinic": "InsufficientCredits: 402"}  # reported only
    ok, body = ready(database_problem="connection refused", schema_problem="ignored")
    assert not ok and (body["database"], body["schema"]) == ("unreachable", "unknown")
    assert body["problems"] == ["database unreachable: connection refused"]
    ok, body = ready(schema_problem="the database schema (0004) is older")
    assert (
        not ok
        and body["schema"] == "mismatch"
        and body["problems"] == ["the database schema (0004) is older"]
    )
    ok, body = ready(clock_skew=timedelta(seconds=-7.25))
    assert not ok and body["clock_skew_s"] == -7.25
    assert body["problems"][0].startswith("clock skewed by -7.2 s")


# ---------------------------------------------------------------------------- a real daemon


@contextlib.asynccontextmanager
async def daemon_serving(
    tmp_path: Path, db_url: str, *, clock: Clock = utc_now
) -> AsyncIterator[tuple[Daemon, httpx.AsyncClient, asyncio.Event, asyncio.Task[None]]]:
    """A daemon without campaigns, its loops running, its metrics listener up, and a client
    of that listener (base URL set)."""
    port = free_port()
    config = write_config(
        tmp_path,
        db_url=db_url,
        campaigns="none-*.toml",
        extra=f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n',
    )
    settings = fast_settings(config, 60.0)
    async with (
        open_daemon(config, [], settings=settings, api_key=KEY, clock=clock) as daemon,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http,
    ):
        stop = asyncio.Event()
        running = asyncio.create_task(run_until_stopped(daemon, until_idle=False, stop=stop))
        try:
            yield daemon, http, stop, running
        finally:
            stop.set()
            with contextlib.suppress(StoreError):  # a daemon whose database was taken away
                await running


async def eventually(check: Callable[[], Any], *, within_s: float = 10.0) -> None:
    for _ in range(int(within_s / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("never came true")


async def test_a_running_daemon_is_healthy_and_ready(tmp_path: Path, sqlite_url: str) -> None:
    async with daemon_serving(tmp_path, sqlite_url) as (daemon, http, stop, running):

        async def healthy() -> bool:
            return (await http.get("/healthz")).status_code == 200

        await eventually(healthy)
        body = (await http.get("/healthz")).json()
        assert body["status"] == "ok"
        assert set(body["loops_last_pass_s"]) == {"heartbeat", "dispatch", "follow", "housekeeping"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready",
            "database": "ok",
            "schema": "current",
            "clock_skew_s": None,
            "account_holds": {},
            "voicedock": {},
            "problems": [],
        }
        assert (await http.head("/healthz")).status_code == 200
        stop.set()  # the engine stops; its listener stays until the daemon closes
        await running
        assert not daemon.engine.running
        stopped = await http.get("/healthz")
        assert stopped.status_code == 503 and stopped.json()["status"] == "stopped"


@contextlib.contextmanager
def throwaway_pg_database() -> Any:
    """A PostgreSQL database of this test alone, which it may drop while a daemon uses it."""
    require_postgres()
    name = f"dialer_health_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].removeprefix("postgresql://")

    def drop() -> None:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    try:
        yield f"postgresql+psycopg://{base}/{name}", drop
    finally:
        drop()


@pytest.mark.postgres
async def test_unready_while_the_clock_is_skewed(tmp_path: Path) -> None:
    with throwaway_pg_database() as (url, _):
        ahead = timedelta(seconds=30)
        skewed = daemon_serving(tmp_path, url, clock=lambda: utc_now() + ahead)
        async with skewed as (daemon, http, _, _):

            async def judged() -> bool:
                return daemon.engine.clock_skew is not None

            await eventually(judged)
            response = await http.get("/readyz")
            assert response.status_code == 503
            body = response.json()
            assert (body["status"], body["database"], body["schema"]) == (
                "unready",
                "ok",
                "current",
            )
            assert 29 < body["clock_skew_s"] < 31
            assert "clock skewed" in body["problems"][0]


@pytest.mark.postgres
async def test_unready_when_the_database_is_gone(tmp_path: Path) -> None:
    with throwaway_pg_database() as (url, drop):
        async with daemon_serving(tmp_path, url) as (_, http, _, _):

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await eventually(ready)
            drop()  # every connection of the daemon is cut, and the database is no more
            response = await http.get("/readyz")
            assert response.status_code == 503
            body = response.json()
            assert (body["status"], body["database"], body["schema"]) == (
                "unready",
                "unreachable",
                "unknown",
            )
            assert body["problems"][0].startswith("database unreachable: ")
