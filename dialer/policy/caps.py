"""Frequency caps: at most ``count`` calls to one number in any ``period``, across campaigns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class FrequencyCap:
    count: int
    period: timedelta

    def __post_init__(self) -> None:
        if self.count < 1 or self.period <= timedelta(0):
            raise ValueError("a frequency cap needs count >= 1 and a period longer than zero")


def cap_next_allowed(
    cap: FrequencyCap, previous_calls: Sequence[datetime], now: datetime
) -> datetime:
    """``now`` if one more call fits, else when the oldest counted call leaves the period."""
    counted = sorted(t for t in previous_calls if now - cap.period < t <= now)
    if len(counted) < cap.count:
        return now
    return counted[len(counted) - cap.count] + cap.period
