"""The baseline the bench measures the dialer against: the dialer most people write first.

For each contact: ``POST /calls/outbound``, then ``GET /calls/{id}`` every ``poll_interval_s``
until the call ends or fails. At most ``concurrency`` contacts are worked on at once. It has no
request budget of its own: it learns the limit from 429s and sleeps for ``Retry-After`` (it is
naive, not rude). No batching, no list polling, no database, no crash safety.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

TERMINAL = frozenset({"ended", "failed"})
#: a 429 without a readable Retry-After: wait this long (real seconds)
DEFAULT_RETRY_AFTER_S = 1.0


@dataclass(frozen=True, kw_only=True)
class NaiveResult:
    completed: int  # calls whose end (ended/failed) was observed
    requests: int  # every request sent, 429s included
    rate_limited: int  # 429 answers received
    errors: int  # contacts given up on (a 4xx other than 429, or no call id)
    finished_after_s: float  # real seconds from start to the last observed end


class NaiveDialer:
    """POST, then poll each call by id; ``time_scale`` shrinks the poll interval like the clock."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        concurrency: int,
        poll_interval_s: float,
        time_scale: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, not {concurrency}")
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            transport=transport,
            timeout=httpx.Timeout(30.0),
            # one connection per concurrent call, like a pool sized to the concurrency cap
            limits=httpx.Limits(max_connections=concurrency),
        )
        self._slots = asyncio.Semaphore(concurrency)
        self._poll_s = poll_interval_s / time_scale
        self._requests = 0
        self._rate_limited = 0
        self._errors = 0
        self._completed = 0
        self._last_end = 0.0
        self._t0 = 0.0

    async def __aenter__(self) -> NaiveDialer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def run(self, bodies: Sequence[dict[str, Any]]) -> NaiveResult:
        """Call every body's destination once; returns when every call has ended."""
        self._t0 = time.monotonic()
        await asyncio.gather(*(self._one(body) for body in bodies))
        return NaiveResult(
            completed=self._completed,
            requests=self._requests,
            rate_limited=self._rate_limited,
            errors=self._errors,
            finished_after_s=self._last_end - self._t0 if self._completed else 0.0,
        )

    async def _one(self, body: dict[str, Any]) -> None:
        async with self._slots:
            created = await self._send("POST", "/calls/outbound", json=body)
            call_id = created.json().get("call_id") if created.status_code == 201 else None
            if not isinstance(call_id, str):
                self._errors += 1
                return
            while True:
                await asyncio.sleep(self._poll_s)
                seen = await self._send("GET", f"/calls/{call_id}")
                if seen.status_code == 200 and seen.json().get("status") in TERMINAL:
                    self._completed += 1
                    self._last_end = time.monotonic()
                    return

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, re-sent after each 429 once ``Retry-After`` has passed."""
        while True:
            self._requests += 1
            response = await self._client.request(method, path, **kwargs)
            if response.status_code != 429:
                return response
            self._rate_limited += 1
            await asyncio.sleep(_retry_after(response))


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return DEFAULT_RETRY_AFTER_S
