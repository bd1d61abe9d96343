"""Prometheus metrics of one daemon, on a registry of its own.

The engine and the client keep plain counters (``Engine.stats``, ``VoiceDockClient.
requests_sent``); :class:`DialerMetrics` turns them into Prometheus series when the daemon calls
:meth:`DialerMetrics.record_engine_stats` on each tick, so neither needs to know about
Prometheus. Database-wide numbers (in flight, due, finished by outcome) are read from the store.

    metrics = DialerMetrics()
    server = metrics.start_server("127.0.0.1", 9464)   # GET /metrics
    ...  # each tick: metrics.record_engine_stats(daemon.engine)
    server.shutdown()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import start_http_server

from dialer.attempts import AttemptState

if TYPE_CHECKING:
    from dialer.engine import Engine

__all__ = ["DialerMetrics", "MetricsServer"]

_K = TypeVar("_K", bound=Hashable)

#: `contacts_due` counts at most this many (the store hands out due attempts in pages)
DUE_COUNT_LIMIT = 10_000
#: store reads at most this often; the engine ticks every 50 ms and a scrape every 15 s
MIN_STORE_INTERVAL_S = 1.0


@dataclass
class MetricsServer:
    """The /metrics HTTP endpoint, served from a daemon thread."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class DialerMetrics:
    """The series a dialer exposes; counters advance by what changed since the last record."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.calls_created = Counter(
            "dialer_calls_created", "Calls VoiceDock accepted (POST /calls/outbound).", registry=r
        )
        self.calls_finished = Counter(
            "dialer_calls_finished",
            "Attempts that reached an outcome, by outcome (whole database).",
            ["outcome"],
            registry=r,
        )
        self.requests = Counter(
            "dialer_api_requests",
            "VoiceDock requests by method, endpoint and status (or 'error').",
            ["method", "endpoint", "status"],
            registry=r,
        )
        self.rate_limited = Counter(
            "dialer_api_rate_limited", "VoiceDock answers with status 429.", registry=r
        )
        self.reconciliations = Counter(
            "dialer_reconciliations",
            "Ambiguous dials resolved: adopted (the call exists) or released (it does not).",
            ["result"],
            registry=r,
        )
        self.in_flight = Gauge(
            "dialer_calls_in_flight",
            "Calls that may exist now (dialing or in flight), by campaign.",
            ["campaign"],
            registry=r,
        )
        self.budget_remaining = Gauge(
            "dialer_budget_remaining",
            "Requests the API key still has in this minute (VoiceDock's count when it gave one).",
            ["key"],
            registry=r,
        )
        self.contacts_due = Gauge(
            "dialer_contacts_due",
            f"Planned attempts of active campaigns that are due now (at most {DUE_COUNT_LIMIT}).",
            registry=r,
        )
        self._seen_stats: dict[str, int] = {}
        self._seen_requests: dict[tuple[str, str, int | str], int] = {}
        self._seen_outcomes: dict[str, int] = {}
        self._last_store_read: float | None = None

    # ------------------------------------------------------------------ recording
    def record_engine_stats(self, engine: Engine, *, force: bool = False) -> None:
        """Bring every series up to date with ``engine`` (cheap; call it on every tick).

        Store reads happen at most every MIN_STORE_INTERVAL_S unless ``force`` is set.
        """
        stats = engine.stats
        self.calls_created.inc(self._delta(self._seen_stats, "created", stats.get("created", 0)))
        for result in ("adopted", "released"):
            self.reconciliations.labels(result=result).inc(
                self._delta(self._seen_stats, result, stats.get(result, 0))
            )
        self.record_requests(engine.requests_sent())
        for key_name, client in engine.clients.items():
            self.budget_remaining.labels(key=key_name).set(client.budget.remaining())
        now_mono = time.monotonic()
        if (
            force
            or self._last_store_read is None
            or now_mono - self._last_store_read >= MIN_STORE_INTERVAL_S
        ):
            self._last_store_read = now_mono
            self.record_store(engine, now=engine.clock())

    def record_requests(self, sent: Mapping[tuple[str, str, int | str], int]) -> None:
        for (method, endpoint, status), total in list(sent.items()):
            delta = self._delta(self._seen_requests, (method, endpoint, status), total)
            if delta:
                self.requests.labels(method=method, endpoint=endpoint, status=str(status)).inc(
                    delta
                )
                if status == 429:
                    self.rate_limited.inc(delta)

    def record_store(self, engine: Engine, *, now: datetime) -> None:
        store = engine.store
        names = {c.id: c.name for c in store.campaigns()}
        live = store.live_counts()
        for campaign_id, name in names.items():
            self.in_flight.labels(campaign=name).set(live.get(campaign_id, 0))
        self.contacts_due.set(len(store.due_attempts(now=now, limit=DUE_COUNT_LIMIT)))
        finished: dict[str, int] = {}
        for (state, outcome), n in store.state_counts().items():
            if outcome is not None and state not in (AttemptState.DIALING, AttemptState.IN_FLIGHT):
                finished[outcome] = finished.get(outcome, 0) + n
        for outcome, total in finished.items():
            delta = self._delta(self._seen_outcomes, outcome, total)
            if delta:
                self.calls_finished.labels(outcome=outcome).inc(delta)

    @staticmethod
    def _delta(seen: dict[_K, int], key: _K, total: int) -> int:
        # Counters only go up: a total that went down (a reset elsewhere) restarts the baseline.
        delta = total - seen.get(key, 0)
        seen[key] = total
        return max(delta, 0)

    # ------------------------------------------------------------------ exposing
    def exposition(self) -> bytes:
        """The text format a scrape returns."""
        return generate_latest(self.registry)

    def start_server(self, host: str, port: int) -> MetricsServer:
        """Serve /metrics on ``host:port`` (port 0: any free port, see ``.port``)."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(server=server, thread=thread)
