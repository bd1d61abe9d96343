"""The status page as a daemon serves it, on SQLite and PostgreSQL: pages read while the
daemon dials on the simulator, its request counts written to the database (once a minute and
at its stop) adding up to what the simulator received, and the API key on no page."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from dialer.daemon import open_daemon, run_until_stopped
from dialer.simulator import Simulator, SimulatorConfig
from dialer.store import Store
from dialer.usage import MinuteTally, minute_of
from tests.e2e import KEY, fast_settings, load, nl_numbers, write_campaign, write_config

SCALE = 200.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_running_daemon_serves_the_page_and_counts_its_requests(
    tmp_path: Path, db_url: str
) -> None:
    sim = Simulator(SimulatorConfig(api_key=KEY, time_scale=SCALE, scale_rate_limit=True, seed=20))
    write_campaign(tmp_path, nl_numbers(12))
    port = free_port()
    config = write_config(
        tmp_path, db_url=db_url, extra=f'\n[web]\nlisten = "127.0.0.1:{port}"\nrefresh = "1s"\n'
    )
    started = datetime.now(UTC)
    pages: dict[str, httpx.Response] = {}
    async with (
        open_daemon(
            config,
            [load(tmp_path / "e2e.toml")],
            transport=httpx.ASGITransport(app=sim.app),
            settings=fast_settings(config, SCALE),
            api_key=KEY,
        ) as daemon,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        run = asyncio.create_task(run_until_stopped(daemon, until_idle=True, stop=asyncio.Event()))
        while not run.done():  # the pages answer while the daemon dials
            for route in ("/", "/campaigns/e2e", "/campaigns/e2e/needs-a-person"):
                pages[route] = await client.get(route)
            await asyncio.sleep(0.05)
        await run
        worker = daemon.engine.settings.worker_id
        pages["after"] = await client.get("/")
    for route, response in pages.items():
        assert response.status_code == 200, route
        assert KEY not in response.text
        assert response.headers["x-frame-options"] == "DENY"
    assert f"{worker} <span" in pages["after"].text  # the daemon says it serves the page
    assert 'data-settled="12" data-total="12"' in pages["after"].text
    with Store(db_url) as store:
        counts = store.request_counts_since(minute_of(started))
    assert {c.key_name for c in counts} == {"default"}
    assert sum(c.requests for c in counts) == len(sim.request_log)
    assert sum(c.rate_limited for c in counts) == sim.count_status(429)


T = datetime(2026, 12, 2, 10, 0, 30, tzinfo=UTC)


def test_a_tally_writes_each_minute_what_was_sent_since_the_last() -> None:
    tally = MinuteTally({"default": (5, 0)}, T)  # sent before it started: not counted
    assert not tally.due(T + timedelta(seconds=29))
    assert tally.unwritten({"default": (9, 1), "north": (0, 0)}) == {"default": (4, 1)}
    assert tally.due(T + timedelta(seconds=30))
    minute, counts = tally.take({"default": (9, 1), "north": (2, 0)}, T + timedelta(seconds=31))
    assert (minute, counts) == (minute_of(T), {"default": (4, 1), "north": (2, 0)})
    assert tally.minute == minute_of(T) + timedelta(minutes=1)
    assert tally.unwritten({"default": (9, 1), "north": (2, 0)}) == {}  # nothing new


@pytest.mark.parametrize("seconds", [0.0, 59.999999])
def test_minute_of(seconds: float) -> None:
    at = datetime(2026, 12, 2, 10, 7, tzinfo=UTC) + timedelta(seconds=seconds)
    assert minute_of(at) == datetime(2026, 12, 2, 10, 7, tzinfo=UTC)
