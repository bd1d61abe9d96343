"""Prometheus metrics: a real daemon on the simulator, recorded each tick, scraped over HTTP."""

from __future__ import annotations

import socket
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dialer.daemon import Daemon
from dialer.metrics import DialerMetrics
from dialer.simulator import Simulator, SimulatorConfig
from tests.e2e import KEY, fast_settings, load, nl_numbers, run_daemon, write_campaign, write_config

SCALE = 200.0


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_a_campaign_shows_up_in_a_scrape(tmp_path: Path, sqlite_url: str) -> None:
    phones = nl_numbers(6)
    campaign = load(write_campaign(tmp_path, phones))
    config = write_config(tmp_path, db_url=sqlite_url)
    simulator = Simulator(
        SimulatorConfig(api_key=KEY, time_scale=SCALE, seed=3, requests_per_minute=6000)
    )
    metrics = DialerMetrics()
    peak_in_flight = 0.0

    def watch(daemon: Daemon) -> None:
        nonlocal peak_in_flight
        metrics.record_engine_stats(daemon.engine, force=True)
        now = metrics.registry.get_sample_value("dialer_calls_in_flight", {"campaign": "e2e"})
        peak_in_flight = max(peak_in_flight, now or 0.0)

    daemon = await run_daemon(
        config, [campaign], simulator, fast_settings(config, SCALE), watch=watch
    )
    # The daemon disposed of its connections on the way out; the store reconnects on demand.
    metrics.record_engine_stats(daemon.engine, force=True)

    server = metrics.start_server("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.shutdown()
    assert response.status_code == 200
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


def test_counters_follow_totals_and_count_429s() -> None:
    metrics = DialerMetrics()
    metrics.record_requests({("GET", "/calls/{id}", 200): 3, ("GET", "/calls/{id}", 429): 1})
    metrics.record_requests({("GET", "/calls/{id}", 200): 5, ("GET", "/calls/{id}", 429): 4})
    values = samples(metrics.exposition().decode())
    labels = (("endpoint", "/calls/{id}"), ("method", "GET"))
    assert values[("dialer_api_requests_total", (*labels, ("status", "200")))] == 5
    assert values[("dialer_api_requests_total", (*labels, ("status", "429")))] == 4
    assert values[("dialer_api_rate_limited_total", ())] == 4


async def test_the_daemon_serves_metrics_when_configured(tmp_path: Path, sqlite_url: str) -> None:
    """`[metrics] listen` makes `dialer run` serve /metrics, recorded on every engine tick."""
    with socket.socket() as probe:  # a free port on loopback for the daemon to take
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    phones = nl_numbers(6)
    campaign = load(write_campaign(tmp_path, phones))
    config = write_config(
        tmp_path, db_url=sqlite_url, extra=f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    simulator = Simulator(
        SimulatorConfig(api_key=KEY, time_scale=SCALE, seed=4, requests_per_minute=6000)
    )
    scrapes: list[dict[tuple[str, tuple[tuple[str, str], ...]], float]] = []

    def scrape(daemon: Daemon) -> None:
        # The endpoint is a thread of the daemon: a blocking GET from the loop is answered.
        if daemon.engine.stats["created"] and not scrapes:
            scrapes.append(samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text))

    daemon = await run_daemon(
        config, [campaign], simulator, fast_settings(config, SCALE), watch=scrape
    )
    assert daemon.metrics is not None
    (during,) = scrapes
    assert during[("dialer_calls_created_total", ())] >= 1
    assert 0 < during[("dialer_budget_remaining", (("key", "default"),))] <= 6000
    final = samples(daemon.metrics.exposition().decode())
    assert final[("dialer_calls_created_total", ())] == len(phones)
    finished = sum(v for (name, _), v in final.items() if name == "dialer_calls_finished_total")
    assert finished == len(phones)
    async with httpx.AsyncClient(timeout=2) as http:
        with pytest.raises(httpx.TransportError):  # the endpoint closed with the daemon
            await http.get(f"http://127.0.0.1:{port}/metrics")
