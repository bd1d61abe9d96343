"""Who a refused create blames: the contact alone, or the whole campaign (pure, no I/O).

VoiceDock answers a ``POST /calls/outbound`` it will not act on with a 4xx. Some of those are
about the contact (an invalid destination): that contact fails, the others are called. Most are
about what every call of the campaign sends alike (the body, the assistant, the number): every
contact would get the same answer, so marking each `failed_permanent` would burn the whole list
over one typo. Those count toward a *hold* instead: after ``hold_after`` in a row for different
contacts the campaign is held until a person fixes it (dialer.engine.holds).

The split is this module's table, :data:`RULES`, read top to bottom, the first match deciding.
A rule matches on the HTTP status and, where given, the body's error ``code``, its ``param``
(the field it names) and a pattern of its message (case-insensitive).

What is UNCONFIRMED about VoiceDock's error bodies (../shared/voicedock-api.md §11, §17.1):

- the exact set of 4xx statuses ``POST /calls/outbound`` answers, and which of 400 and 422
  a validation failure gets;
- whether an invalid or unreachable destination is refused at create time at all (the
  simulator does: 400, ``param=destination``), or only later as a `failed` call;
- the body's shape: two are documented (nested ``{"error": {"code", "message", "param"}}`` and
  flat ``{"error": "...", "message": "..."}``); only ``invalid_request``, ``missing_field`` and a
  few account codes are named, so the codes below other than those are guesses;
- whether ``param`` names a nested field as ``assistant_override.first_message`` or just
  ``first_message``; a 404's message ("Assistant not found" is the simulator's wording).

So the table leans to the safe side: anything it does not recognise as the contact's is the
campaign's. A hold costs a person a look and a `dialer resume`; a wrong blame on the contact
costs a contact for good, and on every contact, the list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "RULES",
    "Blame",
    "Rejection",
    "Rule",
    "blame",
    "hold_threshold",
    "same_error",
    "unanswered_allowed",
]


class Blame(StrEnum):
    """Whose fault a refused create is."""

    #: this contact alone (its destination): it fails, the others are called
    CONTACT = "contact"
    #: what every call of the campaign sends alike: counts toward holding the campaign
    CAMPAIGN = "campaign"


@dataclass(frozen=True, kw_only=True)
class Rejection:
    """A create VoiceDock refused with a client error, as its answer said it."""

    status: int | None
    #: the body's error code (nested shape), if any
    code: str | None = None
    #: the field the body names, if any
    param: str | None = None
    #: VoiceDock's message (both shapes), as the client read it
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One row of the table: every given condition must hold."""

    blame: Blame
    #: the HTTP statuses it applies to (empty: any)
    statuses: frozenset[int] = frozenset()
    #: a full match of the error code, case-insensitive
    code: str | None = None
    #: a full match of the named field, case-insensitive
    param: str | None = None
    #: a search in the message, case-insensitive
    message: str | None = None
    #: why the row says so (for the reader and the audit of the table)
    why: str = ""

    def matches(self, rejection: Rejection) -> bool:
        if self.statuses and rejection.status not in self.statuses:
            return False
        if self.code is not None and not _full(self.code, rejection.code):
            return False
        if self.param is not None and not _full(self.param, rejection.param):
            return False
        return self.message is None or re.search(self.message, rejection.message, re.I) is not None


def _full(pattern: str, value: str | None) -> bool:
    return value is not None and re.fullmatch(pattern, value, re.I) is not None


_CLIENT = frozenset({400, 404, 409, 422})
#: what the campaign sends alike: the assistant (or its deprecated agent_* names), its
#: override, the caller number, the metadata
_CAMPAIGN_FIELDS = (
    r"(assistant|agent)(_id|_override|_config)?([.\[].*)?|number_id|metadata([.\[].*)?"
)
_CAMPAIGN_WORDS = r"assistant|agent|override|number_id|caller|metadata|unknown field|extra field"
_DESTINATION_WORDS = (
    r"destination|e\.?164|invalid (phone )?number|not a valid (phone )?number|"
    r"cannot (be )?dial|undialable|unsupported (country|region)|blocked number"
)

#: the table: the first matching row decides; nothing matching is the campaign's
RULES: tuple[Rule, ...] = (
    Rule(
        blame=Blame.CAMPAIGN,
        statuses=_CLIENT,
        param=_CAMPAIGN_FIELDS,
        why="the field it names is one every call of the campaign sends alike",
    ),
    Rule(
        blame=Blame.CONTACT,
        statuses=frozenset({400, 409, 422}),
        param=r"destination|customer(\.number)?|phone(_number)?",
        why="the field it names is the contact's number",
    ),
    Rule(
        blame=Blame.CAMPAIGN,
        statuses=_CLIENT,
        message=_CAMPAIGN_WORDS,
        why="the message names the assistant, its override, the caller number or metadata",
    ),
    Rule(
        blame=Blame.CONTACT,
        statuses=frozenset({400, 409, 422}),
        message=_DESTINATION_WORDS,
        why="the message is about the dialled number (UNCONFIRMED wording)",
    ),
    Rule(
        blame=Blame.CAMPAIGN,
        statuses=frozenset({404}),
        why="a create names no contact resource: what is not found is the assistant, the "
        "number or the endpoint itself (base_url without /api/v1)",
    ),
    Rule(
        blame=Blame.CAMPAIGN,
        why="unrecognised: the safe side (a hold is released by a person; a failed contact "
        "is lost for good)",
    ),
)


def blame(rejection: Rejection, rules: tuple[Rule, ...] = RULES) -> Blame:
    """Whose fault ``rejection`` is, by the first row of ``rules`` that matches it."""
    for rule in rules:
        if rule.matches(rejection):
            return rule.blame
    return Blame.CAMPAIGN


_DIGITS = re.compile(r"\d+")


def same_error(a: Rejection, b: Rejection) -> bool:
    """The same refusal, whatever contact got it: status, code and field equal, messages equal
    once their numbers are set aside (a message may quote the dialled number or an id)."""
    return (
        a.status == b.status
        and (a.code or "").lower() == (b.code or "").lower()
        and (a.param or "").lower() == (b.param or "").lower()
        and _DIGITS.sub("#", a.message.strip().lower())
        == _DIGITS.sub("#", b.message.strip().lower())
    )


def hold_threshold(hold_after: int, contacts: int) -> int:
    """How many different contacts must get the same campaign-level refusal before the
    campaign is held: ``hold_after``, or every contact of a smaller campaign (at least one),
    so a campaign of two contacts is held too instead of trying them in turn for ever."""
    if hold_after < 1:
        raise ValueError(f"hold_after must be at least 1, not {hold_after}")
    return max(1, min(hold_after, contacts))


def unanswered_allowed(threshold: int, streak: int, proven: bool) -> int | None:
    """How many creates of a campaign may wait for their answer at once; None: no limit.

    A campaign no create of which has been accepted yet (or since its last refusal) sends
    no more creates at once than it has refusals left before its hold: a body every contact
    gets refused for then costs at most ``threshold`` refusals, not a whole pass of
    concurrent dials. Once a create is accepted, the campaign is proven and dials at full width.
    """
    if proven:
        return None
    return max(1, threshold - streak)
