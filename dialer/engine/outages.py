"""The ground moving under the engine: the database away (unreachable, locked, full) and
VoiceDock keys that do not answer. Each costs time; none costs a double dial, an outcome or a
restart by hand.

    a statement fails for now (StoreUnavailable) ──► DatabaseWatch
        the loops take turns trying their pass again, one at a time, backing off (jittered,
        capped); the outage is logged when it starts, again once a minute, and when every loop
        that met it has passed again. Dialling stops by itself: no POST goes out without a
        committed `dialing` row, and a create queued before a failure is confirmed again (a
        write) before it goes out. A daemon whose heartbeat is overdue claims nothing new, and
        just back from an outage it judges no other daemon dead until their heartbeats could
        have come back too.

    a request gets no answer at all (TransportFailure) ──► Reachability, per API key
        the key's creates, polls and lists stop; one probe at a time (``GET /calls?limit=1``,
        backing off to a cap) asks whether VoiceDock answers again. When it does, the key's
        calls are looked at at once and reconciliation runs for the key before any dial.

When the database fails a write midway, the write is retried only where a retry is harmless
(idempotent, or a compare-and-set that a re-read tells apart); everything else is read again
later, from the database or from VoiceDock:

    write                              on StoreUnavailable
    ---------------------------------  ---------------------------------------------------------
    begin_dialing (planned→dialing)    re-read: no POST; the next dispatch pass reads what is
                                       due. Committed unseen, the row waits in `dialing` with no
                                       POST: our reconciliation releases it after the settle
    confirm_sending (before a send)    not sent; the row stays `dialing` for reconciliation
    mark_in_flight (the POST answered) RETRIED until it lands or the daemon stops: the call
                                       exists and its id is only in memory. Pinned to the dial,
                                       a second try after an unseen commit is refused, and a
                                       re-read finds our call id (Dispatcher._record_created)
    note_ambiguous, release_unplaced,  not retried: the row stays `dialing`, which
    mark_create_failed                 reconciliation settles (adopts the call or, after the
                                       settle delay, releases the contact)
    record_outcome, record_poll,       re-read: the look stays due (its claim's lease runs out)
    mark_unknown, reschedule_poll      and VoiceDock is asked again; the outcome is VoiceDock's
    defer, close_unplaced              re-read: the attempt stays due for the next pass
    create_run (a schedule fires)      RETRIED each housekeeping pass: keyed on (campaign, fire
                                       time), a try after an unseen commit creates nothing
    heartbeat                          RETRIED at the loop's next try (it only moves a time on)
    cancel_stragglers, finish_runs,    re-read on the next pass (compare-and-set)
    the reconciler's adopt / release
    take_request_slot (shared budget)  RETRIED by the budget, which sends nothing meanwhile; a
                                       slot taken by an unseen commit is lost, never doubled
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass
from datetime import datetime

import structlog

from dialer.engine.settings import Clock, EngineSettings
from dialer.errors import (
    DatabaseBusy,
    DatabaseFull,
    ProviderError,
    StoreUnavailable,
)

__all__ = ["DatabaseWatch", "Outage", "Reachability"]

log = structlog.get_logger("dialer.engine")


@dataclass(frozen=True, kw_only=True)
class Outage:
    """One outage as this daemon sees it (what /readyz and the status page can show)."""

    #: what is out: "database", or "VoiceDock" for an API key
    subject: str
    #: unreachable | locked | full (the database); unreachable (VoiceDock)
    kind: str
    since: datetime
    #: the last error met
    error: str
    #: the tries that failed in a row (a probe, a loop's pass)
    failures: int

    def __str__(self) -> str:
        return (
            f"{self.subject} {self.kind} since {self.since:%Y-%m-%d %H:%M:%S} UTC "
            f"({self.failures} failed tries; last: {self.error})"
        )


def _database_kind(exc: StoreUnavailable) -> str:
    if isinstance(exc, DatabaseBusy):
        return "locked"
    if isinstance(exc, DatabaseFull):
        return "full"
    return "unreachable"


_DATABASE_HINTS = {
    "unreachable": "dialling holds; the daemon reconnects by itself",
    "locked": "another process holds the database's write lock (a backup, the CLI, a long "
    "transaction); dialling holds until it lets go",
    "full": "the disk (or the database's size limit) is full: free space; dialling holds "
    "and resumes by itself, outcomes are read again from VoiceDock",
}


@dataclass(kw_only=True)
class _Open:
    """An outage in progress (mutable: it grows until it ends)."""

    since: datetime
    kind: str
    error: str
    failures: int = 1
    #: a line about it was logged since its start or since the last "back" line
    said: bool = False


class DatabaseWatch:
    """The database's outages as this daemon's loops meet them.

    A loop reports each pass: ``failed`` or ``passed``; other writers (dial tasks, a webhook,
    a schedule's fire) report what they meet with ``noticed``. An outage lasts from the first
    failure until every loop that met it has passed again. While it lasts the loops take turns:
    no loop tries before ``wait_s()`` says so, a back-off (jittered, capped) that every failure
    pushes further, so tries come one at a time however many loops are waiting (each may hold
    the event loop for the lock wait or a connect timeout, and a signal must get through
    between them). An outage that starts again within ``outage_log_every`` of its end is the
    same outage (a full disk lets small writes through), so the log says it once, then at most
    once a minute, and its end once.
    """

    def __init__(self, settings: EngineSettings, clock: Clock, rng: random.Random) -> None:
        self._settings = settings
        self._clock = clock
        self._rng = rng
        #: loops whose last pass failed
        self._failing: set[str] = set()
        self._open: _Open | None = None
        #: tries that failed in a row (any loop's): what the back-off counts
        self._failures = 0
        #: while an outage lasts, no loop tries before this
        self._next_try: datetime | None = None
        #: the last outage and when it ended (it may resume, see the class docstring)
        self._ended: tuple[datetime, _Open] | None = None
        self._last_failure: datetime | None = None
        self._last_line: datetime | None = None
        self._last_beat: datetime | None = None
        self._distrust_until: datetime | None = None
        #: set while the database serves us (no outage in progress), and at a stop
        self.available = asyncio.Event()
        self.available.set()

    # ------------------------------------------------------------------ what others read
    @property
    def outage(self) -> Outage | None:
        """The outage in progress, or None."""
        current = self._open
        if current is None:
            return None
        return Outage(
            subject="database",
            kind=current.kind,
            since=current.since,
            error=current.error,
            failures=current.failures,
        )

    @property
    def down(self) -> bool:
        """An outage is in progress: writes that can wait should not try (each may block the
        event loop for the lock wait, or a connect timeout)."""
        return self._open is not None

    def wait_s(self, now: datetime) -> float:
        """Seconds before a loop may run its pass (0: now). Outside an outage, always 0."""
        if self._open is None or self._next_try is None:
            return 0.0
        return max(0.0, (self._next_try - now).total_seconds())

    def beat_overdue(self, now: datetime) -> bool:
        """Our last heartbeat is old enough that the other daemons may soon take us for dead:
        claim nothing new until it is written again."""
        last = self._last_beat
        return last is not None and now - last > self._settings.worker_ttl / 2

    def interrupted_since(self, when: datetime, now: datetime) -> bool:
        """Something may have happened to what we claimed at ``when``: the database failed
        us since, or our heartbeat is overdue (another daemon may have taken it over)."""
        failed = self._last_failure is not None and self._last_failure >= when
        return failed or self.beat_overdue(now)

    def trusts_heartbeats(self, now: datetime) -> bool:
        """Other daemons' heartbeats may be judged: no outage of ours is in progress, and the
        one that ended last (during which theirs could not be written either, if it was the
        database's) is far enough behind for them to have beaten again."""
        if self._open is not None:
            return False
        return self._distrust_until is None or now >= self._distrust_until

    # ------------------------------------------------------------------ reports
    def failed(self, exc: StoreUnavailable, *, loop: str) -> None:
        """A loop's pass met ``exc``: it waits for its turn (``wait_s``) to try again."""
        self._failing.add(loop)
        self._record(exc, where=loop)

    def noticed(self, exc: StoreUnavailable, *, by: str) -> None:
        """A write outside the loops met ``exc`` (it decides itself what to do next)."""
        self._record(exc, where=by)

    def passed(self, loop: str) -> None:
        """A loop's pass went through; the outage ends when no loop is failing any more."""
        self._failing.discard(loop)
        current = self._open
        if current is None:
            return
        now = self._clock()
        if self._failing:
            # It answered this loop: the ones still failing may try at once. The back-off is
            # not reset: a full disk answers small writes and fails the others.
            self._next_try = now
            return
        self._failures = 0
        if current.said:
            log.info(
                "dialer.database.back",
                kind=current.kind,
                outage_s=round((now - current.since).total_seconds(), 3),
                failures=current.failures,
            )
            current.said = False
        # Their heartbeats could not be written either, if the outage was the database's:
        # give them as long as it lasted (at most a heartbeat's lifetime) to beat again.
        self._distrust_until = now + min(self._settings.worker_ttl, now - current.since)
        self._ended = (now, current)
        self._open = None
        self._next_try = None
        self.available.set()

    def beat(self, now: datetime) -> None:
        """Our heartbeat was written at ``now``."""
        self._last_beat = now

    async def take_turn(self, tick_s: float) -> None:
        """Until this caller may try the database: at once outside an outage; during one,
        when the back-off says a try is due (or the outage ends, or the engine stops:
        ``release_waiters``). ``tick_s``: how often to look again (the clock is injected)."""
        while not self.available.is_set():
            wait = self.wait_s(self._clock())
            if wait <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.available.wait(), timeout=min(wait, tick_s))

    def release_waiters(self) -> None:
        """At a stop: whoever waits for the database gives up waiting (and leaves what it
        meant to write to the next start's reconciliation)."""
        self.available.set()

    def _record(self, exc: StoreUnavailable, *, where: str) -> None:
        now = self._clock()
        self._last_failure = now
        self._failures += 1
        self._next_try = now + self._settings.database_backoff.delay(self._failures, self._rng)
        kind, error = _database_kind(exc), str(exc)
        every = self._settings.outage_log_every
        current = self._open
        if current is None:
            ended = self._ended
            if ended is not None and now - ended[0] < every:
                current = ended[1]  # resumed: the same outage, said already
                current.failures += 1
                current.kind, current.error = kind, error
            else:
                current = _Open(since=now, kind=kind, error=error)
                current.said = True
                self._last_line = now
                log.error(
                    "dialer.database.unavailable",
                    kind=kind,
                    error=error,
                    where=where,
                    hint=_DATABASE_HINTS[kind],
                )
            self._open = current
            self.available.clear()
            return
        current.failures += 1
        current.kind, current.error = kind, error
        if self._last_line is None or now - self._last_line >= every:
            current.said = True
            self._last_line = now
            log.warning(
                "dialer.database.still_unavailable",
                kind=kind,
                since=current.since.isoformat(),
                failures=current.failures,
                error=error,
            )


@dataclass(kw_only=True)
class _KeyOutage:
    since: datetime
    error: str
    next_probe: datetime
    failures: int = 1
    last_line: datetime
    #: a probe got an answer: dials wait for the key's reconciliation
    returned: bool = False


class Reachability:
    """The API keys whose VoiceDock does not answer (connection refused or timing out), as
    this daemon sees them: held from the first request that got no answer until a probe
    gets one and reconciliation has run for the key."""

    def __init__(self, settings: EngineSettings, clock: Clock, rng: random.Random) -> None:
        self._settings = settings
        self._clock = clock
        self._rng = rng
        self._keys: dict[str, _KeyOutage] = {}

    # ------------------------------------------------------------------ what others read
    @property
    def outages(self) -> dict[str, Outage]:
        """API key name -> its outage, for every key held (unreachable or reconciling)."""
        return {
            key: Outage(
                subject=f"VoiceDock (key {key})",
                kind="reconciling" if outage.returned else "unreachable",
                since=outage.since,
                error=outage.error,
                failures=outage.failures,
            )
            for key, outage in sorted(self._keys.items())
        }

    def held_keys(self) -> set[str]:
        """Keys that may not dial: unreachable, or back but not yet reconciled."""
        return set(self._keys)

    def unreachable(self, key: str) -> bool:
        """No request of this key is worth sending but its probe."""
        outage = self._keys.get(key)
        return outage is not None and not outage.returned

    def awaiting_reconciliation(self) -> set[str]:
        return {key for key, outage in self._keys.items() if outage.returned}

    def probes_due(self, now: datetime) -> list[str]:
        return [
            key
            for key, outage in self._keys.items()
            if not outage.returned and outage.next_probe <= now
        ]

    # ------------------------------------------------------------------ reports
    def failed(self, key: str, exc: ProviderError) -> None:
        """A request of ``key`` got no answer at all, after the client's own retries."""
        outage = self._keys.get(key)
        if outage is not None and not outage.returned:
            return  # known: only its probes count the failures in a row
        now = self._clock()
        if outage is not None:  # back, then gone again before its reconciliation
            outage.returned = False
            self._schedule(outage, now)
            return
        self._keys[key] = outage = _KeyOutage(
            since=now, error=str(exc), next_probe=now, last_line=now
        )
        self._schedule(outage, now)
        log.error(
            "dialer.voicedock.unreachable",
            key=key,
            error=str(exc),
            hint="creates and polls of this key hold; it is probed until it answers",
        )

    def probe_failed(self, key: str, exc: ProviderError) -> None:
        outage = self._keys.get(key)
        if outage is None:
            self.failed(key, exc)
            return
        now = self._clock()
        outage.failures += 1
        outage.error = str(exc)
        self._schedule(outage, now)

    def remind(self, now: datetime) -> None:
        """Say again, once every ``outage_log_every``, which keys still do not answer."""
        for key, outage in self._keys.items():
            if outage.returned or now - outage.last_line < self._settings.outage_log_every:
                continue
            outage.last_line = now
            log.warning(
                "dialer.voicedock.still_unreachable",
                key=key,
                since=outage.since.isoformat(),
                failures=outage.failures,
                next_probe_in_s=round((outage.next_probe - now).total_seconds(), 3),
                error=outage.error,
            )

    def returned(self, key: str) -> None:
        """A probe got an answer: look at the key's calls, reconcile it, then dial again."""
        outage = self._keys.get(key)
        if outage is None or outage.returned:
            return
        outage.returned = True
        log.info(
            "dialer.voicedock.reachable",
            key=key,
            outage_s=round((self._clock() - outage.since).total_seconds(), 3),
            failures=outage.failures,
            next="reconciliation, then dialling",
        )

    def reconciled(self, key: str) -> None:
        """Reconciliation ran for ``key`` since it came back: its dials may go out."""
        outage = self._keys.get(key)
        if outage is None or not outage.returned:
            return
        del self._keys[key]
        log.info("dialer.voicedock.dialling_resumes", key=key)

    def _schedule(self, outage: _KeyOutage, now: datetime) -> None:
        delay = self._settings.unreachable_backoff.delay(outage.failures, self._rng)
        outage.next_probe = now + delay
