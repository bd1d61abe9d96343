"""What each API key's request budget was spent on, per minute, kept in the database.

Several daemons may serve the status page from one database, so its "requests per key over the
last hour" comes from there. Each daemon counts in memory (its clients' ``requests_sent``) and,
once a minute, adds what it sent since its last write to the minute that just ended: never a
write per request, and no write while it sends nothing. At a stop the minute under way is
written too.

    counts = RequestCounts(store, clients, clock=clock, worker_id=worker)
    async with counts.kept():           # writes once a minute until the block ends
        ...
    counts.unwritten()                  # what this daemon sent since its last write
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timedelta

import structlog

from dialer.errors import StoreError
from dialer.store import Store
from dialer.voicedock import VoiceDockClient

__all__ = ["KEEP_FOR", "MinuteTally", "RequestCounts", "minute_of"]

log = structlog.get_logger("dialer.usage")

#: how long the database keeps the counts (the page shows the last hour)
KEEP_FOR = timedelta(days=2)

#: key name -> (requests, of them answered 429)
Counts = dict[str, tuple[int, int]]


def minute_of(instant: datetime) -> datetime:
    return instant.replace(second=0, microsecond=0)


class MinuteTally:
    """Requests per key since the last write, and the minute they are written to (pure).

    ``totals`` are running totals (requests, 429s) per key since the daemon started; a write
    takes the difference from the totals at the previous one."""

    def __init__(self, totals: Mapping[str, tuple[int, int]], now: datetime) -> None:
        self._written: Counts = dict(totals)
        self.minute = minute_of(now)

    def due(self, now: datetime) -> bool:
        """A minute has ended since the counts' minute began."""
        return minute_of(now) > self.minute

    def unwritten(self, totals: Mapping[str, tuple[int, int]]) -> Counts:
        """What was sent since the last write, per key (keys that sent nothing left out)."""
        counts: Counts = {}
        for key, (requests, limited) in totals.items():
            before, limited_before = self._written.get(key, (0, 0))
            if requests > before:
                counts[key] = (requests - before, limited - limited_before)
        return counts

    def take(self, totals: Mapping[str, tuple[int, int]], now: datetime) -> tuple[datetime, Counts]:
        """The counts to write and their minute; the next ones start from ``now``'s minute."""
        minute, counts = self.minute, self.unwritten(totals)
        self._written = dict(totals)
        self.minute = minute_of(now)
        return minute, counts


class RequestCounts:
    """One daemon's request counts, written to the store once a minute (see the module)."""

    def __init__(
        self,
        store: Store,
        clients: Mapping[str, VoiceDockClient],
        *,
        clock: Callable[[], datetime],
        worker_id: str,
    ) -> None:
        self._store = store
        self._clients = clients
        self._clock = clock
        self._worker_id = worker_id
        self._tally = MinuteTally(self.totals(), clock())

    def totals(self) -> Counts:
        """Requests (and 429s) per key since this daemon started."""
        totals: Counts = {}
        for key, client in self._clients.items():
            # a copy first: the status page asks from another thread than the one counting
            sent = dict(client.requests_sent)
            totals[key] = (
                sum(sent.values()),
                sum(n for (_, _, status), n in sent.items() if status == 429),
            )
        return totals

    def unwritten(self) -> Counts:
        """What this daemon sent since its last write (the minute under way, mostly)."""
        return self._tally.unwritten(self.totals())

    def write(self, *, now: datetime | None = None) -> None:
        """Add the counts since the last write to their minute (a store error keeps them for
        the next write)."""
        now = now or self._clock()
        totals = self.totals()
        counts = self._tally.unwritten(totals)
        try:
            self._store.add_request_counts(
                self._worker_id,
                minute=self._tally.minute,
                counts=counts,
                forget_before=now - KEEP_FOR,
            )
        except StoreError as exc:
            log.warning("dialer.usage.not_written", error=str(exc))
            return
        self._tally.take(totals, now)

    def write_if_due(self) -> None:
        now = self._clock()
        if not self._tally.due(now):
            return
        if self._tally.unwritten(self.totals()):
            self.write(now=now)
        else:
            self._tally.take(self.totals(), now)  # nothing sent: nothing to write

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        """Write once a minute while the block runs, and what is left at its end."""
        task = asyncio.create_task(self._every_minute(), name="request_counts")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if self.unwritten():
                self.write()

    async def _every_minute(self) -> None:
        while True:
            now = self._clock()
            next_minute = minute_of(now) + timedelta(minutes=1)
            # a little past the minute, and never longer than a minute (a clock that jumps)
            await asyncio.sleep(min(60.0, (next_minute - now).total_seconds() + 0.05))
            self.write_if_due()
