"""The status page in plain words: what a state, an outcome, a reason or a hold means to the
person at the front desk, and which contacts need one of them (pure, no I/O).

The stored names (``no_answer``, ``unknown_timezone``) stay in the CSV and in the filters'
values, where a person can match them with `dialer report`; what the page says is this.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from dialer.attempts import AttemptState
from dialer.policy.outcomes import Outcome

__all__ = [
    "NEEDS_A_PERSON_OUTCOMES",
    "NOT_CALLED_STATES",
    "SKIP_REASONS",
    "ago",
    "attempt_words",
    "clock_skew_words",
    "daemon_words",
    "duration_words",
    "key_hold_words",
    "needs_a_person",
    "outcome_words",
    "reason_words",
    "state_words",
]

STATES = {
    AttemptState.PLANNED: "waiting",
    AttemptState.DIALING: "dialling",
    AttemptState.IN_FLIGHT: "on the phone",
    AttemptState.ENDED: "called",
    AttemptState.FAILED: "could not be placed",
    AttemptState.UNKNOWN: "outcome unknown",
    AttemptState.SKIPPED: "skipped",
    AttemptState.EXPIRED: "deadline passed",
    AttemptState.CANCELLED: "cancelled",
}
OUTCOMES = {
    Outcome.COMPLETED: "reached",
    Outcome.VOICEMAIL: "voicemail",
    Outcome.NO_ANSWER: "no answer",
    Outcome.BUSY: "busy",
    Outcome.INVALID_NUMBER: "number not in service",
    Outcome.DECLINED: "declined the call",
    Outcome.FAILED_TRANSIENT: "call failed",
    Outcome.FAILED_PERMANENT: "call failed for good",
    Outcome.UNKNOWN: "outcome unknown",
}
#: why an attempt was never made: the gate's closing reasons, then the cancellations'
SKIP_REASONS = {
    "dnc": "on a do-not-call list",
    "deadline": "its deadline passed before a call was allowed",
    "unknown_timezone": "no time zone known for the number",
    "no_common_window": "its possible time zones never share an open window",
    "campaign_cancelled": "the campaign was cancelled",
    "superseded": "a newer run of the campaign calls this contact",
    "removed_from_campaign": "removed from the campaign file",
}
#: why a planned attempt waits
WAIT_REASONS = {
    "window": "outside its calling window",
    "holiday": "a holiday in its region",
    "skip_date": "a day the campaign skips",
    "not_before": "not before its earliest time",
    "cap": "it had its calls for now (frequency cap)",
    "rate_limited": "VoiceDock asked us to slow down",
    "reconciled_absent": "the last dial never reached VoiceDock; dialled again",
}
NOT_CALLED_STATES = frozenset({AttemptState.SKIPPED, AttemptState.EXPIRED, AttemptState.CANCELLED})
#: a contact whose newest attempt ended so needs a person: never reached, and not retried
NEEDS_A_PERSON_OUTCOMES = frozenset(
    {
        Outcome.NO_ANSWER,
        Outcome.BUSY,
        Outcome.VOICEMAIL,
        Outcome.INVALID_NUMBER,
        Outcome.FAILED_TRANSIENT,
        Outcome.FAILED_PERMANENT,
        Outcome.UNKNOWN,
    }
)
_CALLED_STATES = frozenset({AttemptState.ENDED, AttemptState.FAILED, AttemptState.UNKNOWN})


def needs_a_person(state: AttemptState, outcome: str | None) -> bool:
    """Whether a contact whose newest attempt is this one needs a person: its calls ran out
    without reaching them (a declined call is an answer), or it was skipped or expired.
    Cancelled contacts do not: someone decided they need nothing."""
    if state in (AttemptState.SKIPPED, AttemptState.EXPIRED):
        return True
    return state in _CALLED_STATES and outcome in NEEDS_A_PERSON_OUTCOMES


def state_words(state: AttemptState) -> str:
    return STATES.get(state, str(state))


def outcome_words(outcome: str | None) -> str:
    if outcome is None:
        return ""
    try:
        return OUTCOMES[Outcome(outcome)]
    except ValueError:
        return outcome.replace("_", " ")


def reason_words(reason: str | None) -> str:
    """A stored reason in words; one the page does not know is shown as it is."""
    if not reason:
        return ""
    if reason in SKIP_REASONS:
        return SKIP_REASONS[reason]
    if reason in WAIT_REASONS:
        return WAIT_REASONS[reason]
    if reason.startswith("retry:"):
        return f"a retry after {outcome_words(reason.removeprefix('retry:'))}"
    if reason.startswith("withdrawn:"):
        return f"a dial withdrawn before sending ({reason.removeprefix('withdrawn:')})"
    return reason.replace("_", " ")


def attempt_words(state: AttemptState, outcome: str | None, reason: str | None) -> str:
    """One phrase for what became of an attempt: "no answer", "skipped: on a do-not-call
    list", "waiting: outside its calling window"."""
    if outcome is not None and state in _CALLED_STATES:
        return outcome_words(outcome)
    why = reason_words(reason)
    return f"{state_words(state)}: {why}" if why else state_words(state)


def key_hold_words(key: str, status: int | None) -> str:
    """An API key VoiceDock refuses, and what happens meanwhile."""
    if status == 402:
        return (
            f"API key '{key}' is out of credits (VoiceDock answered 402): campaigns on this "
            "key do not dial until the account is topped up; the dialer tries again every "
            "minute and resumes by itself."
        )
    code = f" (VoiceDock answered {status})" if status is not None else ""
    return (
        f"VoiceDock refuses API key '{key}'{code}: it is wrong, expired or revoked. Campaigns "
        "on this key do not dial; calls already placed are still followed. The dialer tries "
        "again every minute."
    )


def clock_skew_words(skew: timedelta) -> str:
    seconds = skew.total_seconds()
    way = "ahead of" if seconds > 0 else "behind"
    return (
        f"This daemon's clock is {abs(seconds):.1f} s {way} the database's: it neither dials "
        "nor reconciles until its clock is back in sync (check NTP); calls in flight are "
        "still followed."
    )


def daemon_words(worker_id: str, heartbeat_at: datetime, now: datetime) -> str:
    return (
        f"Daemon {worker_id} has not been heard from since {ago(heartbeat_at, now)}: it was "
        "stopped or it died. The other daemons settle any dial it left unfinished."
    )


def ago(then: datetime, now: datetime) -> str:
    """``then`` relative to ``now``: "3 min ago", "in 2 h 5 min", "just now"."""
    delta = now - then
    future = delta < timedelta(0)
    words = duration_words(abs(delta))
    if words == "0 s" or abs(delta) < timedelta(seconds=2):
        return "just now"
    return f"in {words}" if future else f"{words} ago"


def duration_words(span: timedelta) -> str:
    """A span in its two largest units: "45 s", "3 min 5 s", "2 h 5 min", "3 d 4 h"."""
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    shown = [(n, unit) for n, unit in parts if n]
    if not shown:
        return "0 s"
    first = next(i for i, (n, _) in enumerate(parts) if n)
    kept = [(n, unit) for n, unit in parts[first : first + 2] if n]
    return " ".join(f"{n} {unit}" for n, unit in kept)
