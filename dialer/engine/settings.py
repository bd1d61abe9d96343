"""The engine's knobs and clock: what the config file maps onto (see dialer.daemon)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dialer.policy.backoff import Backoff
from dialer.policy.caps import FrequencyCap
from dialer.policy.outcomes import DEFAULT_OUTCOME_RULES, OutcomeRule
from dialer.policy.polling import PollPlan
from dialer.suppression import FileStamp

__all__ = [
    "DATABASE_BACKOFF",
    "ENDED_MEMORY",
    "FULL_RECOUNT_TICKS",
    "UNREACHABLE_BACKOFF",
    "YIELD_EVERY",
    "Clock",
    "EngineSettings",
    "utc_now",
]

Clock = Callable[[], datetime]

#: how many webhook-ended call ids are remembered to skip duplicate end reports cheaply
ENDED_MEMORY = 10_000
#: while every line is taken, the dispatcher re-counts them this often (in ticks) besides
#: being woken by the ends it sees
FULL_RECOUNT_TICKS = 5
#: attempts the dispatcher examines between two turns of the event loop
YIELD_EVERY = 32


#: a loop failing on the database tries again after 0.5 s, then 1, 2, 4, 8 s, then every 10 s
#: (each jittered): the database is cheap to ask, and dialling resumes soon after it returns
DATABASE_BACKOFF = Backoff(base=timedelta(seconds=0.5), cap=timedelta(seconds=10))
#: an unreachable VoiceDock key is probed after 1 s, then 2, 4, ... up to once a minute
UNREACHABLE_BACKOFF = Backoff(base=timedelta(seconds=1), cap=timedelta(minutes=1))


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class EngineSettings:
    """Knobs of the loops; the config file maps onto these (see dialer.config)."""

    worker_id: str = "dialer"
    max_concurrent_calls: int = 10
    poll: PollPlan = field(default_factory=PollPlan)
    stuck_after: timedelta = timedelta(minutes=30)
    #: how long an `unknown` call is still looked at for a late result
    late_result_horizon: timedelta = timedelta(hours=24)
    #: a dialing row older than this has no POST of ours still waiting for an answer
    create_timeout: timedelta = timedelta(seconds=30)
    #: a create that waited longer than this for the budget is re-checked and re-stamped
    #: before it is sent (see Dispatcher.may_still_send)
    send_recheck_after: timedelta = timedelta(seconds=5)
    reconcile_margin: timedelta = timedelta(minutes=2)
    reconcile_settle: timedelta = timedelta(seconds=30)
    reconcile_interval: timedelta = timedelta(seconds=15)
    #: fields of a listed call object that may hold the number we dialled (UNCONFIRMED upstream)
    destination_fields: tuple[str, ...] = ("caller_phone", "customer.number", "destination")
    account_recheck: timedelta = timedelta(minutes=1)
    #: the same campaign-level refusal of a create for this many different contacts in a row
    #: holds the campaign (dialer.policy.rejections)
    hold_after_rejections: int = 3
    #: while something only a person can fix holds dialling, it is logged again this often
    hold_log_every: timedelta = timedelta(minutes=5)
    outcome_rules: tuple[OutcomeRule, ...] = DEFAULT_OUTCOME_RULES
    suppressed: frozenset[str] = frozenset()
    #: the files ``suppressed`` was read from (with their stamps then), read again when they
    #: change, in this region
    suppression_files: tuple[tuple[Path, FileStamp | None], ...] = ()
    default_region: str | None = None
    frequency_cap: FrequencyCap | None = None
    #: a claimed poll is hidden from other daemons this long (until the claimer writes the next)
    poll_lease: timedelta = timedelta(seconds=30)
    #: a daemon whose heartbeat is older than this is dead: its dialing rows get reconciled
    worker_ttl: timedelta = timedelta(seconds=30)
    #: a clock further than this from the shared database's stops dialling and reconciling
    max_clock_skew: timedelta = timedelta(seconds=5)
    #: after a webhook's `ended` status-update, how long the end-of-call-report (the outcome's
    #: data) may take before a GET reads the call instead
    report_grace: timedelta = timedelta(seconds=30)
    #: how often the campaign files are looked at for an edit (see dialer.engine.watch)
    campaign_watch: timedelta = timedelta(seconds=5)
    #: how long an edited file must stay unchanged before it is read (an export being written)
    campaign_settle: timedelta = timedelta(seconds=2)
    #: how a loop whose statements fail (the database away: unreachable, locked, full) waits
    #: before its next try (dialer.engine.outages)
    database_backoff: Backoff = DATABASE_BACKOFF
    #: how often a VoiceDock key that does not answer is probed, growing to the cap
    unreachable_backoff: Backoff = UNREACHABLE_BACKOFF
    #: while an outage (database or VoiceDock) lasts, it is logged again this often
    outage_log_every: timedelta = timedelta(minutes=1)
    #: at a stop, how long POSTs already sent may take to be answered
    shutdown_grace: timedelta = timedelta(seconds=10)
    tick: float = 1.0  # seconds: the longest a loop sleeps without looking at the clock
    idle_horizon: timedelta = timedelta(minutes=5)
    seed: int | None = None
