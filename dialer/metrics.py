"""The metrics listener: Prometheus metrics, ``/healthz`` and ``/readyz`` of one daemon.

Nothing is recorded ahead of a scrape. :class:`DialerCollector` reads the engine's plain
counters (``Engine.stats``, the clients' requests and budgets) and three counting SQL reads
(``Store.scrape_counts``, in a worker thread off the event loop) when Prometheus asks, so a
daemon nobody scrapes does no database work for its metrics. :func:`operations_app` is the
ASGI app the daemon serves on ``[metrics] listen`` (dialer.serving):

    metrics = DialerMetrics(engine)
    app = operations_app(metrics, engine)   # GET /metrics, /healthz, /readyz
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dialer.errors import SchemaMismatch, StoreError
from dialer.health import Verdict, liveness, readiness
from dialer.store import ScrapeCounts

if TYPE_CHECKING:
    from dialer.engine import Engine

__all__ = [
    "DialerCollector",
    "DialerMetrics",
    "health",
    "operations_app",
    "readiness_of",
    "request_series",
]


class DialerCollector(Collector):
    """Every dialer series, gathered at scrape time from the engine and the store (or from
    ``counts`` the scrape has read already)."""

    def __init__(self, engine: Engine, counts: ScrapeCounts | None = None) -> None:
        self._engine = engine
        self._counts = counts

    def describe(self) -> list[Metric]:
        # Registration must not read the database (the collector's series are known anyway).
        return []

    def collect(self) -> Iterator[Metric]:
        engine = self._engine
        stats = engine.stats
        yield CounterMetricFamily(
            "dialer_calls_created",
            "Calls VoiceDock accepted (POST /calls/outbound) from this daemon.",
            value=stats.get("created", 0),
        )
        yield from request_series(engine.requests_sent())
        reconciliations = CounterMetricFamily(
            "dialer_reconciliations",
            "Ambiguous dials resolved: adopted (the call exists) or released (it does not).",
            labels=["result"],
        )
        for result in ("adopted", "released"):
            reconciliations.add_metric([result], stats.get(result, 0))
        yield reconciliations
        budget = GaugeMetricFamily(
            "dialer_budget_remaining",
            "Requests the API key still has in this minute (VoiceDock's count when it gave one).",
            labels=["key"],
        )
        for key_name, client in sorted(engine.clients.items()):
            budget.add_metric([key_name], client.budget.remaining())
        yield budget
        counts = self._counts
        if counts is None:
            counts = engine.store.scrape_counts(now=engine.clock())
        yield from self._database(counts)

    @staticmethod
    def _database(counts: ScrapeCounts) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            "dialer_calls_in_flight",
            "Calls that may exist now (dialing or in flight), by campaign.",
            labels=["campaign"],
        )
        for campaign, n in sorted(counts.in_flight.items()):
            in_flight.add_metric([campaign], n)
        yield in_flight
        yield GaugeMetricFamily(
            "dialer_contacts_due",
            "Planned attempts of active campaigns that are due now.",
            value=counts.due,
        )
        finished = CounterMetricFamily(
            "dialer_calls_finished",
            "Attempts that reached an outcome, by outcome (whole database).",
            labels=["outcome"],
        )
        for outcome, n in sorted(counts.finished.items()):
            finished.add_metric([outcome], n)
        yield finished


def request_series(sent: Mapping[tuple[str, str, int | str], int]) -> Iterator[Metric]:
    """Requests by (method, endpoint, status), and the 429s among them."""
    requests = CounterMetricFamily(
        "dialer_api_requests",
        "VoiceDock requests by method, endpoint and status (or 'error').",
        labels=["method", "endpoint", "status"],
    )
    rate_limited = 0
    for (method, endpoint, status), n in sorted(
        sent.items(), key=lambda item: tuple(map(str, item[0]))
    ):
        requests.add_metric([method, endpoint, str(status)], n)
        if status == 429:
            rate_limited += n
    yield requests
    yield CounterMetricFamily(
        "dialer_api_rate_limited", "VoiceDock answers with status 429.", value=rate_limited
    )


class DialerMetrics:
    """A registry of the daemon's own holding its collector."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.registry = CollectorRegistry()
        self.registry.register(DialerCollector(engine))

    def exposition(self) -> bytes:
        """The text format a scrape returns (reads the database)."""
        return generate_latest(self.registry)

    async def scrape(self) -> bytes:
        """The same text, its database counts read in a worker thread: over a million
        attempts they took 1.5 s on SQLite, which the event loop must not wait for."""
        engine = self._engine
        counts = await asyncio.to_thread(engine.store.scrape_counts, now=engine.clock())
        registry = CollectorRegistry()
        registry.register(DialerCollector(engine, counts))
        return generate_latest(registry)


def health(engine: Engine) -> Verdict:
    """``/healthz``: the engine's loops and heartbeat (in memory: no database read)."""
    return liveness(
        running=engine.running,
        loop_passes=engine.loop_passes,
        last_heartbeat=engine.last_heartbeat,
        now=engine.clock(),
        now_monotonic=time.monotonic(),
        tick_s=engine.settings.tick,
        worker_ttl=engine.settings.worker_ttl,
        database_outage=None if engine.database_outage is None else str(engine.database_outage),
    )


async def readiness_of(engine: Engine) -> Verdict:
    """``/readyz``: one schema read (in a worker thread: a database that does not answer may
    take seconds to say so) tells whether the database answers with this code's schema; the
    clock and the holds are the engine's."""
    database_problem = schema_problem = None
    try:
        await asyncio.to_thread(engine.store.check_schema)
    except SchemaMismatch as exc:
        schema_problem = str(exc)
    except StoreError as exc:
        database_problem = str(exc)
    return readiness(
        database_problem=database_problem,
        schema_problem=schema_problem,
        clock_skew=engine.clock_skew,
        account_holds=engine.account_holds,
        # what the engine holds each key for: unreachable since when, or back and reconciling
        voicedock={key: str(outage) for key, outage in engine.voicedock_outages.items()},
    )


def operations_app(metrics: DialerMetrics, engine: Engine) -> Starlette:
    """GET /metrics (Prometheus text), /healthz and /readyz (JSON; 200, or 503 when not)."""

    async def scrape(_: Request) -> Response:
        return Response(await metrics.scrape(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        verdict = health(engine)
        return JSONResponse(verdict.body, status_code=verdict.status_code)

    async def readyz(_: Request) -> Response:
        verdict = await readiness_of(engine)
        return JSONResponse(verdict.body, status_code=verdict.status_code)

    return Starlette(
        routes=[
            Route("/metrics", scrape, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )
