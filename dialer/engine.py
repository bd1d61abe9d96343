"""The engine: the daemon's loops, the only place where policy, store and API client meet.

    APScheduler fire ──► Store.create_run (once per campaign and fire time)
                                │  planned attempts
                                ▼
    Dispatcher ── policy check (DNC, deadline, zone, window, cap) ──► defer / skip / expire
        │ allowed
        ├─► Store.begin_dialing      (committed BEFORE the POST)
        ├─► POST /calls/outbound     (through the one request budget)
        └─► in_flight | failed | planned (nothing placed) | dialing (ambiguous: reconcile)
    Follower ── GET /calls/{id} when due ──► record poll / outcome / unknown ──► retry plan
    Reconciler ── GET /calls?start_date=… ──► adopt the call, or release after a settle delay

Every decision takes ``now`` from the injected clock; the loops only decide *when* to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from aiolimiter import AsyncLimiter

from dialer.attempts import AttemptState
from dialer.campaign import Campaign, Contact
from dialer.errors import (
    AccountError,
    AmbiguousCreate,
    CreateWithdrawn,
    InvalidRequest,
    NotFound,
    ProviderError,
    RateLimited,
    StoreError,
    TransportFailure,
)
from dialer.policy.caps import FrequencyCap, cap_next_allowed
from dialer.policy.outcomes import DEFAULT_OUTCOME_RULES, Outcome, OutcomeRule, classify
from dialer.policy.polling import PollPlan, next_poll_at
from dialer.policy.reminders import ContactTiming, timing_bounds
from dialer.policy.retries import decide_retry, may_retry, next_attempt_at
from dialer.policy.timezones import ZoneResolution, resolve_zone
from dialer.store import (
    AttemptView,
    CallResult,
    ContactRecord,
    Retry,
    Store,
    TransitionRefused,
)
from dialer.suppression import FileStamp, LiveSuppression
from dialer.voicedock import Call, VoiceDockClient
from dialer.webhooks import WebhookEvent

log = structlog.get_logger("dialer.engine")

Clock = Callable[[], datetime]

#: how many webhook-ended call ids are remembered to skip duplicate end reports cheaply
ENDED_MEMORY = 10_000
#: while every line is taken, the dispatcher re-counts them this often (in ticks) besides
#: being woken by the ends it sees
FULL_RECOUNT_TICKS = 5
#: attempts the dispatcher examines between two turns of the event loop
YIELD_EVERY = 32


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
    #: before it is sent (see Engine._may_still_send)
    send_recheck_after: timedelta = timedelta(seconds=5)
    reconcile_margin: timedelta = timedelta(minutes=2)
    reconcile_settle: timedelta = timedelta(seconds=30)
    reconcile_interval: timedelta = timedelta(seconds=15)
    #: fields of a listed call object that may hold the number we dialled (UNCONFIRMED upstream)
    destination_fields: tuple[str, ...] = ("caller_phone", "customer.number", "destination")
    account_recheck: timedelta = timedelta(minutes=1)
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
    tick: float = 1.0  # seconds: the longest a loop sleeps without looking at the clock
    idle_horizon: timedelta = timedelta(minutes=5)
    seed: int | None = None


@dataclass(frozen=True, kw_only=True)
class Permit:
    """What allowed a dial now: the contact's zone, its reminder bounds and its recent calls."""

    zone: ZoneInfo
    #: further zones the contact may be in, where the window was open too
    also: tuple[ZoneInfo, ...]
    not_before: datetime | None
    deadline: datetime | None
    #: calls to the number within the frequency cap's period (0 without a cap)
    cap_calls: int


class Engine:
    """One daemon's worth of loops over one store and its VoiceDock clients (one per API key)."""

    def __init__(
        self,
        *,
        store: Store,
        clients: Mapping[str, VoiceDockClient],
        campaigns: Sequence[Campaign],
        settings: EngineSettings | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.store = store
        #: API key name -> its client; a call is created and followed with its campaign's key
        self.clients = dict(clients)
        self.settings = settings or EngineSettings()
        self.clock = clock
        self.campaigns: dict[str, Campaign] = {c.name: c for c in campaigns}
        #: the config's do-not-call files, then each campaign's own: additions apply at once
        self._dnc = LiveSuppression(
            self.settings.suppression_files,
            default_region=self.settings.default_region,
            numbers=self.settings.suppressed,
            field="dialer.suppression_files",
        )
        self._campaign_dnc = {
            c.name: LiveSuppression(
                c.suppression_files, default_region=c.region, numbers=c.suppressed
            )
            for c in campaigns
        }
        self._campaign_ids: dict[str, int] = {}
        self._rng = random.Random(self.settings.seed)
        self._pacers: dict[str, AsyncLimiter] = {}
        self._dialing_now: set[int] = set()
        self._dial_tasks: set[asyncio.Task[None]] = set()
        #: dial tasks whose POST has not gone out yet (waiting for the budget)
        self._unsent: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        #: API key name -> (held until, what is wrong): a 401/402 stops that key's creates only
        self._account_holds: dict[str, tuple[datetime, str]] = {}
        #: how far our clock is from the shared database's, when that is too far
        self.clock_skew: timedelta | None = None
        self._campaign_hold: dict[str, datetime] = {}
        self._last_reconcile: datetime | None = None
        #: the last dispatch found every line taken: only an ending call (or a tick) changes that
        self._full = False
        #: while listing (enough calls in flight), when the next list is due
        self._next_list: datetime | None = None
        self._missing_from_list: set[int] = set()
        #: call ids whose end a webhook already brought (oldest first), to skip duplicates
        self._ended_by_webhook: dict[str, None] = {}
        #: call id -> (by when, attempt id): an end came without its report (yet)
        self._awaiting_report: dict[str, tuple[datetime, int | None]] = {}
        #: call ids a webhook said were answered (oldest first): their end has a report
        self._answered: dict[str, None] = {}
        # looks in a row that showed nothing, per attempt in flight (see _unobserved)
        self._misses: dict[int, int] = {}
        #: an attempt became final since finish_runs last looked (or it never looked)
        self._runs_dirty = True
        self._last_finish_runs: datetime | None = None
        self._unserved_keys: set[str] = set()
        #: the earliest pending schedule fire, supplied by whoever runs the schedules
        self.upcoming_fire: Callable[[], datetime | None] = lambda: None
        self.stats: dict[str, int] = {
            "created": 0,
            "ended": 0,
            "ambiguous": 0,
            "adopted": 0,
            "released": 0,
            "unknown": 0,
            "deferred": 0,
            "skipped": 0,
        }

    # ------------------------------------------------------------------ setup
    def sync_campaigns(self) -> None:
        """Import every campaign definition (atomically each) and remember its id."""
        now = self.clock()
        for campaign in self.campaigns.values():
            self._campaign_ids[campaign.name] = self._sync_one(campaign, now)

    def _sync_one(self, campaign: Campaign, now: datetime) -> int:
        # Daemons starting together race to import the same campaign; the loser of the unique
        # name sees the winner's row on its next try.
        for attempt in range(3):
            try:
                return import_campaign(self.store, campaign, now=now)
            except StoreError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def fire(self, campaign_name: str, fire_time: datetime) -> int | None:
        """A schedule fired: create the run (once, whoever fires it) and wake the dispatcher."""
        campaign_id = self._campaign_ids[campaign_name]
        run_id = self.store.create_run(campaign_id, fire_time=fire_time, now=self.clock())
        log.info(
            "dialer.run.fired",
            campaign=campaign_name,
            fire_time=fire_time.isoformat(),
            run_id=run_id,
            created=run_id is not None,
        )
        self._wake.set()
        return run_id

    # ------------------------------------------------------------------ dispatch
    async def dispatch_once(self) -> int:
        """Start every dial that is due and fits the caps; returns how many POSTs were started."""
        # First, whatever holds dialling: a number added to a do-not-call list while we run
        # is not dialled from now on, nor sent after a wait for the budget (_lapsed).
        for dnc in (self._dnc, *self._campaign_dnc.values()):
            await dnc.refresh()
        now = self.clock()
        held = {key for key, (until, _) in self._account_holds.items() if now < until}
        if held >= self.clients.keys() or self.clock_skew is not None:
            self._full = False  # not counted: look again on the next tick
            return 0
        live = self.store.live_counts()
        capacity = self.settings.max_concurrent_calls - sum(live.values())
        self._full = capacity <= 0
        if self._full:
            return 0
        started = 0
        live_by_name = {name: live.get(cid, 0) for name, cid in self._campaign_ids.items()}
        # Pages a little larger than the free lines: some due attempts are deferred or closed
        # rather than dialled, and those leave the due set, so the next page holds new ones.
        # a call given up on while it was still ringing or talking may still be (see
        # phone_live), until its late results stop being looked for
        busy_since = now - self.settings.late_result_horizon
        examined = 0
        while started < capacity:
            page = (capacity - started) * 2 + 4
            batch = self.store.due_attempts(now=now, limit=page)
            moved = False
            for attempt in batch:
                if started >= capacity:
                    break
                examined += 1
                if examined % YIELD_EVERY == 0:
                    # A run firing outside its window defers every contact in one pass, a
                    # write each: the heartbeat, the polls and the sends must not stall behind
                    # it (a daemon silent past worker_ttl is taken for dead).
                    await asyncio.sleep(0)
                    now = self.clock()
                campaign = self.campaigns.get(attempt.campaign_name)
                if campaign is None:
                    continue  # its file is gone from the config: leave it planned, untouched
                if campaign.api_key_name in held or campaign.api_key_name not in self.clients:
                    continue
                hold = self._campaign_hold.get(campaign.name)
                if hold is not None and now < hold:
                    continue
                if (
                    campaign.max_concurrent_calls is not None
                    and live_by_name.get(campaign.name, 0) >= campaign.max_concurrent_calls
                ):
                    continue
                permit = self._check_policy(campaign, attempt, now)
                if permit is None:
                    moved = True  # deferred or closed: it left the due set
                    continue
                pacer = self._pacer(campaign)
                if pacer is not None and not pacer.has_capacity():
                    continue
                body = campaign.call_body(
                    _contact(attempt, campaign),
                    metadata={
                        "dialer_attempt_id": attempt.id,
                        "dialer_campaign": campaign.name,
                        "dialer_run_id": attempt.run_id,
                    },
                )
                moved = True  # dialled now, or by the worker that claimed it first
                if not self.store.begin_dialing(
                    attempt.id,
                    owner=self.settings.worker_id,
                    body=body,
                    now=now,
                    evidence=self._evidence(campaign, attempt, now, body, permit),
                    key_name=attempt.api_key_name,
                    busy_since=busy_since,
                ):
                    if self.store.phone_live(attempt.phone, busy_since=busy_since):
                        # One call at a time to a person: another campaign's (or run's) call
                        # to this number is under way; look again once it has likely ended.
                        # (Refused: another worker claimed this very attempt meanwhile.)
                        with contextlib.suppress(TransitionRefused):
                            self._defer(
                                attempt, now + self.settings.poll.expected_talk, "phone_busy", now
                            )
                    continue  # or another worker claimed it between our read and our write
                if pacer is not None:
                    await pacer.acquire()
                live_by_name[campaign.name] = live_by_name.get(campaign.name, 0) + 1
                self._dialing_now.add(attempt.id)
                task = asyncio.create_task(
                    self._dial(attempt, body, dialed_at=now), name=f"dial-{attempt.id}"
                )
                self._dial_tasks.add(task)
                self._unsent.add(task)
                task.add_done_callback(self._dial_tasks.discard)
                task.add_done_callback(self._unsent.discard)
                started += 1
            if len(batch) < page or not moved:
                break  # nothing more is due, or what is due waits on holds and caps
        return started

    def _pacer(self, campaign: Campaign) -> AsyncLimiter | None:
        if campaign.calls_per_minute is None:
            return None
        pacer = self._pacers.get(campaign.name)
        if pacer is None:
            pacer = self._pacers[campaign.name] = AsyncLimiter(campaign.calls_per_minute, 60)
        return pacer

    def _resolution(self, campaign: Campaign, attempt: AttemptView) -> ZoneResolution:
        return resolve_zone(
            attempt.phone,
            explicit=attempt.contact.timezone,
            campaign_zone=campaign.timezone,
            unknown_policy=campaign.unknown_timezone,
        )

    def _evidence(
        self,
        campaign: Campaign,
        attempt: AttemptView,
        now: datetime,
        body: Mapping[str, Any],
        permit: Permit,
    ) -> dict[str, Any]:
        """What the audit log keeps of a dial: the rules that allowed it, and the request."""
        zone, not_before, deadline = permit.zone, permit.not_before, permit.deadline
        cap = self.settings.frequency_cap
        evidence: dict[str, Any] = {
            "rule": "window",
            "window": campaign.window.describe(),
            "zone": str(zone),
            # a number that may be in several zones: the window was open in each of them
            **({"also_open_in": [str(z) for z in permit.also]} if permit.also else {}),
            "local_time": now.astimezone(zone).isoformat(),
            "attempt_no": attempt.attempt_no,
            "max_attempts": campaign.retry.max_attempts,
            "not_before": not_before.isoformat() if not_before else None,
            "deadline": deadline.isoformat() if deadline else None,
            "key": attempt.api_key_name,
            "request": {
                "method": "POST",
                "path": "/calls/outbound",
                "destination": attempt.phone,
                # The body itself is on the attempt row; the digest ties the two together.
                "body_sha256": hashlib.sha256(
                    json.dumps(body, sort_keys=True, default=str).encode()
                ).hexdigest(),
            },
        }
        if cap is not None:
            evidence["cap"] = {
                "calls": permit.cap_calls,
                "count": cap.count,
                "days": cap.period.days,
            }
        return evidence

    def _check_policy(
        self, campaign: Campaign, attempt: AttemptView, now: datetime
    ) -> Permit | None:
        """Apply every rule that may stop a dial now: None when it was stopped (deferred or
        closed), else what allowed it, which the audit log keeps.

        Order matters: permanent reasons (DNC, deadline, unknown zone) close the attempt before
        temporary ones (window, cap) defer it.
        """
        phone = attempt.phone
        if self._suppressed(campaign, phone):
            self._close(attempt, AttemptState.SKIPPED, "dnc", now)
            return None
        not_before, deadline = _bounds(campaign, attempt)
        if deadline is not None and now >= deadline:
            self._close(attempt, AttemptState.EXPIRED, "deadline", now)
            return None
        resolution = self._resolution(campaign, attempt)
        if resolution.zone is None:
            reason = resolution.reason or "unknown_timezone"
            self._close(attempt, AttemptState.SKIPPED, reason, now)
            return None
        start = max(now, not_before) if not_before is not None else now
        zones = resolution.zones
        if not campaign.window.allows_everywhere(start, zones):
            opens = campaign.window.next_allowed_everywhere(start, zones, deadline=deadline)
            if opens is None and deadline is None and len(zones) > 1:
                # its zones are too far apart for the window to be open in all at once
                self._close(
                    attempt,
                    AttemptState.SKIPPED,
                    "no_common_window",
                    now,
                    zones=[str(z) for z in zones],
                )
                return None
            if opens is None:
                self._close(
                    attempt,
                    AttemptState.EXPIRED,
                    "deadline",
                    now,
                    detail="no window before deadline",
                )
                return None
            start = opens
        cap_calls = 0
        if self.settings.frequency_cap is not None:
            cap = self.settings.frequency_cap
            calls = self.store.calls_since(phone, start - cap.period)
            cap_calls = len(calls)
            allowed = cap_next_allowed(cap, calls, start)
            if allowed > start:
                opens = campaign.window.next_allowed_everywhere(allowed, zones, deadline=deadline)
                if opens is None:
                    self._close(attempt, AttemptState.EXPIRED, "deadline", now, detail="cap")
                else:
                    self._defer(attempt, opens, "cap", now, zone=str(resolution.zone))
                return None
        if start > now:
            if not_before is not None and start == not_before:
                reason = "not_before"
            else:
                # Say *why* the window is shut today: a holiday or skip date, else the hours/days.
                today = (not_before if not_before and not_before > now else now).astimezone(
                    resolution.zone
                )
                reason = campaign.window.closed_reason(today.date()) or "window"
            self._defer(
                attempt,
                start,
                reason,
                now,
                zone=str(resolution.zone),
                local_time=start.astimezone(resolution.zone).isoformat(),
            )
            return None
        return Permit(
            zone=resolution.zone,
            also=resolution.also,
            not_before=not_before,
            deadline=deadline,
            cap_calls=cap_calls,
        )

    def _close(
        self, attempt: AttemptView, state: AttemptState, reason: str, now: datetime, **detail: Any
    ) -> None:
        self.store.close_unplaced(attempt.id, state=state, reason=reason, now=now, **detail)
        self._runs_dirty = True
        self.stats["skipped"] += 1
        log.info("dialer.attempt.closed", attempt_id=attempt.id, state=state.value, reason=reason)

    def _defer(
        self, attempt: AttemptView, until: datetime, reason: str, now: datetime, **detail: Any
    ) -> None:
        self.store.defer(attempt.id, due_at=until, reason=reason, now=now, **detail)
        self.stats["deferred"] += 1
        log.info(
            "dialer.attempt.deferred", attempt_id=attempt.id, reason=reason, until=until.isoformat()
        )

    async def _dial(
        self, attempt: AttemptView, body: Mapping[str, Any], *, dialed_at: datetime
    ) -> None:
        """Send the create of an attempt this daemon moved to `dialing` at ``dialed_at``.

        Every write that follows is pinned to that dial (``dialed_at``), so a row another
        daemon took over meanwhile is never overwritten with this POST's answer.
        """
        placed = False  # a placed call keeps its line: nothing new for the dispatcher

        def before_send() -> bool:
            nonlocal dialed_at
            sending = self._may_still_send(attempt, dialed_at)
            if sending is None:
                return False
            dialed_at = sending
            self._unsent.discard(asyncio.current_task())  # type: ignore[arg-type]
            return True

        def before_wait() -> None:
            # Nothing of this dial is out (not yet, or the last send was refused with a 429 or
            # never connected): a stop releases it rather than waiting for the re-send.
            self._unsent.add(asyncio.current_task())  # type: ignore[arg-type]

        try:
            try:
                created = await self.clients[attempt.api_key_name].create_call(
                    body, before_send=before_send, before_wait=before_wait
                )
            except asyncio.CancelledError:
                if asyncio.current_task() in self._unsent:
                    # Stopped while waiting for the budget: nothing went out, the dial is free.
                    self._release(attempt, "stopped", delay=timedelta(0), dialed_at=dialed_at)
                raise
            except CreateWithdrawn:
                self.stats["withdrawn"] = self.stats.get("withdrawn", 0) + 1
                return
            except AmbiguousCreate as exc:
                self._note_ambiguous(attempt, exc, dialed_at)
                return
            except RateLimited as exc:
                self._release(
                    attempt,
                    "rate_limited",
                    delay=timedelta(seconds=exc.retry_after),
                    exc=exc,
                    dialed_at=dialed_at,
                )
                return
            except TransportFailure as exc:
                self._release(
                    attempt,
                    "unreachable",
                    delay=self.settings.account_recheck / 4,
                    exc=exc,
                    dialed_at=dialed_at,
                )
                return
            except AccountError as exc:
                self._hold_account(attempt.api_key_name, exc)
                self._release(
                    attempt,
                    f"account:{type(exc).__name__}",
                    delay=self.settings.account_recheck,
                    exc=exc,
                    dialed_at=dialed_at,
                )
                return
            except NotFound as exc:
                # The assistant or number the campaign names is unknown: the campaign's fault, not
                # the contact's. Hold the campaign and say so; the contact keeps its turn.
                self._campaign_hold[attempt.campaign_name] = (
                    self.clock() + self.settings.account_recheck
                )
                log.error("dialer.campaign.held", campaign=attempt.campaign_name, error=str(exc))
                self._release(
                    attempt,
                    "campaign_config",
                    delay=self.settings.account_recheck,
                    exc=exc,
                    dialed_at=dialed_at,
                )
                return
            except InvalidRequest as exc:
                with self._unless_taken_over(attempt, "create_failed"):
                    self.store.mark_create_failed(
                        attempt.id,
                        error=str(exc),
                        now=self.clock(),
                        dialed_at=dialed_at,
                        response_status=exc.status_code,
                    )
                    log.warning(
                        "dialer.attempt.create_failed", attempt_id=attempt.id, error=str(exc)
                    )
                self._after_final(attempt)
                return
            except ProviderError as exc:
                # Anything else (an unreadable 2xx, say) leaves us unsure whether a call
                # exists: treat it as ambiguous, so reconciliation decides, never a re-dial.
                self._note_ambiguous(attempt, exc, dialed_at)
                return
            now = self.clock()
            self._account_clear(attempt.api_key_name)
            try:
                self.store.mark_in_flight(
                    attempt.id,
                    call_id=created.call_id,
                    now=now,
                    next_poll_at=next_poll_at(
                        self.settings.poll, status=None, now=now, dialed_at=now
                    ),
                    dialed_at=dialed_at,
                    response_status=created.http_status,
                )
            except TransitionRefused:
                # Someone resolved the attempt while our POST was out, which the re-stamp before
                # sending should make impossible. The call exists: keep its id on record.
                self._orphaned(attempt, created.call_id)
                return
            self.stats["created"] += 1
            log.info(
                "dialer.call.created",
                attempt_id=attempt.id,
                call_id=created.call_id,
                campaign=attempt.campaign_name,
            )
            placed = True
        finally:
            self._dialing_now.discard(attempt.id)
            if not placed:  # released, failed or ambiguous: the dispatcher may act again
                self._wake.set()

    def _may_still_send(self, attempt: AttemptView, dialed_at: datetime) -> datetime | None:
        """Asked just before a create goes out: the dial's new time, or None to withdraw it.

        A create that waited long for the budget (a 429 pause, another daemon's share) is
        looked at again: the window may have shut or the deadline passed; and its row is
        re-stamped, which fails if a reconciler took it over or the campaign was paused.
        """
        now = self.clock()
        if now - dialed_at < self.settings.send_recheck_after:
            return dialed_at
        campaign = self.campaigns.get(attempt.campaign_name)
        lapsed = "campaign_gone" if campaign is None else self._lapsed(campaign, attempt, now)
        if lapsed is None and self.store.confirm_sending(attempt.id, dialed_at=dialed_at, now=now):
            return now
        try:
            # Back to planned: the dispatcher applies every rule anew (defers, closes).
            self.store.release_unplaced(
                attempt.id,
                due_at=now,
                reason=f"withdrawn:{lapsed or 'campaign_inactive'}",
                now=now,
                dialed_at=dialed_at,
            )
        except TransitionRefused:
            log.warning("dialer.attempt.taken_over", attempt_id=attempt.id, stage="before_send")
            return None
        log.info("dialer.attempt.withdrawn", attempt_id=attempt.id, reason=lapsed)
        return None

    def _suppressed(self, campaign: Campaign, phone: str) -> bool:
        """On a do-not-call list of the config or of the campaign, as the files were at the
        last refresh (each dispatch pass)."""
        own = self._campaign_dnc.get(campaign.name)
        return phone in self._dnc.numbers or (own is not None and phone in own.numbers)

    def _lapsed(self, campaign: Campaign, attempt: AttemptView, now: datetime) -> str | None:
        """Which rule that allowed a queued dial no longer holds now, if any."""
        if self._suppressed(campaign, attempt.phone):
            return "dnc"
        _, deadline = _bounds(campaign, attempt)
        if deadline is not None and now >= deadline:
            return "deadline"
        zones = self._resolution(campaign, attempt).zones
        if not zones or not campaign.window.allows_everywhere(now, zones):
            return "window"
        return None

    @contextlib.contextmanager
    def _unless_taken_over(self, attempt: AttemptView, stage: str) -> Iterator[None]:
        """A pinned write refused: another daemon resolved this dial first; theirs stands."""
        try:
            yield
        except TransitionRefused:
            log.warning("dialer.attempt.taken_over", attempt_id=attempt.id, stage=stage)

    def _note_ambiguous(
        self, attempt: AttemptView, exc: ProviderError, dialed_at: datetime
    ) -> None:
        with self._unless_taken_over(attempt, "ambiguous"):
            self.store.note_ambiguous(
                attempt.id,
                error=str(exc),
                now=self.clock(),
                dialed_at=dialed_at,
                response_status=exc.status_code,
            )
            self.stats["ambiguous"] += 1
            log.warning("dialer.attempt.ambiguous", attempt_id=attempt.id, error=str(exc))

    def _orphaned(self, attempt: AttemptView, call_id: str) -> None:
        self.stats["orphaned"] = self.stats.get("orphaned", 0) + 1
        log.error("dialer.call.orphaned", attempt_id=attempt.id, call_id=call_id)
        self.store.add_event(
            at=self.clock(),
            kind="call.orphaned",
            campaign_id=attempt.campaign_id,
            attempt_id=attempt.id,
            call_id=call_id,
        )

    def _release(
        self,
        attempt: AttemptView,
        reason: str,
        *,
        delay: timedelta,
        dialed_at: datetime,
        exc: ProviderError | None = None,
    ) -> None:
        """The POST was answered (or never sent) so that we KNOW no call exists."""
        now = self.clock()
        with self._unless_taken_over(attempt, reason):
            self.store.release_unplaced(
                attempt.id,
                due_at=now + delay,
                reason=reason,
                now=now,
                dialed_at=dialed_at,
                response_status=exc.status_code if exc is not None else None,
            )
            self.stats["released"] += 1

    def _hold_account(self, key_name: str, exc: AccountError) -> None:
        now = self.clock()
        if key_name not in self._account_holds:
            log.error(
                "dialer.account.blocked",
                key=key_name,
                error=str(exc),
                kind=type(exc).__name__,
                recheck_in_s=self.settings.account_recheck.total_seconds(),
            )
        problem = f"{type(exc).__name__}: {exc}"
        self._account_holds[key_name] = (now + self.settings.account_recheck, problem)

    def _account_clear(self, key_name: str) -> None:
        cleared = self._account_holds.pop(key_name, None)
        if cleared is not None:
            log.info("dialer.account.cleared", key=key_name, was=cleared[1])

    @property
    def account_problem(self) -> str | None:
        """What is wrong with our account(s), or None; a key other than "default" is named."""
        if not self._account_holds:
            return None
        return "; ".join(
            problem if key == "default" else f"key {key}: {problem}"
            for key, (_, problem) in sorted(self._account_holds.items())
        )

    def requests_sent(self) -> Counter[tuple[str, str, int | str]]:
        """Every request sent so far, by (method, endpoint, status), summed over the keys."""
        total: Counter[tuple[str, str, int | str]] = Counter()
        for client in self.clients.values():
            total.update(client.requests_sent)
        return total

    # ------------------------------------------------------------------ follow
    async def follow_once(self, *, limit: int = 200) -> int:
        """Look at the calls that are due a look; returns how many calls were observed.

        Few calls in flight: one ``GET /calls/{id}`` per due call, timed by the poll plan.
        From ``list_threshold`` calls in flight on: one ``GET /calls?start_date=`` (all pages)
        every ``list_interval`` observes every one of them, so tracking costs about one
        request per interval instead of one per call.
        """
        now = self.clock()
        plan = self.settings.poll
        observed = await self._follow_unreported(now) if self._awaiting_report else 0
        if self._next_list is not None and now < self._next_list:
            # Listing: nothing is looked at (nor read from the store) between two lists.
            return observed
        in_flight = self.store.count_attempts(states=[AttemptState.IN_FLIGHT])
        if in_flight >= plan.list_threshold:
            self._next_list = now + plan.list_interval
            observed += await self._follow_by_list(now)
            # Only stragglers (unknown calls, calls missing from the list) are looked at one by one.
            due = self.store.claim_polls(
                now=now,
                limit=limit,
                lease=self.settings.poll_lease,
                stragglers=self._missing_from_list,
            )
        else:
            self._next_list = None
            due = self.store.claim_polls(now=now, limit=limit, lease=self.settings.poll_lease)
        if due:
            await asyncio.gather(*(self._follow(attempt) for attempt in due))
        return observed + len(due)

    async def _follow_unreported(self, now: datetime) -> int:
        """GET the calls whose `ended` status-update came but whose report did not in time."""
        overdue = [
            (call_id, attempt_id)
            for call_id, (by, attempt_id) in self._awaiting_report.items()
            if by <= now
        ]
        for call_id, _ in overdue:
            del self._awaiting_report[call_id]
        followed = [
            attempt
            for call_id, attempt_id in overdue
            if (attempt := self._attempt_of(call_id, attempt_id)) is not None
            and attempt.state in (AttemptState.IN_FLIGHT, AttemptState.UNKNOWN)
            and attempt.call_id is not None
        ]
        if followed:
            await asyncio.gather(*(self._follow(attempt) for attempt in followed))
        return len(followed)

    async def _follow_by_list(self, now: datetime) -> int:
        """One list (all pages) per API key covers every call that key has in flight."""
        by_key: dict[str, dict[str, AttemptView]] = defaultdict(dict)
        for a in self.store.attempts(states=[AttemptState.IN_FLIGHT]):
            if a.call_id is not None and self._client(a) is not None:
                by_key[a.api_key_name][a.call_id] = a
        seen = 0
        missing: set[int] = set()
        for key_name, followed in by_key.items():
            oldest = min(a.dialing_at or now for a in followed.values())
            try:
                calls = await self.clients[key_name].list_calls(
                    start_date=oldest - self.settings.reconcile_margin, only=followed.keys()
                )
            except ProviderError as exc:
                if isinstance(exc, AccountError):
                    self._hold_account(key_name, exc)
                else:
                    log.warning(
                        "dialer.poll.list_failed",
                        key=key_name,
                        error=str(exc),
                        in_flight=len(followed),
                    )
                # Each call falls back to its own GETs on its own schedule: a list that keeps
                # failing must not leave calls unfollowed (never ended, never `unknown`).
                missing.update(a.id for a in followed.values())
                continue
            for call in calls:
                attempt = followed.pop(call.id, None)
                if attempt is not None:
                    self.observe_call(attempt, call, listed=True)
                    seen += 1
            # Not listed (a clock skew beyond the margin, or an id the list spells differently):
            # fall back to a GET for each, on its own schedule.
            missing.update(a.id for a in followed.values())
        self._missing_from_list = missing
        return seen

    def _client(self, attempt: AttemptView) -> VoiceDockClient | None:
        """The client of the attempt's key; None (said once) when this daemon lacks that key."""
        client = self.clients.get(attempt.api_key_name)
        if client is None and attempt.api_key_name not in self._unserved_keys:
            self._unserved_keys.add(attempt.api_key_name)
            log.warning(
                "dialer.key.not_configured",
                key=attempt.api_key_name,
                campaign=attempt.campaign_name,
                hint="another daemon with this key follows these calls",
            )
        return client

    async def _follow(self, attempt: AttemptView) -> None:
        assert attempt.call_id is not None
        client = self._client(attempt)
        if client is None:
            self._push_poll(attempt, self.settings.poll_lease)
            return
        try:
            call = await client.get_call(attempt.call_id)
        except NotFound:
            self._unobserved(attempt, "call id not found")
            return
        except AccountError as exc:
            self._hold_account(attempt.api_key_name, exc)
            self._push_poll(attempt, self.settings.account_recheck)
            return
        except ProviderError as exc:
            log.warning("dialer.poll.failed", attempt_id=attempt.id, error=str(exc))
            self._unobserved(attempt, f"call unreadable: {exc}")
            return
        self.observe_call(attempt, call)

    def observe_call(self, attempt: AttemptView, call: Call, *, listed: bool = False) -> None:
        """Record what a poll, a list page or a webhook showed about a followed call.

        ``listed``: seen in a list, which looks at every call anyway; an unchanged status then
        writes nothing (the next look is the next list, not a time stored on the attempt).
        """
        now = self.clock()
        self._misses.pop(attempt.id, None)
        if call.terminal:
            outcome = classify(call.raw, self.settings.outcome_rules)
            # Decided before the write, so the retry is written with the outcome (see Retry).
            retry = (
                self._retry_after(attempt, outcome, call.ended_at or now)
                if attempt.state is AttemptState.IN_FLIGHT
                else None
            )
            recorded = self.store.record_outcome(
                attempt.id, result=_result(call, outcome), now=now, retry=retry
            )
            if recorded:
                self.stats["ended"] += 1
                log.info(
                    "dialer.call.ended",
                    attempt_id=attempt.id,
                    call_id=call.id,
                    outcome=outcome.value,
                    late=attempt.state is AttemptState.UNKNOWN,
                )
                self._after_final(attempt)
            return
        dialed = attempt.dialing_at or now
        if attempt.state is AttemptState.IN_FLIGHT and now - dialed >= self.settings.stuck_after:
            # Another daemon may have seen the end (or given up) after our read: it stands.
            with self._unless_taken_over(attempt, "stuck"):
                self.store.mark_unknown(
                    attempt.id,
                    now=now,
                    next_poll_at=now + self.settings.poll.late,
                    reason=f"still {call.status} after {self.settings.stuck_after}",
                )
                self.stats["unknown"] += 1
                log.warning(
                    "dialer.call.stuck", attempt_id=attempt.id, call_id=call.id, status=call.status
                )
            self._after_final(attempt)
            return
        unchanged = call.status == attempt.call_status
        if listed and unchanged and attempt.state is AttemptState.IN_FLIGHT:
            return
        nxt: datetime | None
        if attempt.state is AttemptState.UNKNOWN:
            late = self._late_look(dialed, now)
            nxt = None if late is None else now + late
        else:
            nxt = next_poll_at(
                self.settings.poll,
                status=call.status,
                now=now,
                dialed_at=dialed,
                answered_at=call.started_at,
            )
        self.store.record_poll(
            attempt.id, call_status=call.status, raw=call.raw, now=now, next_poll_at=nxt
        )

    async def on_webhook(self, event: WebhookEvent) -> None:
        """A verified webhook: record an ended call from its end-of-call-report (no GET spent),
        or push back the next look at a call that is known to be talking. Polling remains the
        fallback.

        An `ended` status-update is not the outcome: the report that follows carries the
        duration, summary, transcript and analysis, and a voicemail is told apart by them. It
        only starts a grace period after which a GET reads the call if no report came. So does
        an `ended-with-error` of a call that was answered (its conversation has a report);
        one that never connected carries all there is to know, and is recorded at once.
        """
        call_id = event.call_id
        if call_id and call_id in self._ended_by_webhook:
            return  # its end is recorded: a duplicate, or the status-update after the report
        talking = event.call.get("status") == "in-progress"
        if talking and call_id:
            _remember(self._answered, call_id)
        if not event.terminal and not (talking and self._next_list is None):
            return  # nothing to do with it: while listing, the list looks at the call anyway
        if event.awaits_report or (
            event.kind == "status-update" and event.terminal and call_id in self._answered
        ):
            if call_id and call_id not in self._awaiting_report:
                by = self.clock() + self.settings.report_grace
                self._awaiting_report[call_id] = (by, event.attempt_id)
            return
        attempt = self._attempt_of(call_id, event.attempt_id)
        if attempt is None or attempt.state not in (AttemptState.IN_FLIGHT, AttemptState.UNKNOWN):
            # Unknown to us, or still `dialing`: the create's answer or reconciliation will
            # adopt the call, and a poll will see the same result.
            log.info("dialer.webhook.ignored", call_id=call_id, kind=event.kind)
            return
        if event.terminal:
            # a report found by our metadata alone may lack the call's id: it is the attempt's
            self.observe_call(
                attempt, Call.from_api({**event.call, "id": call_id or attempt.call_id})
            )
            self.stats["webhooks"] = self.stats.get("webhooks", 0) + 1
            if call_id:
                self._awaiting_report.pop(call_id, None)
                self._answered.pop(call_id, None)
                _remember(self._ended_by_webhook, call_id)
        else:
            # Polled one by one: the call is talking, so its next look can wait.
            now = self.clock()
            self.store.reschedule_poll(
                attempt.id, next_poll_at=now + self.settings.poll.expected_talk, now=now
            )

    def _attempt_of(self, call_id: str | None, attempt_id: int | None) -> AttemptView | None:
        """The attempt a webhook is about: by call id, else by the attempt id our metadata
        carries (whether webhook call ids equal the create's is UNCONFIRMED, §4)."""
        attempt = self.store.attempt_by_call_id(call_id) if call_id else None
        if attempt is None and attempt_id is not None:
            with contextlib.suppress(StoreError):
                attempt = self.store.attempt(attempt_id)
        return attempt

    def _unobserved(self, attempt: AttemptView, reason: str) -> None:
        """A look that showed nothing: the call id is not found, or its GET keeps failing.

        A call we cannot see is given up on after ``stuck_after`` like one that never ends
        (it must not hold its line and its run for ever), and each miss in a row doubles the
        wait before the next look, up to ``poll.late``: a GET failing every few seconds for
        hours would eat a third of the budget."""
        now = self.clock()
        dialed = attempt.dialing_at or now
        if attempt.state is AttemptState.UNKNOWN:
            self._push_poll(attempt, self._late_look(dialed, now))
            return
        if now - dialed >= self.settings.stuck_after:
            self._misses.pop(attempt.id, None)
            with self._unless_taken_over(attempt, "unobserved"):
                self.store.mark_unknown(
                    attempt.id, now=now, next_poll_at=now + self.settings.poll.late, reason=reason
                )
                self.stats["unknown"] += 1
                log.warning("dialer.call.unobserved", attempt_id=attempt.id, reason=reason)
            self._after_final(attempt)
            return
        misses = self._misses[attempt.id] = self._misses.get(attempt.id, 0) + 1
        plan = self.settings.poll
        self._push_poll(attempt, min(plan.late, plan.ringing * 2 ** min(misses - 1, 16)))

    def _late_look(self, dialed: datetime, now: datetime) -> timedelta | None:
        """When to look again at an `unknown` call: every ``poll.late`` within the late-result
        horizon, then never (a webhook can still bring its result)."""
        if now - dialed < self.settings.late_result_horizon:
            return self.settings.poll.late
        return None

    def _push_poll(self, attempt: AttemptView, delay: timedelta | None) -> None:
        """Look again after ``delay``; None: never again."""
        now = self.clock()
        self.store.reschedule_poll(
            attempt.id, next_poll_at=None if delay is None else now + delay, now=now
        )

    def _retry_after(
        self, attempt: AttemptView, outcome: Outcome, ended_at: datetime
    ) -> Retry | None:
        """The retry this outcome earns under the campaign's rules, or None."""
        campaign = self.campaigns.get(attempt.campaign_name)
        if campaign is None or not may_retry(
            campaign.retry, outcome=outcome, attempts_made=attempt.attempt_no
        ):
            return None
        history = self.store.attempt_history(attempt.run_id, attempt.contact_id)
        # the attempt being recorded is not ended yet in the store: it counts as the same outcome
        same = 1 + sum(1 for a in history if a.id != attempt.id and a.outcome == outcome.value)
        decision = decide_retry(
            campaign.retry,
            outcome=outcome,
            attempts_made=attempt.attempt_no,
            same_outcome_count=same,
            ended_at=ended_at,
            rng=self._rng,
        )
        if not decision.retry or decision.not_before is None:
            return None
        _, deadline = _bounds(campaign, attempt)
        zones = self._resolution(campaign, attempt).zones
        if not zones:
            return None
        return Retry(
            after=attempt,
            outcome=outcome.value,
            due_at=next_attempt_at(decision, campaign.window, zones, deadline),
        )

    def _after_final(self, attempt: AttemptView) -> None:
        self._runs_dirty = True
        self._wake.set()

    # ------------------------------------------------------------------ reconcile
    async def reconcile_once(self) -> int:
        """Resolve attempts left in `dialing` with no POST of ours waiting on them.

        One `GET /calls?start_date=` (all pages) covers every such attempt. A call to the same
        destination created after the attempt's dial time (minus a margin for clock skew), not
        yet adopted by another attempt, is adopted. Only a confirmed absence after the settle
        delay releases the attempt for a new dial; while listing fails nothing is re-dialled.
        """
        if self.clock_skew is not None:
            return 0  # its judgements of age would be off by the skew (see check_clock)
        now = self.clock()
        me = self.settings.worker_id
        waiting_long = self.store.dialing_since(now - self.settings.create_timeout)
        if not waiting_long:
            return 0  # the usual case: every dial is younger than a create can take
        alive = self.store.live_workers(now=now, ttl=self.settings.worker_ttl) | {me}
        candidates = [
            a
            for a in waiting_long
            # ours with no POST still waiting, or left behind by a daemon that died
            if ((a.owner == me and a.id not in self._dialing_now) or a.owner not in alive)
            and self._client(a) is not None
        ]
        by_key: dict[str, list[AttemptView]] = defaultdict(list)
        for attempt in candidates:
            by_key[attempt.api_key_name].append(attempt)
        resolved = 0
        for key_name, waiting in by_key.items():
            resolved += await self._reconcile_key(key_name, waiting, now)
        if resolved:
            self._wake.set()
        return resolved

    async def _reconcile_key(
        self, key_name: str, candidates: Sequence[AttemptView], now: datetime
    ) -> int:
        """One list of the key's calls (all pages) settles every attempt it has waiting."""
        since = (
            min(a.dialing_at for a in candidates if a.dialing_at) - self.settings.reconcile_margin
        )
        try:
            calls = await self.clients[key_name].list_calls(start_date=since)
        except ProviderError as exc:
            log.warning(
                "dialer.reconcile.list_failed",
                key=key_name,
                error=str(exc),
                waiting=len(candidates),
            )
            return 0
        adopted_ids = self.store.known_call_ids([c.id for c in calls])
        resolved = 0
        for attempt in sorted(candidates, key=lambda a: a.dialing_at or now):
            match = self._match(attempt, calls, adopted_ids, self.store.request_body(attempt.id))
            # The POST went out at most send_recheck_after after dialing_at (else it was
            # re-stamped), and its answer came within create_timeout of that, or never.
            settled = now - attempt.dialing_at >= (  # type: ignore[operator]
                self.settings.send_recheck_after
                + self.settings.create_timeout
                + self.settings.reconcile_settle
            )
            if match is None and not settled:
                continue
            try:
                if match is not None:
                    adopted_ids.add(match.id)
                    self.store.mark_in_flight(
                        attempt.id,
                        call_id=match.id,
                        now=now,
                        adopted=True,
                        next_poll_at=now,
                        dialed_at=attempt.dialing_at,
                    )
                    self.stats["adopted"] += 1
                else:
                    self.store.release_unplaced(
                        attempt.id,
                        due_at=now,
                        reason="reconciled_absent",
                        now=now,
                        dialed_at=attempt.dialing_at,
                    )
                    self.stats["released"] += 1
            except TransitionRefused:
                continue  # another daemon resolved it first
            log.info(
                "dialer.attempt.reconciled",
                attempt_id=attempt.id,
                call_id=match.id if match else None,
                found=match is not None,
            )
            resolved += 1
        return resolved

    def _match(
        self,
        attempt: AttemptView,
        calls: Sequence[Call],
        taken: set[str],
        sent: Mapping[str, Any] | None,
    ) -> Call | None:
        """The earliest call not yet adopted that the dial's POST could have created.

        Judged by what was sent (``sent``, the stored body), not by the campaign file: an
        assistant or caller id edited since the dial would make its call look like another's,
        and the contact would be released and dialled twice."""
        assert attempt.dialing_at is not None
        earliest = attempt.dialing_at - self.settings.reconcile_margin
        # no body (never the case since begin_dialing keeps it): match on less, the safe side
        assistant_id, number_id = (sent or {}).get("assistant_id"), (sent or {}).get("number_id")
        best: Call | None = None
        for call in calls:
            if call.id in taken:
                continue
            if attempt.phone not in _destinations(call.raw, self.settings.destination_fields):
                continue
            if call.created_at is not None and call.created_at < earliest:
                continue
            if assistant_id and call.agent_id and call.agent_id != assistant_id:
                continue
            if number_id and call.number_id and call.number_id != number_id:
                continue
            if best is None or (call.created_at or earliest) < (best.created_at or earliest):
                best = call
        return best

    # ------------------------------------------------------------------ the daemon
    def is_idle(self) -> bool:
        """Nothing in flight and nothing due within the idle horizon."""
        if self._next_list is not None:
            return False  # listing: calls were in flight at the last list
        if self._dial_tasks or self.store.count_attempts(
            states=[AttemptState.DIALING, AttemptState.IN_FLIGHT]
        ):
            return False
        horizon = self.clock() + self.settings.idle_horizon
        return all(
            when is None or when > horizon
            for when in (self.store.next_due_at(), self.upcoming_fire())
        )

    async def run(
        self,
        stop: asyncio.Event,
        *,
        until_idle: bool = False,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        """Run the loops until ``stop`` is set (or, with ``until_idle``, until idle).

        Four named side tasks (heartbeat, dispatch, follow, housekeeping) share the stop
        event; if one dies the others are stopped and its exception is raised (a daemon never
        limps on with a dead loop). A stop does not wait for a loop held by the budget (a
        429's pause): the loops are cancelled, and only POSTs already sent are drained.
        """
        loops = [
            asyncio.create_task(self._heartbeat_loop(stop), name="heartbeat"),
            asyncio.create_task(self._dispatch_loop(stop), name="dispatch"),
            asyncio.create_task(self._follow_loop(stop), name="follow"),
            asyncio.create_task(
                self._housekeeping_loop(stop, until_idle, on_tick), name="housekeeping"
            ),
        ]
        stopped = asyncio.create_task(stop.wait(), name="stop")
        try:
            done, _ = await asyncio.wait([*loops, stopped], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is stopped:
                    continue
                if task.exception() is not None:
                    log.error(
                        "dialer.engine.loop_died",
                        loop=task.get_name(),
                        error=repr(task.exception()),
                    )
                    stop.set()
                    raise task.exception()  # type: ignore[misc]
        finally:
            stop.set()
            for task in [*loops, stopped]:
                task.cancel()
            await asyncio.gather(*loops, stopped, return_exceptions=True)
            # A create still waiting for the budget (a 429's pause) is not worth waiting for
            # at a stop: it is released unsent; only POSTs already out get their answer.
            for task in list(self._unsent):
                task.cancel()
            await self.drain()

    async def _dispatch_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            await self.dispatch_once()
            if self._full:
                # The ends this daemon sees wake it; an end another daemon sees (its poll, its
                # webhook) wakes that one, which may not serve the campaign that is due.
                seconds = self.settings.tick * FULL_RECOUNT_TICKS
            else:
                seconds = self._until(self.store.next_due_at())
            await _wait_any(stop, self._wake, seconds=seconds)

    async def _follow_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.follow_once()
            nxt = self._next_list if self._next_list is not None else self.store.next_poll_at()
            await _wait_any(stop, seconds=self._until(nxt))

    async def _housekeeping_loop(
        self, stop: asyncio.Event, until_idle: bool, on_tick: Callable[[], None] | None
    ) -> None:
        while not stop.is_set():
            now = self.clock()
            if (
                self._last_reconcile is None
                or now - self._last_reconcile >= self.settings.reconcile_interval
            ):
                self._last_reconcile = now
                # on this cadence, not after every outcome: a cancel is rare, the query is not
                self.store.cancel_stragglers(now=now)
                await self.reconcile_once()
            # Runs end when their last attempt does; another daemon's attempts end unseen by
            # us, hence the periodic look besides the one after each of ours.
            if (
                self._runs_dirty
                or self._last_finish_runs is None
                or now - self._last_finish_runs >= self.settings.reconcile_interval
            ):
                self._runs_dirty = False
                self._last_finish_runs = now
                self.store.finish_runs(now=now)
            if on_tick is not None:
                on_tick()
            if until_idle and self.is_idle():
                stop.set()
                return
            await _wait_any(stop, seconds=self.settings.tick)

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        """Tell the other daemons we are alive, in a loop of its own that never waits on the
        network: a heartbeat behind a budget wait (a long 429 pause) would have them take our
        queued dials for dead ones and reconcile them."""
        last_beat: datetime | None = None
        while not stop.is_set():
            now = self.clock()
            if last_beat is None or now - last_beat >= self.settings.worker_ttl / 3:
                self.check_clock()
                self.store.heartbeat(self.settings.worker_id, now=now)
                last_beat = now
            await _wait_any(stop, seconds=self.settings.tick)

    def check_clock(self) -> None:
        """Hold dialling and reconciliation while our clock is off from the shared database's.

        Daemons judge each other by timestamps: a clock half a minute behind makes a live
        daemon look dead to the others, and its fresh dials look old enough to be reconciled
        as absent and dialled again. Polls go on (they judge nothing across daemons)."""
        db_now = self.store.database_now()
        if db_now is None:
            return
        skew = self.clock() - db_now
        if abs(skew) <= self.settings.max_clock_skew:
            if self.clock_skew is not None:
                log.info("dialer.clock.in_sync", skew_s=round(skew.total_seconds(), 3))
            self.clock_skew = None
            return
        if self.clock_skew is None:
            log.error(
                "dialer.clock.skewed",
                skew_s=round(skew.total_seconds(), 3),
                allowed_s=self.settings.max_clock_skew.total_seconds(),
                hint="synchronise this host's clock (NTP); dialling holds until then",
            )
        self.clock_skew = skew

    def _until(self, when: datetime | None) -> float:
        """Seconds to sleep before ``when`` (never longer than a tick, never busy-looping)."""
        if when is None:
            return self.settings.tick
        return max(0.01, min(self.settings.tick, (when - self.clock()).total_seconds()))

    async def drain(self, grace_s: float = 10.0) -> None:
        """Let POSTs already sent get their answer, so their rows leave `dialing` cleanly."""
        if self._dial_tasks:
            await asyncio.wait(set(self._dial_tasks), timeout=grace_s)


def _remember(recent: dict[str, None], key: str) -> None:
    """Add to a bounded memory of call ids (a dict keeps insertion order: oldest first)."""
    recent[key] = None
    if len(recent) > ENDED_MEMORY:
        del recent[next(iter(recent))]


def _bounds(campaign: Campaign, attempt: AttemptView) -> tuple[datetime | None, datetime | None]:
    """(not_before, deadline) of the attempt's contact under its campaign's reminder rules."""
    contact = attempt.contact
    timing = ContactTiming(
        call_at=contact.call_at, appointment_at=contact.appointment_at, deadline=contact.deadline
    )
    return timing_bounds(timing, call_before=campaign.call_before, expires_at=campaign.expires_at)


def _destinations(raw: Mapping[str, Any], fields: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for dotted in fields:
        value: Any = raw
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, str):
            found.add(value)
    return found


def import_campaign(
    store: Store,
    campaign: Campaign,
    *,
    now: datetime,
    records: Callable[[Campaign], Iterable[ContactRecord]] | None = None,
) -> int:
    """A campaign's definition and contacts into the store, in one transaction; its id.

    ``records`` replaces the contact mapping (tests use it to fail part-way)."""
    return store.sync_campaign(
        name=campaign.name,
        source=str(campaign.source),
        definition_hash=campaign.definition_hash,
        api_key_name=campaign.api_key_name,
        contacts=(
            records(campaign)
            if records is not None
            else (contact_record(c) for c in campaign.contacts)
        ),
        now=now,
    )


def contact_record(contact: Contact) -> ContactRecord:
    """What the store keeps of a campaign's contact."""
    return ContactRecord(
        phone=contact.phone,
        name=contact.name,
        timezone=contact.timezone,
        variables=dict(contact.variables),
        call_at=contact.timing.call_at,
        appointment_at=contact.timing.appointment_at,
        deadline=contact.timing.deadline,
        source_line=contact.line,
    )


def _contact(attempt: AttemptView, campaign: Campaign) -> Contact:
    record = attempt.contact
    return Contact(
        phone=record.phone,
        name=record.name,
        timezone=record.timezone,
        timing=ContactTiming(
            call_at=record.call_at, appointment_at=record.appointment_at, deadline=record.deadline
        ),
        variables=dict(record.variables),
        source=campaign.source,
        line=record.source_line,
    )


def _result(call: Call, outcome: Outcome) -> CallResult:
    return CallResult(
        call_status=call.status,
        outcome=outcome.value,
        error=call.error,
        end_reason=call.end_reason,
        started_at=call.started_at,
        ended_at=call.ended_at,
        duration_seconds=call.duration_seconds,
        summary=call.summary,
        analysis_result=call.analysis_result,
        messages=call.messages,
        raw=dict(call.raw),
    )


async def _wait_any(*events: asyncio.Event, seconds: float) -> None:
    """Sleep until any event is set or the timeout passes."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
