"""The dispatcher: every due attempt through the dial gate, then its create, exactly once.

due attempt ── gate (DNC, deadline, zone, window, cap) ──► defer / skip / expire
    │ allowed
    ├─► Store.take_pace_slot     (calls_per_minute: the campaign's slot, shared by all daemons)
    ├─► Store.begin_dialing      (committed BEFORE the POST)
    ├─► POST /calls/outbound     (through the one request budget; the pace slot re-stamped
    │                             with the instant it goes out)
    └─► in_flight | failed | planned (nothing placed) | dialing (ambiguous: reconcile)

With the database away, nothing is dialled: no claim commits, and a create queued before the
first failure is confirmed again (a write) before it goes out; the answer of a POST already
out is recorded as soon as the database takes it (see dialer.engine.outages).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from dialer.attempts import AttemptState
from dialer.campaign import Campaign
from dialer.engine.holds import CampaignRefusal, rejection_of
from dialer.engine.settings import YIELD_EVERY
from dialer.engine.shared import Shared, contact_of
from dialer.errors import (
    AccountError,
    AmbiguousCreate,
    CreateWithdrawn,
    InvalidRequest,
    NotFound,
    ProviderError,
    RateLimited,
    StoreUnavailable,
    TransportFailure,
)
from dialer.policy.gate import Allow, Close, Defer
from dialer.policy.pacing import Pace
from dialer.policy.polling import next_poll_at
from dialer.policy.rejections import Blame, Rejection, blame, hold_threshold
from dialer.store import AttemptView, TransitionRefused
from dialer.voicedock import CreatedCall

__all__ = ["Dispatcher"]

log = structlog.get_logger("dialer.engine")


@dataclass
class PaceGrant:
    """A create slot of a paced campaign, granted to this daemon at ``at``: the pace row then
    holds ``tat``, which only this grant's own re-stamp or give-back may move (a compare-and-set
    on that value), so the slot's owner can tell whether another grant came since."""

    campaign: str
    pace: Pace
    at: datetime
    tat: datetime


class Dispatcher:
    """Starts the dials that are due and fit the caps; owns the dial tasks until answered."""

    def __init__(self, shared: Shared) -> None:
        self._shared = shared
        #: campaign -> the instant its pace frees the next slot, as the shared row last told us
        self._paced_until: dict[str, datetime] = {}
        #: the earliest of those that held back a due attempt in the last pass: the dispatcher
        #: has nothing to do for those attempts before then (see next_pass_at)
        self.paced_until: datetime | None = None
        self.dial_tasks: set[asyncio.Task[None]] = set()
        #: dial tasks whose POST has not gone out yet (waiting for the budget)
        self._unsent: set[asyncio.Task[None]] = set()
        #: the last pass found every line taken: only an ending call (or a tick) changes that
        self.full = False
        #: which campaign's page is read first in the next pass (see _turn_order)
        self._first_turn = 0

    async def dispatch_once(self) -> int:
        """Start every dial that is due and fits the caps; returns how many POSTs were started."""
        shared = self._shared
        settings, store = shared.settings, shared.store
        # First, whatever holds dialling: a number added to a do-not-call list while we run
        # is not dialled from now on, nor sent after a wait for the budget (_lapsed).
        await shared.suppression.refresh()
        now = shared.clock()
        self.paced_until = None
        # an API key refused (401/402), or whose VoiceDock does not answer or is not
        # reconciled since it came back
        held = shared.holds.held_keys(now) | shared.reachability.held_keys()
        if (
            held >= shared.clients.keys()
            or shared.holds.clock_skew is not None
            # the others may be about to take us for dead: a claim now could be theirs soon
            or shared.database.beat_overdue(now)
        ):
            self.full = False  # not counted: look again on the next tick
            shared.lines_wanted = False
            return 0
        live = self._lines_taken(store.live_counts())
        capacity = settings.max_concurrent_calls - sum(live.values())
        self.full = capacity <= 0
        if self.full:
            return 0
        due = store.next_due_at()
        if due is None or due > now:
            shared.lines_wanted = False  # nobody waits for a line: the follower's tail
            return 0  # one read, not one per campaign, when nothing is due
        started = 0
        live_by_name = {name: live.get(cid, 0) for name, cid in shared.campaign_ids.items()}
        # a call given up on while it was still ringing or talking may still be (see
        # phone_live), until its late results stop being looked for
        busy_since = now - settings.late_result_horizon
        examined = 0
        #: slots granted in this pass whose attempt another daemon claimed first: the next
        #: attempt of the campaign takes it, and what is left is given back after the pass
        #: (a pass the database interrupts loses it: the pace is then a slot slower, never faster)
        spare: dict[str, PaceGrant] = {}
        # Campaign by campaign, a page each in turn: the oldest due attempts of a campaign that
        # cannot dial (its cap, its pace, its key's budget counted in its lines) must not fill
        # every page so that the others' are never reached. The first turn moves on each pass,
        # so free lines fewer than the campaigns' wants do not always go to the same one.
        turn = self._turn_order()
        # a campaign at its own max_concurrent_calls with attempts due (or maybe due: a full
        # campaign is skipped before any read) waits for its lines as much as one at the
        # daemon's: its ends are dials too
        capped = False
        while started < capacity and turn:
            again: list[Campaign] = []
            for campaign in turn:
                if started >= capacity:
                    break
                room = capacity - started
                if campaign.max_concurrent_calls is not None:
                    room = min(
                        room, campaign.max_concurrent_calls - live_by_name.get(campaign.name, 0)
                    )
                if room <= 0:
                    capped = True
                    continue  # before any read: nothing of it can go out now
                if not self._may_dial(campaign, held, spare, now):
                    continue
                # Pages a little larger than the free lines: some due attempts are deferred or
                # closed rather than dialled, and those leave the due set, so the next page
                # holds new ones.
                page = room * 2 + 4
                batch = store.due_attempts_of(
                    shared.campaign_ids[campaign.name], now=now, limit=page
                )
                moved = False
                stopped = False
                for attempt in batch:
                    if started >= capacity:
                        stopped = True
                        break
                    if (
                        campaign.max_concurrent_calls is not None
                        and live_by_name.get(campaign.name, 0) >= campaign.max_concurrent_calls
                    ):
                        stopped = capped = True
                        break
                    examined += 1
                    if examined % YIELD_EVERY == 0:
                        # A run firing outside its window defers every contact in one pass, a
                        # write each: the heartbeat, the polls and the sends must not stall
                        # behind it (a daemon silent past worker_ttl is taken for dead).
                        await asyncio.sleep(0)
                        now = shared.clock()
                    if not self._may_dial(campaign, held, spare, now):
                        stopped = True
                        break
                    permit = self._check_policy(campaign, attempt, now)
                    if permit is None:
                        moved = True  # deferred or closed: it left the due set
                        continue
                    grant = spare.pop(campaign.name, None)
                    if grant is None and campaign.calls_per_minute is not None:
                        grant = self._take_slot(campaign.name, Pace(campaign.calls_per_minute), now)
                        if grant is None:
                            stopped = True  # its pace holds it: no write, it stays due
                            break
                    body = campaign.call_body(
                        contact_of(attempt, campaign),
                        metadata={
                            "dialer_attempt_id": attempt.id,
                            "dialer_campaign": campaign.name,
                            "dialer_run_id": attempt.run_id,
                        },
                    )
                    moved = True  # dialled now, or by the worker that claimed it first
                    if not store.begin_dialing(
                        attempt.id,
                        owner=settings.worker_id,
                        body=body,
                        now=now,
                        evidence=self._evidence(campaign, attempt, now, body, permit),
                        key_name=attempt.api_key_name,
                        busy_since=busy_since,
                    ):
                        if grant is not None:
                            spare[campaign.name] = grant
                        if store.phone_live(attempt.phone, busy_since=busy_since):
                            # One call at a time to a person: another campaign's (or run's)
                            # call to this number is under way; look again once it has
                            # likely ended. (Refused: another worker claimed this very
                            # attempt meanwhile.)
                            with contextlib.suppress(TransitionRefused):
                                self._defer(
                                    attempt, now + settings.poll.expected_talk, "phone_busy", now
                                )
                        continue  # or another worker claimed it between our read and our write
                    live_by_name[campaign.name] = live_by_name.get(campaign.name, 0) + 1
                    shared.dialing_now.add(attempt.id)
                    shared.holds.sending(campaign.name)
                    task = asyncio.create_task(
                        self._dial(attempt, body, dialed_at=now, grant=grant),
                        name=f"dial-{attempt.id}",
                    )
                    self.dial_tasks.add(task)
                    self._unsent.add(task)
                    task.add_done_callback(self.dial_tasks.discard)
                    task.add_done_callback(self._unsent.discard)
                    started += 1
                # another page of it in the next turn, unless nothing more of it is due, or
                # what is due waits on its holds and caps
                if not stopped and moved and len(batch) == page:
                    again.append(campaign)
            turn = again
        for grant in spare.values():
            self._give_back(grant)
        # every free line taken: more are likely due (while full, the last answer stands)
        shared.lines_wanted = started >= capacity or capped
        return started

    def _lines_taken(self, live: dict[int, int]) -> dict[int, int]:
        """Campaign id -> the lines its calls take: those the store counts live, less the calls
        known over whose outcome is awaited (Shared.ended_unrecorded), once the store confirms
        each is still counted (an end recorded since, here or by another daemon, would
        otherwise free its line twice)."""
        ended = self._shared.ended_unrecorded
        if not ended:
            return live
        still = self._shared.store.live_among(ended.keys())
        for attempt_id in ended.keys() - still.keys():
            del ended[attempt_id]
        for campaign_id in still.values():
            live[campaign_id] = live.get(campaign_id, 0) - 1
        return live

    def _turn_order(self) -> list[Campaign]:
        """The campaigns this daemon may dial for, the first of them one further each pass."""
        shared = self._shared
        order = [c for name, c in shared.campaigns.items() if name in shared.campaign_ids]
        if not order:
            return order
        first = self._first_turn % len(order)
        self._first_turn = first + 1
        return order[first:] + order[:first]

    def _may_dial(
        self, campaign: Campaign, held: set[str], spare: Mapping[str, PaceGrant], now: datetime
    ) -> bool:
        """Whether a due attempt of the campaign could go out now, as far as the campaign's
        key, its holds and its pace tell (its cap and the free lines are counted apart)."""
        shared = self._shared
        if campaign.api_key_name in held or campaign.api_key_name not in shared.clients:
            return False
        if not shared.holds.may_send(campaign.name, self._threshold(campaign)):
            return False  # not proven yet: its creates out are all it may risk
        # before the gate: its checks would only be done again
        return campaign.name in spare or not self._paced(campaign.name, now)

    def _threshold(self, campaign: Campaign) -> int:
        return hold_threshold(self._shared.settings.hold_after_rejections, len(campaign.contacts))

    # ------------------------------------------------------------------ the pace
    def _paced(self, campaign: str, now: datetime) -> bool:
        """Whether the campaign's pace is known to hold its next create until later than now
        (then the attempt waits, and the pass notes when to look again)."""
        until = self._paced_until.get(campaign)
        if until is None or until <= now:
            return False
        self.paced_until = until if self.paced_until is None else min(self.paced_until, until)
        return True

    def _take_slot(self, campaign: str, pace: Pace, now: datetime) -> PaceGrant | None:
        """The campaign's next create slot from its shared pace row, or None while the pace
        holds it (until when is noted)."""
        slot = self._shared.store.take_pace_slot(campaign, now=now, pace=pace)
        # granted or not, nothing more of this campaign before the row's next slot
        self._paced_until[campaign] = slot.tat if slot.granted else now + slot.wait
        if not slot.granted:
            self._paced(campaign, now)
            return None
        return PaceGrant(campaign=campaign, pace=pace, at=now, tat=slot.tat)

    def _give_back(self, grant: PaceGrant) -> None:
        """A slot this pass took and did not use: the row goes back to the grant's instant, so
        the next create may start at once, unless another grant came since (then it stays)."""
        if self._shared.store.move_pace_slot(grant.campaign, expected=grant.tat, to=grant.at):
            self._paced_until.pop(grant.campaign, None)

    def _keep_slot(self, attempt: AttemptView, grant: PaceGrant, dialed_at: datetime) -> bool:
        """Asked just before the create goes out: the slot is re-stamped with this instant, so
        the next create of the campaign starts a whole interval after this one really did,
        however long this one waited for the request budget. If another grant came meanwhile
        (this create waited longer than the interval), sending now could put two creates
        closer than the pace allows: the attempt goes back to planned, to be paced again."""
        shared = self._shared
        now = shared.clock()
        due = now + grant.pace.interval
        if due <= grant.tat:
            return True  # sent at the instant it was granted: the row is right as it is
        try:
            if shared.store.move_pace_slot(grant.campaign, expected=grant.tat, to=due):
                grant.tat = due  # a re-send (after a 429) re-stamps from here
                self._paced_until[grant.campaign] = due
                return True
            shared.store.release_unplaced(
                attempt.id, due_at=now, reason="withdrawn:pace", now=now, dialed_at=dialed_at
            )
        except (TransitionRefused, StoreUnavailable) as exc:
            self._not_sent(attempt, exc)
            return False
        log.info("dialer.attempt.withdrawn", attempt_id=attempt.id, reason="pace")
        return False

    def _not_sent(self, attempt: AttemptView, exc: TransitionRefused | StoreUnavailable) -> None:
        """A create checked just before it goes out that the store could not let through:
        another worker took the attempt over, or the database is away (then the row stays
        `dialing`, for reconciliation to release)."""
        if isinstance(exc, TransitionRefused):
            log.warning("dialer.attempt.taken_over", attempt_id=attempt.id, stage="before_send")
            return
        self._shared.database.noticed(exc, by="dial")
        log.info("dialer.attempt.withdrawn", attempt_id=attempt.id, reason="database")

    def next_pass_at(self, due: datetime | None, now: datetime) -> datetime | None:
        """When the dispatcher has something to do: the next attempt's due time, but while
        the due attempts wait for their campaign's pace, the next slot (not a busy loop)."""
        if self.paced_until is not None and (due is None or due <= now):
            return self.paced_until
        return due

    def _evidence(
        self,
        campaign: Campaign,
        attempt: AttemptView,
        now: datetime,
        body: Mapping[str, Any],
        permit: Allow,
    ) -> dict[str, Any]:
        """What the audit log keeps of a dial: the rules that allowed it, and the request."""
        zone, not_before, deadline = permit.zone, permit.not_before, permit.deadline
        cap = self._shared.settings.frequency_cap
        evidence: dict[str, Any] = {
            "rule": "window",
            # the window the gate judged: with the contact's own holiday calendar, if asked
            "window": permit.window.describe(),
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
    ) -> Allow | None:
        """The dial gate's answer, applied: None when the attempt was deferred or closed, else
        what allowed the dial, which the audit log keeps."""
        shared = self._shared
        cap = shared.settings.frequency_cap
        recent = () if cap is None else shared.store.calls_since(attempt.phone, now - cap.period)
        decision = shared.decide(campaign, attempt, now, recent_calls=recent)
        if isinstance(decision, Close):
            self._close(attempt, decision.state, decision.reason, now, **decision.detail)
            return None
        if isinstance(decision, Defer):
            self._defer(attempt, decision.until, decision.reason, now, **decision.detail)
            return None
        return decision

    def _close(
        self, attempt: AttemptView, state: AttemptState, reason: str, now: datetime, **detail: Any
    ) -> None:
        self._shared.store.close_unplaced(attempt.id, state=state, reason=reason, now=now, **detail)
        self._shared.runs_dirty = True
        self._shared.count("skipped")
        log.info("dialer.attempt.closed", attempt_id=attempt.id, state=state.value, reason=reason)

    def _defer(
        self, attempt: AttemptView, until: datetime, reason: str, now: datetime, **detail: Any
    ) -> None:
        self._shared.store.defer(attempt.id, due_at=until, reason=reason, now=now, **detail)
        self._shared.count("deferred")
        log.info(
            "dialer.attempt.deferred", attempt_id=attempt.id, reason=reason, until=until.isoformat()
        )

    async def _dial(
        self,
        attempt: AttemptView,
        body: Mapping[str, Any],
        *,
        dialed_at: datetime,
        grant: PaceGrant | None = None,
    ) -> None:
        """Send the create of an attempt this daemon moved to `dialing` at ``dialed_at``.

        Every write that follows is pinned to that dial (``dialed_at``), so a row another
        daemon took over meanwhile is never overwritten with this POST's answer.
        """
        shared = self._shared
        placed = False  # a placed call keeps its line: nothing new for the dispatcher
        this = asyncio.current_task()
        assert this is not None

        def before_send() -> bool:
            nonlocal dialed_at
            sending = self._may_still_send(attempt, dialed_at)
            if sending is None:
                return False
            dialed_at = sending
            if grant is not None and not self._keep_slot(attempt, grant, dialed_at):
                return False
            self._unsent.discard(this)
            return True

        def before_wait() -> None:
            # Nothing of this dial is out (not yet, or the last send was refused with a 429 or
            # never connected): a stop releases it rather than waiting for the re-send.
            self._unsent.add(this)

        try:
            try:
                created = await shared.clients[attempt.api_key_name].create_call(
                    body, before_send=before_send, before_wait=before_wait
                )
            except asyncio.CancelledError:
                if this in self._unsent:
                    # Stopped while waiting for the budget: nothing went out, the dial is free.
                    self._release(attempt, "stopped", delay=timedelta(0), dialed_at=dialed_at)
                raise
            except StoreUnavailable as exc:
                # Raised before anything was sent (the budget's shared row, the re-check):
                # the row stays `dialing`, for reconciliation to release.
                shared.database.noticed(exc, by="dial")
                log.warning(
                    "dialer.attempt.left_dialing", attempt_id=attempt.id, stage="before_send"
                )
                return
            except CreateWithdrawn:
                shared.count("withdrawn")
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
                # not sent (connection refused or timed out): VoiceDock does not answer
                shared.reachability.failed(attempt.api_key_name, exc)
                self._release(
                    attempt,
                    "unreachable",
                    delay=shared.settings.account_recheck / 4,
                    exc=exc,
                    dialed_at=dialed_at,
                )
                return
            except AccountError as exc:
                shared.holds.hold_account(attempt.api_key_name, exc)
                self._release(
                    attempt,
                    f"account:{type(exc).__name__}",
                    delay=shared.settings.account_recheck,
                    exc=exc,
                    dialed_at=dialed_at,
                )
                return
            except (NotFound, InvalidRequest) as exc:
                # Refused, and repeating it will not help: the contact's own fault (an invalid
                # destination) fails it; what every contact would meet counts toward a hold
                # (dialer.policy.rejections), the contact keeping its turn.
                rejection = rejection_of(exc)
                if blame(rejection) is Blame.CAMPAIGN:
                    self._refused(attempt, exc, rejection, dialed_at)
                    return

                def failed(exc: ProviderError = exc) -> None:
                    shared.store.mark_create_failed(
                        attempt.id,
                        error=str(exc),
                        now=shared.clock(),
                        dialed_at=dialed_at,
                        response_status=exc.status_code,
                    )
                    log.warning(
                        "dialer.attempt.create_failed", attempt_id=attempt.id, error=str(exc)
                    )

                shared.settle_dial(attempt, "create_failed", failed)
                shared.after_final()
                return
            except ProviderError as exc:
                # Anything else (an unreadable 2xx, say) leaves us unsure whether a call
                # exists: treat it as ambiguous, so reconciliation decides, never a re-dial.
                self._note_ambiguous(attempt, exc, dialed_at)
                return
            shared.holds.clear_account(attempt.api_key_name)
            if shared.holds.accepted(attempt.campaign_name):
                shared.wake.set()  # its other due contacts may go out now, at full width
            if not await self._record_created(attempt, created, dialed_at):
                return
            shared.count("created")
            log.info(
                "dialer.call.created",
                attempt_id=attempt.id,
                call_id=created.call_id,
                campaign=attempt.campaign_name,
            )
            placed = True
        finally:
            shared.dialing_now.discard(attempt.id)
            shared.holds.answered(attempt.campaign_name)
            if not placed:  # released, failed or ambiguous: the dispatcher may act again
                shared.wake.set()

    async def _record_created(
        self, attempt: AttemptView, created: CreatedCall, dialed_at: datetime
    ) -> bool:
        """in_flight with the call's id: False when someone else resolved the dial meanwhile.

        The one write retried while the database is away (dialer.engine.outages): the call
        exists and its id is only in memory. The move is pinned to this dial, so a try after
        a commit we did not hear about is refused, and a re-read tells that apart from a
        takeover. At a stop it is left to the next start, whose reconciliation adopts the call.
        """
        shared = self._shared
        failures = 0
        while True:
            # with the database away, one try at a time (the loops' and the other dials')
            await shared.database.take_turn(shared.settings.tick)
            if shared.stopping and (failures or shared.database.down):
                break  # a stop does not wait for the database
            now = shared.clock()
            try:
                shared.store.mark_in_flight(
                    attempt.id,
                    call_id=created.call_id,
                    now=now,
                    next_poll_at=next_poll_at(
                        shared.settings.poll, status=None, now=now, dialed_at=now
                    ),
                    dialed_at=dialed_at,
                    response_status=created.http_status,
                )
                return True
            except TransitionRefused:
                if failures and self._recorded(attempt, created.call_id):
                    return True  # an earlier try did commit
                # Someone resolved the attempt while our POST was out, which the re-stamp before
                # sending should make impossible. The call exists: keep its id on record.
                self._orphaned(attempt, created.call_id)
                return False
            except StoreUnavailable as exc:
                failures += 1
                shared.database.noticed(exc, by="dial")
        log.warning(
            "dialer.attempt.left_dialing",
            attempt_id=attempt.id,
            stage="created",
            call_id=created.call_id,
            hint="the next start's reconciliation adopts this call",
        )
        return False

    def _recorded(self, attempt: AttemptView, call_id: str) -> bool:
        """The attempt carries this call id already (our own unseen commit, or another
        daemon's reconciliation adopting the same call)."""
        try:
            return self._shared.store.attempt(attempt.id).call_id == call_id
        except StoreUnavailable:
            return False

    def _may_still_send(self, attempt: AttemptView, dialed_at: datetime) -> datetime | None:
        """Asked just before a create goes out: the dial's new time, or None to withdraw it.

        A create that waited long for the budget (a 429 pause, another daemon's share) is
        looked at again: the window may have shut or the deadline passed; and its row is
        re-stamped, which fails if a reconciler took it over or the campaign was paused. So is
        one whose claim the database may have lost sight of: it failed us since the claim, or
        our heartbeat is overdue (another daemon may be taking the claim over). With the
        database away, it is not sent: the row stays `dialing`, for reconciliation.
        """
        shared = self._shared
        now = shared.clock()
        if now - dialed_at < shared.settings.send_recheck_after and not (
            shared.database.interrupted_since(dialed_at, now)
        ):
            return dialed_at
        if shared.database.down:
            log.info("dialer.attempt.withdrawn", attempt_id=attempt.id, reason="database")
            return None
        campaign = shared.campaigns.get(attempt.campaign_name)
        lapsed = "campaign_gone" if campaign is None else self._lapsed(campaign, attempt, now)
        try:
            if lapsed is None and shared.store.confirm_sending(
                attempt.id, dialed_at=dialed_at, now=now
            ):
                return now
            # Back to planned: the dispatcher applies every rule anew (defers, closes).
            shared.store.release_unplaced(
                attempt.id,
                due_at=now,
                reason=f"withdrawn:{lapsed or 'campaign_inactive'}",
                now=now,
                dialed_at=dialed_at,
            )
        except (TransitionRefused, StoreUnavailable) as exc:
            self._not_sent(attempt, exc)
            return None
        log.info("dialer.attempt.withdrawn", attempt_id=attempt.id, reason=lapsed)
        return None

    def _lapsed(self, campaign: Campaign, attempt: AttemptView, now: datetime) -> str | None:
        """Which rule that allowed a queued dial no longer holds now, if any: the gate asked
        again (without the cap: the dial being re-checked is itself one of the number's calls)."""
        decision = self._shared.decide(campaign, attempt, now, with_cap=False)
        if isinstance(decision, Allow):
            return None
        return decision.rule if decision.rule in ("dnc", "deadline") else "window"

    def _note_ambiguous(
        self, attempt: AttemptView, exc: ProviderError, dialed_at: datetime
    ) -> None:
        shared = self._shared
        shared.count("ambiguous")
        log.warning("dialer.attempt.ambiguous", attempt_id=attempt.id, error=str(exc))

        def note() -> None:
            shared.store.note_ambiguous(
                attempt.id,
                error=str(exc),
                now=shared.clock(),
                dialed_at=dialed_at,
                response_status=exc.status_code,
            )

        shared.settle_dial(attempt, "ambiguous", note)

    def _orphaned(self, attempt: AttemptView, call_id: str) -> None:
        shared = self._shared
        shared.count("orphaned")
        log.error("dialer.call.orphaned", attempt_id=attempt.id, call_id=call_id)
        try:
            shared.store.add_event(
                at=shared.clock(),
                kind="call.orphaned",
                campaign_id=attempt.campaign_id,
                attempt_id=attempt.id,
                call_id=call_id,
            )
        except StoreUnavailable as exc:
            shared.database.noticed(exc, by="dial")  # the log line above keeps the call id

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
        shared = self._shared
        now = shared.clock()

        def release() -> None:
            shared.store.release_unplaced(
                attempt.id,
                due_at=now + delay,
                reason=reason,
                now=now,
                dialed_at=dialed_at,
                response_status=exc.status_code if exc is not None else None,
            )
            shared.count("released")

        shared.settle_dial(attempt, reason, release)

    def _refused(
        self,
        attempt: AttemptView,
        exc: ProviderError,
        rejection: Rejection,
        dialed_at: datetime,
    ) -> None:
        """A create refused for what every contact of the campaign would meet: the contact goes
        back to planned (its attempt not used up), later than the others so that the next
        refusals come from different contacts; after enough in a row, the campaign is held."""
        shared = self._shared
        self._release(
            attempt,
            "refused:campaign",
            delay=shared.settings.account_recheck,
            exc=exc,
            dialed_at=dialed_at,
        )
        campaign = shared.campaigns.get(attempt.campaign_name)
        threshold = (
            self._threshold(campaign)
            if campaign is not None
            else shared.settings.hold_after_rejections
        )
        due = shared.holds.refused(
            attempt.campaign_name,
            CampaignRefusal(
                attempt_id=attempt.id,
                contact_id=attempt.contact_id,
                phone=attempt.phone,
                line=attempt.contact.source_line or None,
                rejection=rejection,
            ),
            threshold,
        )
        if due is None:
            return
        try:
            held = shared.store.hold_campaign(
                attempt.campaign_id,
                reason=due.reason,
                phone=due.phone,
                line=due.line,
                now=shared.clock(),
                attempt_ids=due.attempt_ids,
            )
        except StoreUnavailable as exc_store:
            # the next refusal tries again (the streak starts afresh, from this one's
            # contacts' next turn): nothing is lost but a few creates
            shared.database.noticed(exc_store, by="dial")
            return
        if held:
            shared.count("held")
            log.error(
                "dialer.campaign.held",
                campaign=attempt.campaign_name,
                error=due.reason,
                first_phone=due.phone,
                first_line=due.line,
                refused=len(due.attempt_ids),
                hint="fix the campaign file (the daemon reads it again), or `dialer resume "
                f"{attempt.campaign_name}` once VoiceDock's side is fixed",
            )

    def release_unsent(self) -> None:
        """At a stop: a create still waiting for the budget (a 429's pause) is not worth
        waiting for; it is released unsent (see _dial). Only POSTs already out are drained."""
        for task in list(self._unsent):
            task.cancel()

    async def drain(self, grace_s: float = 10.0) -> None:
        """Let POSTs already sent get their answer, so their rows leave `dialing` cleanly;
        after ``grace_s``, what is left (an answer not come, a database that does not take
        it) is cancelled and its row left in `dialing` for the next start's reconciliation."""
        if not self.dial_tasks:
            return
        _, late = await asyncio.wait(set(self.dial_tasks), timeout=grace_s)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=1.0)
