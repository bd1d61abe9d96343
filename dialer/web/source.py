"""Where the status page reads from: the database every daemon shares, and the facts only the
daemon serving the page knows (its holds, its clock, its requests not yet written).

dialer.daemon builds one from the running engine; tests build one from a store alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dialer.store import Store

__all__ = ["DaemonFacts", "KeyHold", "StatusSource"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class KeyHold:
    """An API key VoiceDock refuses (401/403: the key, 402: the credits)."""

    key: str
    status: int | None
    since: datetime


@dataclass(frozen=True, kw_only=True)
class DaemonFacts:
    """What the serving daemon knows now that the database does not."""

    worker_id: str | None = None
    key_holds: Sequence[KeyHold] = ()
    #: how far this daemon's clock is from the database's, when too far to dial
    clock_skew: timedelta | None = None
    #: key name -> (requests, of them 429s) sent since its last write to the database
    unwritten_requests: Mapping[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class StatusSource:
    store: Store
    clock: Callable[[], datetime] = _utc_now
    #: a daemon whose heartbeat is older than this has stopped
    worker_ttl: timedelta = timedelta(seconds=30)
    #: requests per minute VoiceDock allows each API key (the config's)
    key_limits: Mapping[str, int] = field(default_factory=dict)
    facts: Callable[[], DaemonFacts] = DaemonFacts
