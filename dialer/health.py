"""What ``/healthz`` and ``/readyz`` answer, decided from facts handed in (no I/O here).

- **healthy** (``/healthz``, for a supervisor deciding on a restart): the engine's loops are
  running and the heartbeat is fresh. Only the heartbeat loop is judged by how recently it
  passed: it never waits on VoiceDock, while the other loops may rightly wait out a 429's pause
  for many minutes (their last passes are reported, not judged). That the endpoint answers at
  all shows the event loop turns. While the daemon rides out a database outage its heartbeat
  cannot be written: its age is reported but not judged, since a restart would meet the same
  database (and lose the outage's back-off); ``/readyz`` says the database is unreachable.
- **ready** (``/readyz``): the database answers, its schema is this code's revision, and the
  clock is not held for skew. Account holds (401/402 of a key) and VoiceDock's reachability are
  reported in the body without making the daemon unready: a restart fixes none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

__all__ = ["Verdict", "liveness", "readiness"]

#: the heartbeat loop passes every tick; this many ticks without a pass (10 s at least) is a
#: stall, well before the other daemons would take over our dials (worker_ttl, 30 s)
STALL_TICKS = 10
MIN_STALL_S = 10.0


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """An endpoint's answer: 200 when ``ok``, else 503; ``body`` is its JSON."""

    ok: bool
    body: dict[str, Any]

    @property
    def status_code(self) -> int:
        return 200 if self.ok else 503


def liveness(
    *,
    running: bool,
    loop_passes: Mapping[str, float],
    last_heartbeat: datetime | None,
    now: datetime,
    now_monotonic: float,
    tick_s: float,
    worker_ttl: timedelta,
    database_outage: str | None = None,
) -> Verdict:
    """Healthy when the loops run, the heartbeat loop passed lately and the heartbeat is fresh.

    ``loop_passes`` are ``time.monotonic()`` stamps; ``now`` and ``last_heartbeat`` the
    engine's clock (the heartbeat row's time, which the other daemons judge);
    ``database_outage`` what the engine says of the outage it rides out, if any."""
    ages = {name: round(now_monotonic - at, 3) for name, at in sorted(loop_passes.items())}
    heartbeat_age = None if last_heartbeat is None else (now - last_heartbeat).total_seconds()
    problems: list[str] = []
    riding_out: list[str] = []
    if not running:
        status = "stopped" if loop_passes else "starting"
        problems.append("the engine's loops are not running")
    elif last_heartbeat is None:
        status = "starting"
        problems.append("no heartbeat written yet")
    else:
        stall = max(STALL_TICKS * tick_s, MIN_STALL_S)
        heartbeat_loop = ages.get("heartbeat")
        if heartbeat_loop is None or heartbeat_loop > stall:
            problems.append(f"the heartbeat loop has not passed for more than {stall:g} s")
        if heartbeat_age is not None and heartbeat_age > worker_ttl.total_seconds():
            stale = (
                f"the heartbeat is {heartbeat_age:.0f} s old: other daemons take this one for "
                f"dead after {worker_ttl.total_seconds():g} s"
            )
            if database_outage is None:
                problems.append(stale)
            else:
                riding_out.append(f"{stale}; riding out: {database_outage}")
        status = "unhealthy" if problems else "ok"
    return Verdict(
        ok=status == "ok",
        body={
            "status": status,
            "loops_last_pass_s": ages,
            "heartbeat_age_s": None if heartbeat_age is None else round(heartbeat_age, 3),
            "problems": problems,
            "riding_out": riding_out,
        },
    )


def readiness(
    *,
    database_problem: str | None,
    schema_problem: str | None,
    clock_skew: timedelta | None,
    account_holds: Mapping[str, str],
    voicedock: Mapping[str, str],
) -> Verdict:
    """Ready when the database answers with this code's schema and the clock is in sync.

    ``voicedock``: key name -> what is known of VoiceDock's reachability with it (empty until
    the engine keeps such a view, issue 17)."""
    problems = [
        problem
        for problem in (
            None if database_problem is None else f"database unreachable: {database_problem}",
            None if database_problem is not None else schema_problem,
            None
            if clock_skew is None
            else f"clock skewed by {clock_skew.total_seconds():+.1f} s from the database's: "
            "dialling and reconciliation are held",
        )
        if problem is not None
    ]
    return Verdict(
        ok=not problems,
        body={
            "status": "unready" if problems else "ready",
            "database": "unreachable" if database_problem is not None else "ok",
            "schema": (
                "unknown"
                if database_problem is not None
                else "current"
                if schema_problem is None
                else "mismatch"
            ),
            "clock_skew_s": None if clock_skew is None else round(clock_skew.total_seconds(), 3),
            "account_holds": dict(account_holds),
            "voicedock": dict(voicedock),
            "problems": problems,
        },
    )
