"""The engine: one daemon's loops over its actors, the only place where they are timed.

    APScheduler fire ──► Store.create_run (once per campaign and fire time)
    dispatch loop   ──► Dispatcher.dispatch_once   (woken by ends and releases, or when due)
    follow loop     ──► Follower.follow_once       (when a look or a list is due)
    housekeeping    ──► Reconciler.reconcile_once, stragglers, finished runs (on a cadence),
                        probes of VoiceDock keys that do not answer, fires the database missed
    heartbeat       ──► Store.heartbeat, Holds.judge_clock (never waits on the network)

Every decision takes ``now`` from the injected clock; the loops only decide *when* to run.
A pass that meets the database away (StoreUnavailable) does not end its loop: the loop backs
off and runs the pass again (dialer.engine.outages), so the daemon rides an outage out.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import structlog

from dialer.attempts import AttemptState
from dialer.campaign import Campaign, Contact
from dialer.engine.dispatch import Dispatcher
from dialer.engine.follow import Follower
from dialer.engine.holds import AccountHold, Holds
from dialer.engine.outages import DatabaseWatch, Outage, Reachability
from dialer.engine.reconcile import Reconciler
from dialer.engine.settings import FULL_RECOUNT_TICKS, Clock, EngineSettings, utc_now
from dialer.engine.shared import Shared, Suppression
from dialer.engine.watch import CampaignWatch
from dialer.errors import (
    AccountError,
    NeedsAPerson,
    ProviderError,
    StoreError,
    StoreUnavailable,
    TransportFailure,
)
from dialer.policy.fires import missed_fire
from dialer.store import AttemptView, CampaignState, ContactRecord, Store
from dialer.voicedock import Call, VoiceDockClient
from dialer.webhooks import WebhookEvent

__all__ = ["Engine", "contact_record", "import_campaign"]

log = structlog.get_logger("dialer.engine")


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
        settings = settings or EngineSettings()
        # the outages' jitter draws from its own source: an outage leaves the retries' draws
        # (and so a seeded run's schedule) as they would have been
        jitter = random.Random(None if settings.seed is None else settings.seed + 1)
        self._shared = Shared(
            store=store,
            clients=dict(clients),
            settings=settings,
            clock=clock,
            campaigns={c.name: c for c in campaigns},
            holds=Holds(settings, clock),
            database=DatabaseWatch(settings, clock, jitter),
            reachability=Reachability(settings, clock, jitter),
            suppression=Suppression(settings, campaigns),
            rng=random.Random(settings.seed),
        )
        self._dispatcher = Dispatcher(self._shared)
        self._follower = Follower(self._shared)
        self._reconciler = Reconciler(self._shared)
        self._watch = CampaignWatch(self._shared, import_campaign=self._sync_one)
        self._last_reconcile: datetime | None = None
        self._last_finish_runs: datetime | None = None
        #: loop name -> time.monotonic() of its last pass (the health endpoint reads it)
        self._loop_passes: dict[str, float] = {}
        #: how many passes each loop made (how often it woke: a busy loop shows here)
        self.loop_pass_counts: Counter[str] = Counter()
        #: whether run() is running its loops
        self.running = False
        #: when (by our clock) this daemon last wrote its heartbeat
        self.last_heartbeat: datetime | None = None
        #: schedule fires whose run the database could not take yet, oldest first
        self._pending_fires: list[tuple[str, datetime]] = []
        #: keys back from an outage that a reconciliation pass has already been run for
        self._reconciled_returns: set[str] = set()
        #: with until_idle: what only a person can fix, which everything left waits on
        self.needs_person: str | None = None
        self._last_hold_reminder: datetime | None = None
        #: the earliest pending schedule fire, supplied by whoever runs the schedules
        self.upcoming_fire: Callable[[], datetime | None] = lambda: None

    # ------------------------------------------------------------------ what others read
    @property
    def store(self) -> Store:
        return self._shared.store

    @property
    def clients(self) -> Mapping[str, VoiceDockClient]:
        return self._shared.clients

    @property
    def settings(self) -> EngineSettings:
        return self._shared.settings

    @property
    def clock(self) -> Clock:
        return self._shared.clock

    @property
    def campaigns(self) -> Mapping[str, Campaign]:
        return self._shared.campaigns

    @property
    def stats(self) -> dict[str, int]:
        return self._shared.stats

    @property
    def clock_skew(self) -> timedelta | None:
        """How far our clock is from the shared database's, when that is too far."""
        return self._shared.holds.clock_skew

    @property
    def account_problem(self) -> str | None:
        """What is wrong with our account(s), or None; a key other than "default" is named."""
        return self._shared.holds.account_problem

    @property
    def account_holds(self) -> Mapping[str, str]:
        """API key name -> what is wrong with it, for each key whose creates are held."""
        return self._shared.holds.account_holds

    @property
    def key_holds(self) -> list[AccountHold]:
        """The API keys VoiceDock refuses, each with its status (what the status page shows)."""
        return self._shared.holds.key_holds()

    @property
    def loop_passes(self) -> Mapping[str, float]:
        """Loop name -> ``time.monotonic()`` of its last pass, for the loops that ran."""
        return dict(self._loop_passes)

    def _passing(self, loop: str) -> None:
        self._loop_passes[loop] = time.monotonic()
        self.loop_pass_counts[loop] += 1

    @property
    def database_outage(self) -> Outage | None:
        """The database outage this daemon is riding out (unreachable, locked, full), or None."""
        return self._shared.database.outage

    @property
    def voicedock_outages(self) -> Mapping[str, Outage]:
        """API key name -> "VoiceDock unreachable since …" (or back and reconciling, its dials
        still held), for every key that is; empty when VoiceDock answers every key."""
        return self._shared.reachability.outages

    def requests_sent(self) -> Counter[tuple[str, str, int | str]]:
        """Every request sent so far, by (method, endpoint, status), summed over the keys."""
        total: Counter[tuple[str, str, int | str]] = Counter()
        for client in self._shared.clients.values():
            total.update(client.requests_sent)
        return total

    # ------------------------------------------------------------------ setup
    def sync_campaigns(self) -> None:
        """Import every campaign definition (atomically each) and remember its id."""
        shared = self._shared
        now = shared.clock()
        for campaign in shared.campaigns.values():
            shared.campaign_ids[campaign.name] = self._sync_one(campaign, now)

    def _sync_one(self, campaign: Campaign, now: datetime) -> int:
        # Daemons starting together race to import the same campaign; the loser of the unique
        # name sees the winner's row on its next try.
        for attempt in range(3):
            try:
                return import_campaign(self._shared.store, campaign, now=now)
            except StoreError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @property
    def on_campaign_replaced(self) -> Callable[[Campaign, Campaign], None] | None:
        """Told (old, new) when an edited campaign file replaced a campaign (see watch)."""
        return self._watch.on_replaced

    @on_campaign_replaced.setter
    def on_campaign_replaced(self, handler: Callable[[Campaign, Campaign], None] | None) -> None:
        self._watch.on_replaced = handler

    async def refresh_campaigns(self) -> int:
        """Read the campaign files again where they changed (see dialer.engine.watch)."""
        return await self._watch.refresh()

    def fire(self, campaign_name: str, fire_time: datetime) -> int | None:
        """A schedule fired: create the run (once, whoever fires it) and wake the dispatcher.

        With the database away the fire is kept and housekeeping creates its run later
        (keyed on the fire time, a try that did commit unseen creates nothing the second time)."""
        try:
            return self._create_run(campaign_name, fire_time)
        except StoreUnavailable as exc:
            self._shared.database.noticed(exc, by="fire")
            self._pending_fires.append((campaign_name, fire_time))
            log.warning(
                "dialer.run.fire_deferred",
                campaign=campaign_name,
                fire_time=fire_time.isoformat(),
                error=str(exc),
            )
            return None

    def _retry_fires(self) -> None:
        """Create the runs of fires the database could not take (raises while it cannot)."""
        while self._pending_fires:
            campaign_name, fire_time = self._pending_fires[0]
            self._create_run(campaign_name, fire_time)
            self._pending_fires.pop(0)

    def _create_run(self, campaign_name: str, fire_time: datetime) -> int | None:
        shared = self._shared
        campaign_id = shared.campaign_ids[campaign_name]
        run_id = shared.store.create_run(campaign_id, fire_time=fire_time, now=shared.clock())
        log.info(
            "dialer.run.fired",
            campaign=campaign_name,
            fire_time=fire_time.isoformat(),
            run_id=run_id,
            created=run_id is not None,
        )
        shared.wake.set()
        return run_id

    def catch_up(self) -> list[int]:
        """At start: the latest cron fire missed while no daemon ran, fired now when it is
        within the campaign's ``misfire_grace`` (once: a run is keyed by its fire time, so a
        second daemon or a restart catches up nothing more), else only logged and recorded
        for `dialer status`. Returns the runs created."""
        shared = self._shared
        now = shared.clock()
        created: list[int] = []
        for campaign in shared.campaigns.values():
            if campaign.cron is None:
                continue  # one-off starts fire however late; see daemon._schedule
            campaign_id = shared.campaign_ids[campaign.name]
            runs = shared.store.runs(campaign_id)
            stored = shared.store.campaign(campaign.name)
            assert stored is not None, "campaigns are synced before they are caught up"
            since = max((r.fire_time for r in runs), default=stored.created_at)
            missed = missed_fire(
                _fires_after(campaign),
                since=since,
                now=now,
                grace=campaign.misfire_grace,
            )
            if missed is None:
                continue
            fields = {
                "campaign": campaign.name,
                "fire_time": missed.fire_time.astimezone(UTC).isoformat(),
                "late_s": round(missed.late_by(now).total_seconds()),
                "earlier_missed": missed.earlier,
            }
            if not missed.catch_up:
                log.warning(
                    "dialer.run.missed",
                    **fields,
                    misfire_grace_s=campaign.misfire_grace.total_seconds(),
                )
                last = shared.store.last_event(campaign_id, ["run.missed"])
                if last is None or last.data.get("fire_time") != fields["fire_time"]:
                    shared.store.add_event(
                        at=now,
                        kind="run.missed",
                        campaign_id=campaign_id,
                        fire_time=fields["fire_time"],
                        late_s=fields["late_s"],
                        earlier_missed=missed.earlier,
                    )
                continue
            run_id = shared.store.create_run(campaign_id, fire_time=missed.fire_time, now=now)
            if run_id is None:
                continue  # another daemon caught it up first
            created.append(run_id)
            log.info("dialer.run.caught_up", **fields, run_id=run_id)
            shared.store.add_event(
                at=now,
                kind="run.caught_up",
                campaign_id=campaign_id,
                run_id=run_id,
                fire_time=fields["fire_time"],
                late_s=fields["late_s"],
                earlier_missed=missed.earlier,
            )
        if created:
            shared.wake.set()
        return created

    # ------------------------------------------------------------------ one pass of each actor
    async def dispatch_once(self) -> int:
        """Start every dial that is due and fits the caps; returns how many POSTs were started."""
        return await self._dispatcher.dispatch_once()

    async def follow_once(self, *, limit: int = 200) -> int:
        """Look at the calls that are due a look; returns how many calls were observed."""
        return await self._follower.follow_once(limit=limit)

    async def reconcile_once(self) -> int:
        """Resolve attempts left in `dialing` with no POST of ours waiting on them."""
        return await self._reconciler.reconcile_once()

    async def probe_unreachable(self) -> int:
        """One request to each key whose VoiceDock did not answer, when its probe is due;
        returns how many answered (their dials wait for reconcile_once)."""
        shared = self._shared
        answered = 0
        now = shared.clock()
        shared.reachability.remind(now)
        for key in shared.reachability.probes_due(now):
            try:
                await shared.clients[key].probe()
            except TransportFailure as exc:
                shared.reachability.probe_failed(key, exc)
                continue
            except AccountError as exc:
                shared.holds.hold_account(key, exc)  # an answer all the same
            except ProviderError:
                pass  # an answer all the same (a 429, a 5xx): it is reachable
            shared.reachability.returned(key)
            answered += 1
        return answered

    def observe_call(self, attempt: AttemptView, call: Call, *, listed: bool = False) -> None:
        """Record what a poll, a list page or a webhook showed about a followed call."""
        self._follower.observe_call(attempt, call, listed=listed)

    async def on_webhook(self, event: WebhookEvent) -> None:
        """A verified webhook (see Follower.on_webhook). Raises StoreUnavailable when the
        database cannot take it now (the receiver answers 503; a poll reads the call later)."""
        database = self._shared.database
        if database.wait_s(self._shared.clock()) > 0:
            # Not this delivery's turn to try a database that is away (each try may hold the
            # event loop for the lock wait): asked for again, and our polls read the call.
            raise StoreUnavailable("the database is unavailable; not tried")
        try:
            await self._follower.on_webhook(event)
        except StoreUnavailable as exc:
            database.noticed(exc, by="webhook")
            raise

    def check_clock(self) -> None:
        """Hold dialling and reconciliation while our clock is off from the shared database's."""
        self._shared.holds.judge_clock(self._shared.store.database_now())

    # ------------------------------------------------------------------ the daemon
    def needs_a_person(self) -> str | None:
        """What only a person can fix, when everything this daemon has left to do waits on it
        (a held campaign, an API key VoiceDock refuses); None while anything else is under
        way or due within the idle horizon, or nothing is held."""
        shared = self._shared
        if self._follower.listing or self._pending_fires or self._dispatcher.dial_tasks:
            return None
        if shared.store.count_attempts(states=[AttemptState.DIALING, AttemptState.IN_FLIGHT]):
            return None
        horizon = shared.clock() + shared.settings.idle_horizon
        fire = self.upcoming_fire()
        if fire is not None and fire <= horizon:
            return None
        refused_keys = {hold.key: hold for hold in shared.holds.key_holds()}
        reasons: list[str] = []
        for record in shared.store.campaigns():
            if record.name not in shared.campaigns or record.state not in (
                CampaignState.ACTIVE,
                CampaignState.HELD,
            ):
                continue
            due = shared.store.campaign_next_due_at(record.id)
            if due is None:
                continue
            if record.state is CampaignState.HELD:
                reasons.append(
                    f"campaign {record.name!r} is held: {record.hold_reason}; fix the "
                    f"campaign file, or run `dialer resume {record.name}`"
                )
            elif record.api_key_name in refused_keys:
                hold = refused_keys[record.api_key_name]
                reasons.append(
                    f"campaign {record.name!r} waits for API key {hold.key!r}, which VoiceDock "
                    f"refuses: {hold.problem}"
                )
            elif due <= horizon:
                return None  # something a daemon can do itself
        return "; ".join(reasons) or None

    def _remind_holds(self, now: datetime) -> None:
        """Say again, every ``hold_log_every``, what holds dialling until a person acts: a
        long-running daemon's log shows it wherever one looks, not only at the moment it began."""
        shared = self._shared
        every = shared.settings.hold_log_every
        if self._last_hold_reminder is not None and now - self._last_hold_reminder < every:
            return
        self._last_hold_reminder = now
        for record in shared.store.campaigns():
            if record.state is CampaignState.HELD and record.name in shared.campaigns:
                log.error(
                    "dialer.campaign.held",
                    campaign=record.name,
                    reason=record.hold_reason,
                    since=record.hold.since.isoformat() if record.hold else None,
                    hint="fix the campaign file (the daemon reads it again), or `dialer resume "
                    f"{record.name}`",
                    reminder=True,
                )
        for hold in shared.holds.key_holds():
            log.error(
                "dialer.account.blocked",
                key=hold.key,
                error=hold.problem,
                since=hold.since.isoformat(),
                reminder=True,
            )

    def is_idle(self) -> bool:
        """Nothing in flight and nothing due within the idle horizon."""
        shared = self._shared
        if self._follower.listing or self._pending_fires:
            return False  # listing: calls were in flight at the last list
        if self._dispatcher.dial_tasks or shared.store.count_attempts(
            states=[AttemptState.DIALING, AttemptState.IN_FLIGHT]
        ):
            return False
        horizon = shared.clock() + shared.settings.idle_horizon
        return all(
            when is None or when > horizon
            for when in (shared.store.next_due_at(), self.upcoming_fire())
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
        limps on with a dead loop). The database away does not kill a loop: it backs off and
        tries again. A stop does not wait for a loop held by the budget (a 429's pause) or by
        an outage: the loops are cancelled, and only POSTs already sent are drained, for at
        most ``shutdown_grace``.
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
        self.running = True
        try:
            done, _ = await asyncio.wait([*loops, stopped], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is stopped:
                    continue
                error = task.exception()
                if error is not None:
                    log.error("dialer.engine.loop_died", loop=task.get_name(), error=repr(error))
                    stop.set()
                    raise error
        finally:
            self.running = False
            stop.set()
            self._shared.stopping = True
            self._shared.database.release_waiters()
            for task in [*loops, stopped]:
                task.cancel()
            await asyncio.gather(*loops, stopped, return_exceptions=True)
            self._dispatcher.release_unsent()
            await self.drain(self._shared.settings.shutdown_grace.total_seconds())
        if self.needs_person is not None:
            raise NeedsAPerson(self.needs_person)

    async def _turn(self, stop: asyncio.Event) -> bool:
        """Whether the loop may run its pass: at once, unless the database is away; then at
        its turn to try it (DatabaseWatch.take_turn). False when stopped meanwhile."""
        await self._shared.database.take_turn(self._shared.settings.tick)
        return not stop.is_set()

    async def _dispatch_loop(self, stop: asyncio.Event) -> None:
        shared = self._shared
        while not stop.is_set():
            self._passing("dispatch")
            if not await self._turn(stop):
                continue
            shared.wake.clear()
            try:
                await self._watch.refresh()
                await self._dispatcher.dispatch_once()
                if self._dispatcher.full:
                    # The ends this daemon sees wake it; an end another daemon sees (its poll,
                    # its webhook) wakes that one, which may not serve the campaign that is due.
                    seconds = shared.settings.tick * FULL_RECOUNT_TICKS
                else:
                    # while due attempts wait for their campaign's pace, until its next slot
                    seconds = self._until(
                        self._dispatcher.next_pass_at(shared.store.next_due_at(), shared.clock())
                    )
            except StoreUnavailable as exc:
                shared.database.failed(exc, loop="dispatch")
                continue
            shared.database.passed("dispatch")
            await _wait_any(stop, shared.wake, seconds=seconds)

    async def _follow_loop(self, stop: asyncio.Event) -> None:
        database = self._shared.database
        while not stop.is_set():
            self._passing("follow")
            if not await self._turn(stop):
                continue
            try:
                await self._follower.follow_once()
                seconds = self._until(self._follower.next_look())
            except StoreUnavailable as exc:
                database.failed(exc, loop="follow")
                continue
            database.passed("follow")
            await _wait_any(stop, seconds=seconds)

    async def _housekeeping_loop(
        self, stop: asyncio.Event, until_idle: bool, on_tick: Callable[[], None] | None
    ) -> None:
        database = self._shared.database
        while not stop.is_set():
            self._passing("housekeeping")
            if not await self._turn(stop):
                continue
            try:
                idle = await self._housekeeping_pass(until_idle, on_tick)
            except StoreUnavailable as exc:
                database.failed(exc, loop="housekeeping")
                continue
            database.passed("housekeeping")
            if idle:
                stop.set()
                return
            await _wait_any(stop, seconds=self._shared.settings.tick)

    async def _housekeeping_pass(
        self, until_idle: bool, on_tick: Callable[[], None] | None
    ) -> bool:
        """One round of housekeeping; True when the engine is idle and should stop."""
        shared = self._shared
        interval = shared.settings.reconcile_interval
        await self.probe_unreachable()
        self._retry_fires()
        now = shared.clock()
        returned = shared.reachability.awaiting_reconciliation()
        if (
            self._last_reconcile is None
            or now - self._last_reconcile >= interval
            # a key back from an outage dials again only once reconciled: at once, then (if
            # its list failed) on the cadence
            or returned - self._reconciled_returns
        ):
            self._reconciled_returns = returned
            # on this cadence, not after every outcome: a cancel is rare, the query is not
            shared.store.cancel_stragglers(now=now)
            await self._reconciler.reconcile_once()
            self._last_reconcile = now
        # Runs end when their last attempt does; another daemon's attempts end unseen by
        # us, hence the periodic look besides the one after each of ours.
        if (
            shared.runs_dirty
            or self._last_finish_runs is None
            or now - self._last_finish_runs >= interval
        ):
            shared.store.finish_runs(now=now)
            shared.runs_dirty = False
            self._last_finish_runs = now
        self._remind_holds(now)
        if on_tick is not None:
            on_tick()
        if until_idle and (reason := self.needs_a_person()) is not None:
            log.error("dialer.daemon.needs_a_person", reason=reason)
            self.needs_person = reason
            return True
        return until_idle and self.is_idle()

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        """Tell the other daemons we are alive, in a loop of its own that never waits on the
        network: a heartbeat behind a budget wait (a long 429 pause) would have them take our
        queued dials for dead ones and reconcile them. With the database away the beat is
        tried again at its turn, and the dispatcher claims nothing while it is overdue
        (DatabaseWatch.beat_overdue)."""
        shared = self._shared
        last_beat: datetime | None = None
        while not stop.is_set():
            self._passing("heartbeat")
            now = shared.clock()
            due = last_beat is None or now - last_beat >= shared.settings.worker_ttl / 3
            if due and shared.database.wait_s(now) <= 0:
                try:
                    self.check_clock()
                    shared.store.heartbeat(shared.settings.worker_id, now=now)
                except StoreUnavailable as exc:
                    shared.database.failed(exc, loop="heartbeat")
                else:
                    last_beat = self.last_heartbeat = now
                    shared.database.beat(now)
                    shared.database.passed("heartbeat")
                    if shared.store.dialect == "postgresql":
                        # the daemons sharing the keys' budgets split what the creates leave
                        # (a failure here keeps the last count: the beat itself went through)
                        with contextlib.suppress(StoreUnavailable):
                            live = shared.store.live_workers(
                                now=now, ttl=shared.settings.worker_ttl
                            )
                            shared.daemons = max(1, len(live))
            await _wait_any(stop, seconds=shared.settings.tick)

    def _until(self, when: datetime | None) -> float:
        """Seconds to sleep before ``when`` (never longer than a tick, never busy-looping)."""
        tick = self._shared.settings.tick
        if when is None:
            return tick
        return max(0.01, min(tick, (when - self._shared.clock()).total_seconds()))

    async def drain(self, grace_s: float = 10.0) -> None:
        """Let POSTs already sent get their answer, so their rows leave `dialing` cleanly
        (for at most ``grace_s``: what is left is reconciled by the next start)."""
        await self._dispatcher.drain(grace_s)


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
        repeat=campaign.repeat,
        done_when=sorted(o.value for o in campaign.done_when),
        contacts=(
            records(campaign)
            if records is not None
            else (contact_record(c) for c in campaign.contacts)
        ),
        now=now,
        # a campaign past its expiry takes no new contact, whatever its file says
        plan_new=campaign.expires_at is None or now < campaign.expires_at,
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
        key=contact.key,
    )


def _fires_after(campaign: Campaign) -> Callable[[datetime], datetime | None]:
    """The campaign schedule's first fire strictly after a given instant."""
    trigger = campaign.trigger()

    def after(instant: datetime) -> datetime | None:
        fire: datetime | None = trigger.get_next_fire_time(instant, instant)
        return fire

    return after


async def _wait_any(*events: asyncio.Event, seconds: float) -> None:
    """Sleep until any event is set or the timeout passes."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
