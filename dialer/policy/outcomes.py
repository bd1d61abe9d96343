"""Outcome classification: one ordered table maps a VoiceDock call object to a canonical outcome.

VoiceDock documents only four call statuses (connecting, in-progress, ended, failed); how
voicemail, busy or an unanswered call show up is UNCONFIRMED (voicedock-api.md §5, §10, §17).
So the mapping is data: config prepends its own rules (``[[outcomes.rules]]``) and the first
rule that matches wins. The defaults follow the project simulator's contract.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any


class Outcome(StrEnum):
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
PERMANENT_OUTCOMES = frozenset(
    {Outcome.COMPLETED, Outcome.INVALID_NUMBER, Outcome.DECLINED, Outcome.FAILED_PERMANENT}
)

MATCHED_FIELDS = ("status", "end_reason", "error", "summary")


@dataclass(frozen=True, kw_only=True)
class OutcomeRule:
    """Regular expressions (case-insensitive ``re.search``) on call fields; None matches anything.

    A rule naming a field does not match a call whose field is missing or null.
    """

    outcome: Outcome
    status: str | None = None
    end_reason: str | None = None
    error: str | None = None
    summary: str | None = None

    def __post_init__(self) -> None:
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


DEFAULT_OUTCOME_RULES: tuple[OutcomeRule, ...] = (
    OutcomeRule(outcome=Outcome.VOICEMAIL, status="^ended$", end_reason="voicemail"),
    OutcomeRule(outcome=Outcome.VOICEMAIL, status="^ended$", summary=r"^\s*voicemail detected"),
    OutcomeRule(outcome=Outcome.NO_ANSWER, status="^failed$", error="no.?answer|did.?not.?answer"),
    OutcomeRule(
        outcome=Outcome.NO_ANSWER, status="^failed$", end_reason="no.?answer|did.?not.?answer"
    ),
    OutcomeRule(outcome=Outcome.BUSY, status="^failed$", error="busy"),
    OutcomeRule(outcome=Outcome.BUSY, status="^failed$", end_reason="busy"),
    OutcomeRule(
        outcome=Outcome.INVALID_NUMBER, status="^failed$", error="invalid.?(number|destination)"
    ),
    OutcomeRule(
        outcome=Outcome.INVALID_NUMBER,
        status="^failed$",
        end_reason="invalid.?(number|destination)",
    ),
    OutcomeRule(outcome=Outcome.DECLINED, status="^failed$", error="reject|declin"),
    OutcomeRule(outcome=Outcome.DECLINED, status="^failed$", end_reason="reject|declin"),
    OutcomeRule(outcome=Outcome.COMPLETED, status="^ended$"),
    # A failure we cannot name is more likely a passing fault (SIP, STT, capacity) than a
    # property of the number: retry it under the failed_transient rule.
    OutcomeRule(outcome=Outcome.FAILED_TRANSIENT, status="^failed$"),
    # "rejected" (inbound, no credits) or any status VoiceDock adds later: do not retry blindly.
    OutcomeRule(outcome=Outcome.FAILED_PERMANENT),
)


def classify(
    call: Mapping[str, Any], rules: Sequence[OutcomeRule] = DEFAULT_OUTCOME_RULES
) -> Outcome:
    """The outcome of a terminal call object: the first matching rule, else failed_permanent."""
    for rule in rules:
        if rule.matches(call):
            return rule.outcome
    return Outcome.FAILED_PERMANENT
