"""Prometheus metrics, read at scrape time: a real daemon on the simulator, scraped over HTTP,
and an idle daemon whose metrics cost the database nothing until someone scrapes."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from dialer.daemon import Daemon, open_daemon, run_until_stopped
from dialer.metrics import DialerMetrics, operations_app, request_series
from dialer.serving import serve_app
from dialer.simulator import Simulator, SimulatorConfig
from tests.e2e import KEY, fast_settings, load, nl_numbers, run_daemon, write_campaign, write_config

SCALE = 200.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def free_port() -> int:
    with socket.socket() as probe:  # a free port on loopback for the daemon to take
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_campaign_shows_up_in_a_scrape(tmp_path: Path, sqlite_url: str) -> None:
    phones = nl_numbers(6)
    campaign = load(write_campaign(tmp_path, phones))
    config = write_config(tmp_path, db_url=sqlite_url)
    simulator = Simulator(
        SimulatorConfig(api_key=KEY, time_scale=SCALE, seed=3, requests_per_minute=6000)
    )
    peak_in_flight = 0.0

    def watch(daemon: Daemon) -> None:
        nonlocal peak_in_flight
        registry = DialerMetrics(daemon.engine).registry  # a scrape, read from the database
        now = registry.get_sample_value("dialer_calls_in_flight", {"campaign": "e2e"})
        peak_in_flight = max(peak_in_flight, now or 0.0)

    daemon = await run_daemon(
        config, [campaign], simulator, fast_settings(config, SCALE), watch=watch
    )
    # The daemon disposed of its connections on the way out; the store reconnects on demand.
    metrics = DialerMetrics(daemon.engine)
    app = operations_app(metrics, daemon.engine)
    async with (
        serve_app(app, "127.0.0.1", 0, name="metrics") as port,
        httpx.AsyncClient(timeout=5) as http,
    ):
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values = samples(response.text)
    assert values[("dialer_calls_created_total", ())] == len(phones)
    finished = {
        dict(labels)["outcome"]: v
        for (name, labels), v in values.items()
        if name == "dialer_calls_finished_total"
    }
    assert sum(finished.values()) == len(phones)
    sent = Counter(
        {
            (method, path, str(status)): n
            for (method, path, status), n in daemon.engine.requests_sent().items()
        }
    )
    scraped = {
        (d["method"], d["endpoint"], d["status"]): v
        for (name, labels), v in values.items()
        if name == "dialer_api_requests_total"
        for d in [dict(labels)]
    }
    assert scraped == dict(sent) and scraped[("POST", "/calls/outbound", "201")] == len(phones)
    assert values[("dialer_api_rate_limited_total", ())] == 0
    assert values[("dialer_calls_in_flight", (("campaign", "e2e"),))] == 0
    assert peak_in_flight >= 1
    assert values[("dialer_contacts_due", ())] == 0
    assert values[("dialer_reconciliations_total", (("result", "adopted"),))] == 0
    assert 0 < values[("dialer_budget_remaining", (("key", "default"),))] <= 6000


class _Requests(Collector):
    def __init__(self, sent: dict[tuple[str, str, int | str], int]) -> None:
        self.sent = sent

    def collect(self) -> Any:
        return request_series(self.sent)


def test_requests_are_counted_by_status_and_429s_apart() -> None:
    registry = CollectorRegistry()
    registry.register(
        _Requests(
            {
                ("GET", "/calls/{id}", 200): 5,
                ("GET", "/calls/{id}", 429): 4,
                ("GET", "/calls", "error"): 1,
            }
        )
    )
    values = samples(generate_latest(registry).decode())
    labels = (("endpoint", "/calls/{id}"), ("method", "GET"))
    assert values[("dialer_api_requests_total", (*labels, ("status", "200")))] == 5
    assert values[("dialer_api_requests_total", (*labels, ("status", "429")))] == 4
    errors = (("endpoint", "/calls"), ("method", "GET"), ("status", "error"))
    assert values[("dialer_api_requests_total", errors)] == 1
    assert values[("dialer_api_rate_limited_total", ())] == 4


async def test_the_daemon_serves_metrics_when_configured(tmp_path: Path, sqlite_url: str) -> None:
    """`[metrics] listen` makes `dialer run` serve /metrics, read when the scrape comes."""
    port = free_port()
    phones = nl_numbers(6)
    campaign = load(write_campaign(tmp_path, phones))
    config = write_config(
        tmp_path, db_url=sqlite_url, extra=f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    simulator = Simulator(
        SimulatorConfig(api_key=KEY, time_scale=SCALE, seed=4, requests_per_minute=6000)
    )
    created = asyncio.Event()

    def watch(daemon: Daemon) -> None:
        if daemon.engine.stats["created"]:
            created.set()

    running = asyncio.create_task(
        run_daemon(config, [campaign], simulator, fast_settings(config, SCALE), watch=watch)
    )
    async with asyncio.timeout(30):
        await created.wait()
    async with httpx.AsyncClient(timeout=5) as http:
        # the listener is the daemon's, on the daemon's own event loop
        during = samples((await http.get(f"http://127.0.0.1:{port}/metrics")).text)
        daemon = await running
        assert daemon.metrics is not None
        assert during[("dialer_calls_created_total", ())] >= 1
        assert 0 < during[("dialer_budget_remaining", (("key", "default"),))] <= 6000
        final = samples(daemon.metrics.exposition().decode())
        assert final[("dialer_calls_created_total", ())] == len(phones)
        finished = sum(v for (name, _), v in final.items() if name == "dialer_calls_finished_total")
        assert finished == len(phones)
        with pytest.raises(httpx.TransportError):  # the endpoint closed with the daemon
            await http.get(f"http://127.0.0.1:{port}/metrics")


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every SQL statement any engine of this process runs meanwhile."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)


async def _idle_statements(
    tmp_path: Path, db_url: str, *, metrics: bool, idle_s: float
) -> tuple[set[str], int, set[str]]:
    """An idle daemon (no campaign) for ``idle_s``: the statements it ran, how many, and (with
    metrics) the statements one scrape ran."""
    port = free_port()
    extra = f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n' if metrics else ""
    config = write_config(tmp_path, db_url=db_url, campaigns="none-*.toml", extra=extra)
    # Every loop passes, and every periodic statement comes round, several times a second.
    settings = fast_settings(
        config, SCALE, worker_ttl=timedelta(seconds=0.6), reconcile_interval=timedelta(seconds=0.2)
    )
    async with open_daemon(config, [], settings=settings, api_key=KEY) as daemon:
        stop = asyncio.Event()
        running = asyncio.create_task(run_until_stopped(daemon, until_idle=False, stop=stop))
        try:
            await asyncio.sleep(0.5)  # past the start-up statements: every loop has passed
            assert set(daemon.engine.loop_passes) == {
                "heartbeat",
                "dispatch",
                "follow",
                "housekeeping",
            }
            with statements() as idle:
                await asyncio.sleep(idle_s)
            scrape: list[str] = []
            if metrics:
                async with httpx.AsyncClient(timeout=5) as http:
                    with statements() as scrape:
                        response = await http.get(f"http://127.0.0.1:{port}/metrics")
                assert response.status_code == 200
        finally:
            stop.set()
            await running
    return set(idle), len(idle), set(scrape)


async def test_an_idle_daemon_reads_nothing_for_its_metrics_until_scraped(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The statements of an idle daemon with metrics on are those it runs without them; only
    a scrape reads the counts (they ran every second before, scraped or not)."""
    (tmp_path / "off").mkdir()
    (tmp_path / "on").mkdir()
    without, _, _ = await _idle_statements(
        tmp_path / "off", f"sqlite:///{tmp_path}/off/d.db", metrics=False, idle_s=3.0
    )
    with_metrics, idle_count, scrape = await _idle_statements(
        tmp_path / "on", f"sqlite:///{tmp_path}/on/d.db", metrics=True, idle_s=2.0
    )
    assert idle_count > 0  # the engine's own loops, which the metrics leave alone
    # The request counts are written at the wall clock's minute (metrics or not): whether a
    # window holds that write depends on the hour it ran, not on the metrics.
    minute_write = {
        statement
        for statement in with_metrics | scrape
        if statement.startswith(("INSERT INTO request_counts", "DELETE FROM request_counts"))
    }
    assert with_metrics - minute_write <= without, with_metrics - minute_write - without
    # the engine's loops went on during the scrape; what the scrape itself read is the rest
    scrape_reads = scrape - without - minute_write
    assert len(scrape_reads) == 3, scrape_reads  # in flight, due, finished: counts
    assert all("count(" in statement for statement in scrape_reads)
    assert not scrape_reads & with_metrics  # none of it ran while nobody scraped
