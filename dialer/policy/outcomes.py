"""Outcome classification: one ordered table maps a VoiceDock call object to a canonical outcome.

VoiceDock documents only four call statuses (connecting, in-progress, ended, failed); how
voicemail, busy or an unanswered call show up is UNCONFIRMED (voicedock-api.md §5, §10, §17).
So the mapping is data: config prepends its own rules (``[[outcomes.rules]]``) and the first
rule that matches wins. The defaults follow the project simulator's contract:

    ended  + end_reason voicemail, or summary "Voicemail detected…"      -> voicemail
    failed + error / end_reason no-answer, did-not-answer                 -> no_answer
    failed + error / end_reason busy                                      -> busy
    failed + error / end_reason invalid-number, invalid-destination       -> invalid_number
    failed + error / end_reason call-rejected, declined                   -> declined
    ended  (anything else)                                                -> completed
    failed (anything else)                                                -> failed_transient
    connecting / in-progress / dialing / queued / ringing                 -> unknown
    any other status                                                      -> failed_permanent
    no status at all                                                      -> unknown

An end_reason that names what happened counts on ended and failed calls alike (see below);
``error`` is read on failed calls only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

__all__ = [
    "DEFAULT_OUTCOME_RULES",
    "PERMANENT_OUTCOMES",
    "Outcome",
    "OutcomeRule",
    "classify",
]


class Outcome(StrEnum):
    """What became of one call, as the retry rules and reports name it."""

    COMPLETED = "completed"
    VOICEMAIL = "voicemail"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    INVALID_NUMBER = "invalid_number"
    DECLINED = "declined"
    FAILED_TRANSIENT = "failed_transient"
    FAILED_PERMANENT = "failed_permanent"
    UNKNOWN = "unknown"


#: never retried: the person was reached, said no, or cannot be reached at this number
PERMANENT_OUTCOMES: frozenset[Outcome] = frozenset(
    {Outcome.COMPLETED, Outcome.INVALID_NUMBER, Outcome.DECLINED, Outcome.FAILED_PERMANENT}
)

MATCHED_FIELDS = ("status", "end_reason", "error", "summary")


@dataclass(frozen=True, kw_only=True)
class OutcomeRule:
    """Regular expressions (case-insensitive ``re.search``) on call fields; None matches anything.

    A rule naming a field does not match a call whose field is missing or null.

    >>> OutcomeRule(outcome=Outcome.BUSY, end_reason="line.?engaged").matches(
    ...     {"status": "ended", "end_reason": "Line-Engaged"})
    True
    """

    outcome: Outcome
    status: str | None = None
    end_reason: str | None = None
    error: str | None = None
    summary: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.outcome, Outcome):
            object.__setattr__(self, "outcome", Outcome(self.outcome))  # ValueError if unknown
        for name in MATCHED_FIELDS:
            pattern = getattr(self, name)
            if pattern is not None:
                try:
                    _compiled(pattern)
                except re.error as exc:
                    raise ValueError(
                        f"{name}: {pattern!r} is not a regular expression: {exc}"
                    ) from exc

    def matches(self, call: Mapping[str, Any]) -> bool:
        for name in MATCHED_FIELDS:
            pattern = getattr(self, name)
            if pattern is None:
                continue
            value = call.get(name)
            if value is None or not _compiled(pattern).search(str(value)):
                return False
        return True


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# VoiceDock's end_reason values are undocumented, so a reason that plainly says what happened
# is believed under either terminal status: "ended" + "customer-did-not-answer" is no answer,
# not a completed call that would never be retried. ``error`` is only read on failed calls.
_TERMINAL = "^(ended|failed)$"
_NO_ANSWER = "no.?answer|did.?not.?answer"
_INVALID = "invalid.?(number|destination)"
_DECLINED = "reject|declin"
_NOT_YET_TERMINAL = "^(dialing|queued|connecting|ringing|in-progress)$"

DEFAULT_OUTCOME_RULES: tuple[OutcomeRule, ...] = (
    OutcomeRule(outcome=Outcome.VOICEMAIL, status=_TERMINAL, end_reason="voicemail"),
    OutcomeRule(outcome=Outcome.VOICEMAIL, status="^ended$", summary=r"^\s*voicemail detected"),
    OutcomeRule(outcome=Outcome.NO_ANSWER, status="^failed$", error=_NO_ANSWER),
    OutcomeRule(outcome=Outcome.NO_ANSWER, status=_TERMINAL, end_reason=_NO_ANSWER),
    OutcomeRule(outcome=Outcome.BUSY, status="^failed$", error="busy"),
    OutcomeRule(outcome=Outcome.BUSY, status=_TERMINAL, end_reason="busy"),
    OutcomeRule(outcome=Outcome.INVALID_NUMBER, status="^failed$", error=_INVALID),
    OutcomeRule(outcome=Outcome.INVALID_NUMBER, status=_TERMINAL, end_reason=_INVALID),
    OutcomeRule(outcome=Outcome.DECLINED, status="^failed$", error=_DECLINED),
    OutcomeRule(outcome=Outcome.DECLINED, status=_TERMINAL, end_reason=_DECLINED),
    OutcomeRule(outcome=Outcome.COMPLETED, status="^ended$"),
    # A failure we cannot name is more likely a passing fault (SIP, STT, capacity) than a
    # property of the number: retry it under the failed_transient rule.
    OutcomeRule(outcome=Outcome.FAILED_TRANSIENT, status="^failed$"),
    # Asked too early: the call may still reach the person, so it is not a failure.
    OutcomeRule(outcome=Outcome.UNKNOWN, status=_NOT_YET_TERMINAL),
    # Any other status (one VoiceDock adds later): never retried blindly, shown as a failure
    # so that a person looks at it, and mapped by a config rule once understood.
    OutcomeRule(outcome=Outcome.FAILED_PERMANENT, status="."),
)


def classify(
    call: Mapping[str, Any], rules: Sequence[OutcomeRule] = DEFAULT_OUTCOME_RULES
) -> Outcome:
    """The outcome of a call object: the first matching rule's, else unknown.

    Only a call without any status falls through the defaults; it reads as unknown (we cannot
    tell whether anyone was reached), which no default retry rule retries.
    """
    for rule in rules:
        if rule.matches(call):
            return rule.outcome
    return Outcome.UNKNOWN
