"""The follower: every placed call watched until it ends, by poll, by list or by webhook.

    GET /calls/{id} when due (few calls) ─┐
    GET /calls?start_date= (many calls)  ─┼─► record poll / outcome / unknown ──► retry placed
    webhook (an accelerator)             ─┘

Few calls in flight: one ``GET /calls/{id}`` per due call, timed by the poll plan. From
``list_threshold`` calls in flight on: one list (all pages) every ``list_interval`` observes
every one of them. Webhooks end a call at once when they come; polling remains the fallback.

While an API key's VoiceDock does not answer, its calls are not looked at (nothing would come
back, and a call we cannot see for that reason is not given up on as `unknown`): their looks
wait, and are made at once when a probe finds VoiceDock back (dialer.engine.outages).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Coroutine, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog

from dialer.attempts import AttemptState
from dialer.engine.settings import ENDED_MEMORY
from dialer.engine.shared import Shared
from dialer.errors import AccountError, NotFound, ProviderError, StoreError, TransportFailure
from dialer.policy.gate import Close, first_allowed
from dialer.policy.outcomes import Outcome, classify
from dialer.policy.polling import KeyLoad, list_interval, next_poll_at
from dialer.policy.retries import decide_retry, may_retry
from dialer.ratelimit import Priority
from dialer.store import AttemptView, CallResult, FollowedCall, Retry
from dialer.voicedock import Call, VoiceDockClient
from dialer.webhooks import WebhookEvent

__all__ = ["Follower"]

log = structlog.get_logger("dialer.engine")


class Follower:
    """Looks at the calls in flight (and `unknown` ones, for a late result) when they are due."""

    def __init__(self, shared: Shared) -> None:
        self._shared = shared
        #: while listing (enough calls in flight), API key -> when its next list is due
        self._next_list: dict[str, datetime] = {}
        #: call id -> VoiceDock's own creation time of a followed call, once a list showed it
        self._created: dict[str, datetime] = {}
        #: API key -> requests its last list took (a list of several pages costs that many)
        self._pages: dict[str, int] = {}
        #: API key -> its calls in flight that its last list did not show (or failed to)
        self._missing: dict[str, set[int]] = {}
        #: call ids whose end a webhook already brought (oldest first), to skip duplicates
        self._ended_by_webhook: dict[str, None] = {}
        #: call id -> (by when, attempt id): an end came without its report (yet)
        self._awaiting_report: dict[str, tuple[datetime, int | None]] = {}
        #: call ids a webhook said were answered (oldest first): their end has a report
        self._answered: dict[str, None] = {}
        # looks in a row that showed nothing, per attempt in flight (see _unobserved)
        self._misses: dict[int, int] = {}
        #: API key -> attempts whose look waits for its VoiceDock to answer again
        self._held: dict[str, set[int]] = defaultdict(set)

    @property
    def listing(self) -> bool:
        """Calls were in flight at the last list: a list, not the store, says when to look."""
        return bool(self._next_list)

    @property
    def next_list(self) -> datetime | None:
        """While listing, when the next list (of any key) is due."""
        return min(self._next_list.values()) if self._next_list else None

    def next_look(self) -> datetime | None:
        """When something is next due a look."""
        next_list = self.next_list
        return next_list if next_list is not None else self._shared.store.next_poll_at()

    async def follow_once(self, *, limit: int = 200) -> int:
        """Look at the calls that are due a look; returns how many calls were observed.

        Few calls in flight: one ``GET /calls/{id}`` per due call, timed by the poll plan.
        From ``list_threshold`` calls in flight on, or as soon as the key's spare budget pays
        for lists more often than ``list_interval`` (the tail of a run, see
        dialer.policy.polling.list_interval): one ``GET /calls?start_date=`` (all pages) per
        key observes every call of the key, at the interval its spare budget allows.
        """
        shared = self._shared
        now = shared.clock()
        plan = shared.settings.poll
        if self._held:
            self._resume_held(now)
        observed = await self._follow_unreported(now) if self._awaiting_report else 0
        next_list = self.next_list
        if next_list is not None and now < next_list:
            # Listing: nothing is looked at (nor read from the store) between two lists.
            return observed
        by_key = self._followed_by_key()
        in_flight = sum(len(calls) for calls in by_key.values())
        if len(self._created) > in_flight:
            followed = {call_id for calls in by_key.values() for call_id in calls}
            self._created = {k: v for k, v in self._created.items() if k in followed}
        intervals = {key: self._list_interval(key, len(calls)) for key, calls in by_key.items()}
        if in_flight and (
            in_flight >= plan.list_threshold
            or any(interval < plan.list_interval for interval in intervals.values())
        ):
            due = {k: c for k, c in by_key.items() if self._next_list.get(k, now) <= now}
            self._missing = {k: m for k, m in self._missing.items() if k in by_key}
            self._next_list = {
                key: now + interval if key in due else self._next_list[key]
                for key, interval in intervals.items()
            }
            observed += await self._follow_by_list(now, due)
            # Only stragglers (unknown calls, calls missing from the list) are looked at one by one.
            looks = shared.store.claim_polls(
                now=now,
                limit=limit,
                lease=shared.settings.poll_lease,
                stragglers=self._missing_from_list,
            )
        else:
            self._next_list = {}
            self._missing = {}
            looks = shared.store.claim_polls(now=now, limit=limit, lease=shared.settings.poll_lease)
        if looks:
            await _together(self._follow(attempt) for attempt in looks)
        return observed + len(looks)

    def _followed_by_key(self) -> dict[str, dict[str, FollowedCall]]:
        """API key -> call id -> call, for every call in flight a client of ours follows."""
        shared = self._shared
        by_key: dict[str, dict[str, FollowedCall]] = defaultdict(dict)
        for call in shared.store.followed_calls():
            by_key[call.api_key_name][call.call_id] = call
        for key_name in [k for k in by_key if k not in shared.clients]:
            # not this daemon's key: its calls are left to the daemons that have it (said once)
            first = next(iter(by_key.pop(key_name).values()))
            for attempt in shared.store.attempts_by_ids([first.attempt_id]):
                shared.client_for(attempt)
        return by_key

    def _list_interval(self, key_name: str, in_flight: int) -> timedelta:
        """The key's list interval from its spare budget (dialer.policy.polling)."""
        shared = self._shared
        budget = shared.clients[key_name].budget
        load = KeyLoad(
            # per minute of our clock (the bench's budget counts the simulator's minutes)
            rate_per_minute=round(budget.rate_per_minute * 60.0 / budget.window_s),
            in_flight=in_flight,
            creates_waiting=budget.waiting(Priority.CREATE),
            line_wanted=shared.lines_wanted,
            pages=self._pages.get(key_name, 1),
            daemons=shared.daemons,
        )
        return list_interval(shared.settings.poll, load)

    def _resume_held(self, now: datetime) -> None:
        """The looks held for keys whose VoiceDock answers again are due now."""
        reachability = self._shared.reachability
        for key in [k for k in self._held if not reachability.unreachable(k)]:
            for attempt_id in sorted(self._held[key]):
                self._shared.store.reschedule_poll(attempt_id, next_poll_at=now, now=now)
                self._held[key].discard(attempt_id)  # (a failure above keeps the rest)
            del self._held[key]
            self._next_list.pop(key, None)  # and list it at once, if listing

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
            await _together(self._follow(attempt) for attempt in followed)
        return len(followed)

    async def _follow_by_list(
        self, now: datetime, by_key: Mapping[str, dict[str, FollowedCall]]
    ) -> int:
        """One list (all pages) per API key covers every call that key has in flight; only
        the calls whose status changed are read from the store and recorded."""
        shared = self._shared
        seen = 0
        for key_name, followed in by_key.items():
            # what this list misses (the keys not listed now keep what their last list missed)
            missing = self._missing[key_name] = set()
            if shared.reachability.unreachable(key_name):
                # listed at once when its VoiceDock answers again (see _resume_held)
                self._held[key_name].update(c.attempt_id for c in followed.values())
                continue
            client = shared.clients[key_name]
            sent = _lists_sent(client)
            listed: set[str] = set()
            # a call past stuck_after is read even unchanged: it is given up on (observe_call)
            stuck = now - shared.settings.stuck_after
            try:
                calls = await client.list_calls(
                    start_date=self._list_start(followed.values(), now),
                    only=followed.keys(),
                    unchanged={
                        c.call_id: c.call_status
                        for c in followed.values()
                        if c.dialing_at is None or c.dialing_at > stuck
                    },
                    seen=listed,
                )
            except TransportFailure as exc:
                # not a reason to GET each call instead: those would get no answer either
                shared.reachability.failed(key_name, exc)
                self._held[key_name].update(c.attempt_id for c in followed.values())
                continue
            except ProviderError as exc:
                if isinstance(exc, AccountError):
                    shared.holds.hold_account(key_name, exc)
                else:
                    log.warning(
                        "dialer.poll.list_failed",
                        key=key_name,
                        error=str(exc),
                        in_flight=len(followed),
                    )
                # Each call falls back to its own GETs on its own schedule: a list that keeps
                # failing must not leave calls unfollowed (never ended, never `unknown`).
                missing.update(c.attempt_id for c in followed.values())
                continue
            self._pages[key_name] = max(1, _lists_sent(client) - sent)
            for call in calls:
                if call.created_at is not None:
                    self._created[call.id] = call.created_at
            if self._misses:
                for call_id in listed:
                    self._misses.pop(followed[call_id].attempt_id, None)
            changed = {followed[call.id].attempt_id: call for call in calls if call.id in followed}
            for attempt in shared.store.attempts_by_ids(changed):
                if attempt.state is AttemptState.IN_FLIGHT:  # (another daemon may have ended it)
                    self.observe_call(attempt, changed[attempt.id], listed=True)
                    seen += 1
            # Not listed (a clock skew beyond the margin, or an id the list spells differently):
            # fall back to a GET for each, on its own schedule.
            missing.update(c.attempt_id for c in followed.values() if c.call_id not in listed)
        return seen

    def _list_start(self, followed: Iterable[FollowedCall], now: datetime) -> datetime:
        """Where a key's list starts: at the oldest followed call's creation by VoiceDock's
        own clock once a list showed it (less a second: the time may be rounded), else at
        its dial by ours less ``reconcile_margin`` (the clocks may differ). Calls created
        before are not listed: the margin alone, every list, was ~a third of its items."""
        margin = self._shared.settings.reconcile_margin
        return min(
            self._created[c.call_id] - _ROUNDING
            if c.call_id in self._created
            else (c.dialing_at or now) - margin
            for c in followed
        )

    @property
    def _missing_from_list(self) -> set[int]:
        """The calls in flight the last list of their key did not show (or failed to)."""
        return set().union(*self._missing.values())

    async def _follow(self, attempt: AttemptView) -> None:
        assert attempt.call_id is not None
        shared = self._shared
        client = shared.client_for(attempt)
        if client is None:
            self._push_poll(attempt, shared.settings.poll_lease)
            return
        if shared.reachability.unreachable(attempt.api_key_name):
            self._hold(attempt)
            return
        try:
            call = await client.get_call(attempt.call_id)
        except NotFound:
            self._unobserved(attempt, "call id not found")
            return
        except TransportFailure as exc:
            # No answer at all, after the client's own retries: VoiceDock is not there, which
            # says nothing about this call (it is not counted towards giving up on it).
            shared.reachability.failed(attempt.api_key_name, exc)
            self._hold(attempt)
            return
        except AccountError as exc:
            shared.holds.hold_account(attempt.api_key_name, exc)
            self._push_poll(attempt, shared.settings.account_recheck)
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
        shared = self._shared
        settings = shared.settings
        now = shared.clock()
        self._misses.pop(attempt.id, None)
        if call.terminal:
            shared.ended_unrecorded.pop(attempt.id, None)
            outcome = classify(call.raw, settings.outcome_rules)
            # Decided before the write, so the retry is written with the outcome (see Retry).
            retry = (
                self._retry_after(attempt, outcome, call.ended_at or now)
                if attempt.state is AttemptState.IN_FLIGHT
                else None
            )
            recorded = shared.store.record_outcome(
                attempt.id, result=_result(call, outcome), now=now, retry=retry
            )
            if recorded:
                shared.count("ended")
                log.info(
                    "dialer.call.ended",
                    attempt_id=attempt.id,
                    call_id=call.id,
                    outcome=outcome.value,
                    late=attempt.state is AttemptState.UNKNOWN,
                )
                shared.after_final()
            return
        dialed = attempt.dialing_at or now
        if attempt.state is AttemptState.IN_FLIGHT and now - dialed >= settings.stuck_after:
            # Another daemon may have seen the end (or given up) after our read: it stands.
            with shared.unless_taken_over(attempt, "stuck"):
                shared.store.mark_unknown(
                    attempt.id,
                    now=now,
                    next_poll_at=now + settings.poll.late,
                    reason=f"still {call.status} after {settings.stuck_after}",
                )
                shared.count("unknown")
                log.warning(
                    "dialer.call.stuck", attempt_id=attempt.id, call_id=call.id, status=call.status
                )
            shared.after_final()
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
                settings.poll,
                status=call.status,
                now=now,
                dialed_at=dialed,
                answered_at=call.started_at,
            )
        shared.store.record_poll(
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
        shared = self._shared
        call_id = event.call_id
        if call_id and call_id in self._ended_by_webhook:
            return  # its end is recorded: a duplicate, or the status-update after the report
        talking = event.call.get("status") == "in-progress"
        if talking and call_id:
            _remember(self._answered, call_id)
        if not event.terminal and not (talking and self.next_list is None):
            return  # nothing to do with it: while listing, the list looks at the call anyway
        if event.awaits_report or (
            event.kind == "status-update" and event.terminal and call_id in self._answered
        ):
            if call_id and call_id not in self._awaiting_report:
                by = shared.clock() + shared.settings.report_grace
                self._awaiting_report[call_id] = (by, event.attempt_id)
                self._free_line(call_id, event.attempt_id)
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
            shared.count("webhooks")
            if call_id:
                self._awaiting_report.pop(call_id, None)
                self._answered.pop(call_id, None)
                _remember(self._ended_by_webhook, call_id)
        else:
            # Polled one by one: the call is talking, so its next look can wait.
            now = shared.clock()
            shared.store.reschedule_poll(
                attempt.id, next_poll_at=now + shared.settings.poll.expected_talk, now=now
            )

    def _free_line(self, call_id: str, attempt_id: int | None) -> None:
        """The call is over, its outcome waits for the report: its line serves the next
        contact now. The report can take seconds (its summary is written after the call);
        holding the line that long costs every line that much per call."""
        in_flight = self._shared.store.in_flight_attempt(call_id=call_id, attempt_id=attempt_id)
        if in_flight is not None:
            attempt, campaign = in_flight
            self._shared.ended_unrecorded[attempt] = campaign
            self._shared.wake.set()

    def _attempt_of(self, call_id: str | None, attempt_id: int | None) -> AttemptView | None:
        """The attempt a webhook is about: by call id, else by the attempt id our metadata
        carries (whether webhook call ids equal the create's is UNCONFIRMED, §4)."""
        store = self._shared.store
        attempt = store.attempt_by_call_id(call_id) if call_id else None
        if attempt is None and attempt_id is not None:
            with contextlib.suppress(StoreError):
                attempt = store.attempt(attempt_id)
        return attempt

    def _unobserved(self, attempt: AttemptView, reason: str) -> None:
        """A look that showed nothing: the call id is not found, or its GET keeps failing.

        A call we cannot see is given up on after ``stuck_after`` like one that never ends
        (it must not hold its line and its run for ever), and each miss in a row doubles the
        wait before the next look, up to ``poll.late``: a GET failing every few seconds for
        hours would eat a third of the budget."""
        shared = self._shared
        now = shared.clock()
        dialed = attempt.dialing_at or now
        if attempt.state is AttemptState.UNKNOWN:
            self._push_poll(attempt, self._late_look(dialed, now))
            return
        if now - dialed >= shared.settings.stuck_after:
            self._misses.pop(attempt.id, None)
            with shared.unless_taken_over(attempt, "unobserved"):
                shared.store.mark_unknown(
                    attempt.id, now=now, next_poll_at=now + shared.settings.poll.late, reason=reason
                )
                shared.count("unknown")
                log.warning("dialer.call.unobserved", attempt_id=attempt.id, reason=reason)
            shared.after_final()
            return
        misses = self._misses[attempt.id] = self._misses.get(attempt.id, 0) + 1
        plan = shared.settings.poll
        self._push_poll(attempt, min(plan.late, plan.ringing * 2 ** min(misses - 1, 16)))

    def _hold(self, attempt: AttemptView) -> None:
        """Look again when the key's VoiceDock answers (``_resume_held``); the longest poll
        interval is only for another daemon, or this one restarted, to look meanwhile."""
        self._held[attempt.api_key_name].add(attempt.id)
        self._push_poll(attempt, self._shared.settings.poll.maximum)

    def _late_look(self, dialed: datetime, now: datetime) -> timedelta | None:
        """When to look again at an `unknown` call: every ``poll.late`` within the late-result
        horizon, then never (a webhook can still bring its result)."""
        settings = self._shared.settings
        if now - dialed < settings.late_result_horizon:
            return settings.poll.late
        return None

    def _push_poll(self, attempt: AttemptView, delay: timedelta | None) -> None:
        """Look again after ``delay``; None: never again."""
        now = self._shared.clock()
        self._shared.store.reschedule_poll(
            attempt.id, next_poll_at=None if delay is None else now + delay, now=now
        )

    def _retry_after(
        self, attempt: AttemptView, outcome: Outcome, ended_at: datetime
    ) -> Retry | None:
        """The retry this outcome earns under the campaign's rules, or None."""
        shared = self._shared
        campaign = shared.campaigns.get(attempt.campaign_name)
        if campaign is None or not may_retry(
            campaign.retry, outcome=outcome, attempts_made=attempt.attempt_no
        ):
            return None
        history = shared.store.attempt_history(attempt.run_id, attempt.contact_id)
        # the attempt being recorded is not ended yet in the store: it counts as the same outcome
        same = 1 + sum(1 for a in history if a.id != attempt.id and a.outcome == outcome.value)
        decision = decide_retry(
            campaign.retry,
            outcome=outcome,
            attempts_made=attempt.attempt_no,
            same_outcome_count=same,
            ended_at=ended_at,
            rng=shared.rng,
        )
        if not decision.retry or decision.not_before is None:
            return None
        # When the window next opens for the contact at or after the backoff's instant; the
        # do-not-call lists and the cap are judged when the retry is due, as for any dial.
        placed = shared.decide(
            campaign, attempt, decision.not_before, with_cap=False, with_dnc=False
        )
        if isinstance(placed, Close) and placed.rule == "zone":
            return None  # no zone to judge a window in: nothing to place
        # a deadline (or zones that never share an open window) leaving no moment: the retry
        # is recorded as expired instead
        due_at = first_allowed(placed, decision.not_before)
        return Retry(after=attempt, outcome=outcome.value, due_at=due_at)


async def _together(looks: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the looks concurrently; the first to fail cancels the rest (still waiting for their
    answer: nothing of theirs is written) and is raised. With the database away, one look
    meets it and the others do not each wait out the lock or a connect timeout on it."""
    tasks = [asyncio.ensure_future(look) for look in looks]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


#: how much earlier than a call's listed creation time its key's list starts
_ROUNDING = timedelta(seconds=1)


def _lists_sent(client: VoiceDockClient) -> int:
    """How many list pages the client has sent (answered or not)."""
    return sum(n for (_, path, _), n in client.requests_sent.items() if path == "/calls")


def _remember(recent: dict[str, None], key: str) -> None:
    """Add to a bounded memory of call ids (a dict keeps insertion order: oldest first)."""
    recent[key] = None
    if len(recent) > ENDED_MEMORY:
        del recent[next(iter(recent))]


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
