"""A campaign's figures for the page: its attempts per state and outcome, its newest run's
progress, its skipped contacts per reason.

Counting them reads an index from end to end (the store's ``state_counts`` and friends): a
few milliseconds for a small campaign, some 150 ms for a million contacts on the team machine.
A page must answer as fast for either, so a campaign of more than ``BIG`` attempts is counted
at most once per ``max_age`` (the page's refresh), in a thread of its own, and its pages
answer from the last count meanwhile: its figures are at most one refresh and one count old.
Smaller campaigns are counted afresh for every page.

The first count after a start has no earlier one to answer from: a page ``glance``s, which
counts a campaign that is not big (its attempts counted no further than ``BIG`` + 1) there
and then, and a big one in the background, waiting at most ``wait_s``
for it; the page says "counting…" meanwhile and its next refresh has the figures. What must
be complete (the needs-a-person list, its CSV) waits with ``of``.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from dialer.attempts import FINAL_STATES, AttemptState
from dialer.errors import StoreError
from dialer.store import Group, RunProgress, Store

__all__ = ["BIG", "FigureCounter", "Figures"]

log = structlog.get_logger("dialer.web")

#: attempts above which a campaign's figures are counted in the background
BIG = 50_000
#: the states whose reasons the campaign page breaks down
REASONED = frozenset({AttemptState.SKIPPED, AttemptState.EXPIRED})


@dataclass(frozen=True, kw_only=True)
class Figures:
    #: attempts per (state, outcome), as `dialer status` counts them
    counts: dict[tuple[str, str | None], int]
    progress: RunProgress | None
    #: skipped and expired attempts per (state, reason)
    skipped: dict[Group, int]
    #: time.monotonic() when they were counted
    counted_at: float

    @property
    def attempts(self) -> int:
        return sum(self.counts.values())


def count(store: Store, campaign_id: int) -> Figures:
    counts = store.state_counts(campaign_id)
    unsettled: dict[AttemptState, int] = defaultdict(int)
    for (state, _), n in counts.items():
        if AttemptState(state) not in FINAL_STATES:
            unsettled[AttemptState(state)] += n
    return Figures(
        counts=counts,
        progress=store.run_progress(campaign_id, unsettled=unsettled),
        skipped=store.reason_counts(campaign_id, REASONED),
        counted_at=time.monotonic(),
    )


class FigureCounter:
    """Each campaign's latest figures; a big campaign's recounted in the background."""

    def __init__(
        self,
        store: Store,
        *,
        max_age_s: float,
        big: int = BIG,
        clock: Callable[[], float] = time.monotonic,
        spawn: Callable[[Callable[[], None], str], None] | None = None,
    ) -> None:
        """``spawn(work, name)`` runs a recount (default: a daemon thread; tests run it at
        once)."""
        self._store = store
        self._max_age_s = max_age_s
        self._big = big
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: dict[int, Figures] = {}
        self._counting: dict[int, threading.Event] = {}
        self._spawn = spawn or _in_a_thread

    def of(self, campaign_id: int) -> Figures:
        """The campaign's figures, counted now when there are none yet."""
        with self._lock:
            latest = self._latest.get(campaign_id)
        if latest is None or latest.attempts <= self._big:
            return self._count(campaign_id)  # the first count, or a small campaign's
        if self._clock() - latest.counted_at > self._max_age_s:
            self._recount_in_background(campaign_id)
        return latest

    def glance(self, campaign_id: int, *, wait_s: float) -> Figures | None:
        """``of`` for a page, except that a first count is made in the background and
        waited for at most ``wait_s``: None while it takes longer."""
        with self._lock:
            latest = self._latest.get(campaign_id)
        if (
            latest is not None
            or self._store.attempts_up_to(campaign_id, self._big + 1) <= self._big
        ):
            return self.of(campaign_id)
        self._recount_in_background(campaign_id).wait(wait_s)
        with self._lock:
            return self._latest.get(campaign_id)

    def _count(self, campaign_id: int) -> Figures:
        figures = count(self._store, campaign_id)
        with self._lock:
            self._latest[campaign_id] = figures
        return figures

    def _recount_in_background(self, campaign_id: int) -> threading.Event:
        """Start a count unless one is under way; the event is set when it ends."""
        with self._lock:
            if campaign_id in self._counting:
                return self._counting[campaign_id]
            done = self._counting[campaign_id] = threading.Event()

        def recount() -> None:
            try:
                self._count(campaign_id)
            except StoreError as exc:  # the page keeps the last count; the next view retries
                log.warning("dialer.web.count_failed", campaign_id=campaign_id, error=str(exc))
            finally:
                with self._lock:
                    del self._counting[campaign_id]
                done.set()

        self._spawn(recount, f"count-campaign-{campaign_id}")
        return done


def _in_a_thread(work: Callable[[], None], name: str) -> None:
    threading.Thread(target=work, name=name, daemon=True).start()
