"""How long to wait before trying again something that keeps failing: the database while it is
away, the next probe of a VoiceDock key that does not answer. Pure maths, no I/O.

    >>> policy = Backoff(base=timedelta(seconds=1), cap=timedelta(minutes=1))
    >>> policy.step(1), policy.step(3), policy.step(20)
    (datetime.timedelta(seconds=1), datetime.timedelta(seconds=4), datetime.timedelta(seconds=60))
    >>> timedelta(seconds=30) <= policy.delay(20, random.Random(0)) <= timedelta(minutes=1)
    True

Exponential steps (base, 2·base, 4·base, ...) up to the cap, with "equal jitter": each wait is
drawn between half its step and the whole of it. The jitter spreads the tries of daemons that
lost the same database at the same instant; the lower half keeps every wait at least half a
step long, so no run of unlucky draws turns a back-off into a busy loop. The caller counts the
failures in a row and brings the random source (stamina's ``_compute_backoff``, in spirit).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import timedelta

__all__ = ["NO_BACKOFF", "Backoff"]


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Waits from ``base``, doubling with each failure in a row, never above ``cap``."""

    base: timedelta
    cap: timedelta

    def __post_init__(self) -> None:
        if not timedelta(0) <= self.base <= self.cap:
            raise ValueError(f"need 0 <= base <= cap, not {self.base} and {self.cap}")

    def step(self, failures: int) -> timedelta:
        """The wait without jitter after the ``failures``-th failure in a row (1: the first)."""
        if failures < 1:
            raise ValueError(f"failures count from 1, not {failures}")
        if not self.base:
            return self.base
        # past the doubling that reaches the cap, more doublings change nothing (and the
        # product would overflow timedelta after enough failures)
        enough = math.ceil(math.log2(self.cap / self.base)) if self.cap > self.base else 0
        return min(self.cap, self.base * (1 << min(failures - 1, enough)))

    def delay(self, failures: int, rng: random.Random) -> timedelta:
        """The wait after the ``failures``-th failure in a row, drawn within [step/2, step]."""
        half = self.step(failures) / 2
        return half + half * rng.random()

    def scaled(self, factor: float) -> Backoff:
        """The same policy ``factor`` times faster (time-scaled tests and simulations)."""
        return Backoff(base=self.base / factor, cap=self.cap / factor)


#: no waiting at all (tests that step time by hand)
NO_BACKOFF = Backoff(base=timedelta(0), cap=timedelta(0))
