"""``python -m bench.floor``: the CPU a call cannot do without, measured apart from the loops.

What every call must cost whatever the engine around it does: its three store transitions
(``dialing`` with the request body and the audit evidence, ``in_flight``, ``ended`` with the
outcome, each with its event) on a fresh SQLite file, and one ``POST`` through httpx to the
bench's simulator (in its own process, so its CPU is not counted). The
difference between these and the bench's "CPU ms / call" is what the loops, the logging, the
policy check and the rest of the engine cost per call (bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench import VariantRow

T0 = datetime(2026, 11, 25, 9, tzinfo=UTC)
#: a request body and a call object of the size the bench's campaign produces
BODY = {
    "assistant_id": "7d1e5b2a-4c3f-4e8a-9b6d-0a1b2c3d4e5f",
    "number_id": "c0ffee00-1d2e-4f3a-8b4c-5d6e7f8a9b0c",
    "customer": {"number": "+31612345678"},
    "assistant_override": {"variable_values": {"name": "Anna", "greeting": "Hello Anna " * 8}},
    "metadata": {"dialer_attempt_id": 1, "dialer_campaign": "bench", "dialer_run_id": 1},
}
MESSAGES = [{"role": "assistant", "message": "Hello, this is a reminder."}] * 4
EVIDENCE = {
    "rule": "window",
    "window": "mon,tue,wed,thu,fri,sat,sun 00:00-24:00",
    "zone": "Europe/Amsterdam",
    "local_time": "2026-11-25T10:00:00+01:00",
    "attempt": 1,
    "max_attempts": 1,
}


@dataclass(frozen=True, kw_only=True)
class Floor:
    calls: int
    transitions_ms: float  # the three transitions of one call
    live_counts_ms: float  # one count of the calls in flight (the dispatcher's per-pass read)
    post_ms: float  # one POST /calls/outbound through httpx, answer parsed


def store_floor(calls: int, workdir: Path) -> tuple[float, float]:
    from dialer.store import CallResult, ContactRecord, Store

    with Store(f"sqlite:///{workdir / 'floor.db'}") as store:
        store.create_schema()
        campaign_id = store.sync_campaign(
            name="floor",
            source="floor.toml",
            definition_hash="floor",
            api_key_name="default",
            contacts=[
                ContactRecord(
                    phone=f"+3161{i:07d}", name="Anna", timezone=None, variables={"x": "y"}
                )
                for i in range(calls)
            ],
            now=T0,
        )
        store.create_run(campaign_id, fire_time=T0, now=T0)
        attempts = store.due_attempts(now=T0 + timedelta(hours=1), limit=calls)
        result = CallResult(
            call_status="ended",
            outcome="answered",
            error=None,
            end_reason="customer-ended-call",
            started_at=T0,
            ended_at=T0 + timedelta(seconds=90),
            duration_seconds=90,
            summary="Confirmed the appointment.",
            analysis_result={"success_evaluation": "true"},
            messages=MESSAGES,
            raw={"id": "call", "status": "ended", "messages": MESSAGES},
        )
        cpu0 = time.process_time()
        for number, attempt in enumerate(attempts):
            store.begin_dialing(attempt.id, owner="floor", body=BODY, now=T0, evidence=EVIDENCE)
            store.mark_in_flight(
                attempt.id, call_id=f"call-{number}", now=T0, next_poll_at=T0, response_status=201
            )
            store.record_outcome(attempt.id, result=result, now=T0)
        transitions = (time.process_time() - cpu0) / len(attempts)
        cpu0 = time.process_time()
        for _ in range(calls):
            store.live_counts()
        live_counts = (time.process_time() - cpu0) / calls
    return transitions, live_counts


async def _posts(base_url: str, requests: int, body: Mapping[str, Any]) -> float:
    import httpx

    from bench import KEY

    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:
        for _ in range(20):  # connection set up, caches warm
            (await client.post("/calls/outbound", json=body)).raise_for_status()
        cpu0 = time.process_time()
        for _ in range(requests):
            (await client.post("/calls/outbound", json=body)).json()
        return (time.process_time() - cpu0) / requests


def post_floor(requests: int) -> float:
    """POSTs to the bench's simulator in its own process, its clock (and limit) sped up so
    far that no request waits or is refused."""
    from bench import BenchParams, _simulator_process, _spawn, write_campaign
    from dialer.campaign import load_campaign

    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        campaign = load_campaign(write_campaign(Path(tmp), 1))
        body = campaign.call_body(campaign.contacts[0])  # the bench campaign's own request
    ctx = _spawn()
    parent, child = ctx.Pipe()
    simulator = ctx.Process(
        target=_simulator_process, args=(child, BenchParams(time_scale=10_000.0), None)
    )
    simulator.start()
    try:
        base_url = parent.recv()
        return asyncio.run(_posts(base_url, requests, body))
    finally:
        parent.send("done")
        parent.recv()  # its statistics: not needed here
        simulator.join(30)


def measure(calls: int) -> Floor:
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        transitions, live_counts = store_floor(calls, Path(tmp))
    return Floor(
        calls=calls,
        transitions_ms=transitions * 1000,
        live_counts_ms=live_counts * 1000,
        post_ms=post_floor(calls) * 1000,
    )


def floor_line(floor: Floor, rows: Sequence[VariantRow]) -> str:
    """The floor of this run, and each dialer variant's CPU per call against it."""
    together = floor.transitions_ms + floor.post_ms
    ratios = ", ".join(
        f"{row.variant} {row.cpu_ms_per_call:.2f} ms = {row.cpu_ms_per_call / together:.2f} x"
        for row in rows
        if row.variant != "naive"
    )
    return (
        f"floor (bench.floor, this run): three store transitions {floor.transitions_ms:.2f} ms"
        f" + one POST {floor.post_ms:.2f} ms = {together:.2f} ms per call"
        + (f"; CPU per call against it: {ratios}" if ratios else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    floor = measure(parser.parse_args(argv).calls)
    print(
        f"{floor.calls} calls, CPU per call: three store transitions "
        f"{floor.transitions_ms:.3f} ms, one POST through httpx {floor.post_ms:.3f} ms, "
        f"together {floor.transitions_ms + floor.post_ms:.3f} ms; "
        f"one live_counts {floor.live_counts_ms:.3f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
