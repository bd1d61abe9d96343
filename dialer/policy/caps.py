"""Frequency caps: at most ``count`` calls to one number in any ``period``, across campaigns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["FrequencyCap", "cap_next_allowed"]


@dataclass(frozen=True)
class FrequencyCap:
    """``FrequencyCap(2, timedelta(days=7))``: no number is called a third time within a week."""

    count: int
    period: timedelta

    def __post_init__(self) -> None:
        if self.count < 1 or self.period <= timedelta(0):
            raise ValueError("a frequency cap needs count >= 1 and a period longer than zero")


def cap_next_allowed(
    cap: FrequencyCap, previous_calls: Sequence[datetime], now: datetime
) -> datetime:
    """``now`` if one more call fits, else when the oldest counted call leaves the period.

    A call counts while it is less than ``period`` old. Calls stamped after ``now`` (another
    daemon's clock running ahead) count too: a cap errs towards calling less.
    """
    counted = sorted(t for t in previous_calls if t > now - cap.period)
    if len(counted) < cap.count:
        return now
    # Once this call leaves the period, count - 1 calls remain in it: room for one more.
    return max(now, counted[len(counted) - cap.count] + cap.period)
