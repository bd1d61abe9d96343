"""The attempt state machine: the one place that says which transitions exist.

    planned ──► dialing ──► in_flight ──► ended
       ▲  │        │  │         │
       │  │        │  └► failed └──► unknown ──► ended   (a late result is still recorded)
       │  │        └──► planned   (429 / account error / reconciled absent: no call was placed)
       │  └──► skipped | expired | cancelled
       └── (a retry is a NEW planned attempt, never a reused row)

``dialing`` is committed before the POST is sent, so a crash at any instant leaves a row that
says a call may exist. Only reconciliation against ``GET /calls`` may take a row out of
``dialing`` without a call id (back to ``planned``) — see dialer.engine.reconcile.
"""

from __future__ import annotations

from enum import StrEnum


class AttemptState(StrEnum):
    PLANNED = "planned"
    DIALING = "dialing"
    IN_FLIGHT = "in_flight"
    ENDED = "ended"
    FAILED = "failed"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


ALLOWED_TRANSITIONS: dict[AttemptState, frozenset[AttemptState]] = {
    AttemptState.PLANNED: frozenset(
        {
            AttemptState.DIALING,
            AttemptState.SKIPPED,
            AttemptState.EXPIRED,
            AttemptState.CANCELLED,
            AttemptState.PLANNED,  # deferral: same row, later due time
        }
    ),
    AttemptState.DIALING: frozenset(
        {AttemptState.IN_FLIGHT, AttemptState.FAILED, AttemptState.PLANNED, AttemptState.DIALING}
    ),
    AttemptState.IN_FLIGHT: frozenset(
        {AttemptState.IN_FLIGHT, AttemptState.ENDED, AttemptState.UNKNOWN}
    ),
    AttemptState.UNKNOWN: frozenset({AttemptState.ENDED}),
    AttemptState.ENDED: frozenset(),
    AttemptState.FAILED: frozenset(),
    AttemptState.SKIPPED: frozenset(),
    AttemptState.EXPIRED: frozenset(),
    AttemptState.CANCELLED: frozenset(),
}

#: States in which a call may exist at VoiceDock that nobody has seen end yet.
LIVE_STATES = frozenset({AttemptState.DIALING, AttemptState.IN_FLIGHT})
#: VoiceDock call statuses after which nothing changes (voicedock-api.md §5).
TERMINAL_STATUSES: frozenset[str] = frozenset({"ended", "failed"})
#: States after which the contact needs nothing more from this attempt.
FINAL_STATES = frozenset(
    {
        AttemptState.ENDED,
        AttemptState.FAILED,
        AttemptState.UNKNOWN,
        AttemptState.SKIPPED,
        AttemptState.EXPIRED,
        AttemptState.CANCELLED,
    }
)


def sources_of(target: AttemptState) -> frozenset[AttemptState]:
    """Every state from which ``target`` may be entered."""
    return frozenset(src for src, dsts in ALLOWED_TRANSITIONS.items() if target in dsts)


def can_transition(source: AttemptState, target: AttemptState) -> bool:
    return target in ALLOWED_TRANSITIONS[source]
