"""The reconciler: a dial left in `dialing` with no POST of ours waiting on it is settled
against ``GET /calls`` before anyone may dial that contact again.

    GET /calls?start_date=… ──► adopt the call it created, or release after a settle delay

A crash, a timeout, a 5xx or a dropped connection can leave a create whose call may or may
not exist. Only a confirmed absence after the settle delay releases the attempt for a new dial;
while listing fails nothing is re-dialled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import structlog

from dialer.engine.shared import Shared
from dialer.errors import ProviderError, TransportFailure
from dialer.store import AttemptView, TransitionRefused
from dialer.voicedock import Call

__all__ = ["Reconciler"]

log = structlog.get_logger("dialer.engine")


class Reconciler:
    """Settles this daemon's unanswered dials and those of daemons that died."""

    def __init__(self, shared: Shared) -> None:
        self._shared = shared

    async def reconcile_once(self) -> int:
        """Resolve attempts left in `dialing` with no POST of ours waiting on them.

        One `GET /calls?start_date=` (all pages) covers every such attempt. A call to the same
        destination created after the attempt's dial time (minus a margin for clock skew), not
        yet adopted by another attempt, is adopted. Only a confirmed absence after the settle
        delay releases the attempt for a new dial; while listing fails nothing is re-dialled.

        A key whose VoiceDock does not answer is skipped; one just back is reconciled before
        it dials again (this pass tells Reachability so). Just back from a database outage,
        other daemons are not judged dead until their heartbeats could have been written again.
        """
        shared = self._shared
        if shared.holds.clock_skew is not None:
            return 0  # its judgements of age would be off by the skew (see Holds.judge_clock)
        settings, store, reachability = shared.settings, shared.store, shared.reachability
        now = shared.clock()
        me = settings.worker_id
        returned = reachability.awaiting_reconciliation()
        waiting_long = store.dialing_since(now - settings.create_timeout)
        if not waiting_long:
            for key_name in returned:
                reachability.reconciled(key_name)  # nothing of theirs waits to be settled
            return 0  # the usual case: every dial is younger than a create can take
        alive = store.live_workers(now=now, ttl=settings.worker_ttl) | {me}
        judge_others = shared.database.trusts_heartbeats(now)
        candidates = [
            a
            for a in waiting_long
            # ours with no POST still waiting, or left behind by a daemon that died
            if (
                (a.owner == me and a.id not in shared.dialing_now)
                or (judge_others and a.owner not in alive)
            )
            and shared.client_for(a) is not None
        ]
        by_key: dict[str, list[AttemptView]] = defaultdict(list)
        for attempt in candidates:
            by_key[attempt.api_key_name].append(attempt)
        resolved = 0
        for key_name, waiting in by_key.items():
            if reachability.unreachable(key_name):
                continue  # its probe says when it answers again
            settled = await self._reconcile_key(key_name, waiting, now)
            if settled is not None:
                resolved += settled
                if key_name in returned:
                    reachability.reconciled(key_name)
        for key_name in returned - by_key.keys():
            reachability.reconciled(key_name)
        if resolved:
            shared.wake.set()
        return resolved

    async def _reconcile_key(
        self, key_name: str, candidates: Sequence[AttemptView], now: datetime
    ) -> int | None:
        """One list of the key's calls (all pages) settles every attempt it has waiting; how
        many it settled, None when the list failed."""
        shared = self._shared
        settings, store = shared.settings, shared.store
        dialled = [a.dialing_at for a in candidates if a.dialing_at is not None]
        since = min(dialled) - settings.reconcile_margin
        try:
            calls = await shared.clients[key_name].list_calls(start_date=since)
        except TransportFailure as exc:
            shared.reachability.failed(key_name, exc)
            return None
        except ProviderError as exc:
            log.warning(
                "dialer.reconcile.list_failed",
                key=key_name,
                error=str(exc),
                waiting=len(candidates),
            )
            return None
        adopted_ids = store.known_call_ids([c.id for c in calls])
        resolved = 0
        for attempt in sorted(candidates, key=lambda a: a.dialing_at or now):
            dialing_at = attempt.dialing_at
            assert dialing_at is not None  # dialing_since reads only dials with a time
            match = self._match(attempt, calls, adopted_ids, store.request_body(attempt.id))
            # The POST went out at most send_recheck_after after dialing_at (else it was
            # re-stamped), and its answer came within create_timeout of that, or never.
            settled = now - dialing_at >= (
                settings.send_recheck_after + settings.create_timeout + settings.reconcile_settle
            )
            if match is None and not settled:
                continue
            try:
                if match is not None:
                    adopted_ids.add(match.id)
                    store.mark_in_flight(
                        attempt.id,
                        call_id=match.id,
                        now=now,
                        adopted=True,
                        next_poll_at=now,
                        dialed_at=dialing_at,
                    )
                    shared.count("adopted")
                else:
                    store.release_unplaced(
                        attempt.id,
                        due_at=now,
                        reason="reconciled_absent",
                        now=now,
                        dialed_at=dialing_at,
                    )
                    shared.count("released")
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
        settings = self._shared.settings
        earliest = attempt.dialing_at - settings.reconcile_margin
        # no body (never the case since begin_dialing keeps it): match on less, the safe side
        assistant_id, number_id = (sent or {}).get("assistant_id"), (sent or {}).get("number_id")
        best: Call | None = None
        for call in calls:
            if call.id in taken:
                continue
            if attempt.phone not in _destinations(call.raw, settings.destination_fields):
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


def _destinations(raw: Mapping[str, Any], fields: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for dotted in fields:
        value: Any = raw
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, str):
            found.add(value)
    return found
