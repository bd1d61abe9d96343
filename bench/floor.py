"""``python -m bench.floor``: the CPU a call cannot do without, measured apart from the loops.

What every call must cost whatever the engine around it does: its three store transitions
(``dialing`` with the request body and the audit evidence, ``in_flight``, ``ended`` with the
outcome, each with its event) on a fresh SQLite file, and one ``POST`` through httpx to a
loopback server that answers at once (in its own process, so its CPU is not counted). The
difference between these and the bench's "CPU ms / call" is what the loops, the logging, the
policy check and the rest of the engine cost per call (bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

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


def _answering_server(conn: Connection) -> None:
    """An HTTP/1.1 server that answers every request with VoiceDock's create answer."""
    answer = b'{"success": true, "call_id": "call-1", "status": "queued"}'
    reply = (
        b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(answer), answer)
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        await reader.readexactly(int(value))
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        conn.send(server.sockets[0].getsockname()[1])
        async with server:
            await asyncio.to_thread(conn.recv)  # until the client is done

    asyncio.run(serve())


async def _posts(port: int, requests: int) -> float:
    import httpx

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(20):  # connection set up, caches warm
            await client.post("/calls/outbound", json=BODY)
        cpu0 = time.process_time()
        for _ in range(requests):
            (await client.post("/calls/outbound", json=BODY)).json()
        return (time.process_time() - cpu0) / requests


def post_floor(requests: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_answering_server, args=(child,), daemon=True)
    server.start()
    try:
        port = parent.recv()
        return asyncio.run(_posts(port, requests))
    finally:
        parent.send("done")
        server.join(10)


def measure(calls: int) -> Floor:
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        transitions, live_counts = store_floor(calls, Path(tmp))
    return Floor(
        calls=calls,
        transitions_ms=transitions * 1000,
        live_counts_ms=live_counts * 1000,
        post_ms=post_floor(calls) * 1000,
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
