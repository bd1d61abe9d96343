"""Domain records: what the store takes and hands out, frozen and keyword-only.

No table row leaves the store: each record that mirrors a table says how it is read from a
result row in ``from_row`` (column names as the statements in dialer.store.statements select
them), so a column added to a table reaches callers only when a record names it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

import sqlalchemy as sa

from dialer.attempts import AttemptState
from dialer.policy.reminders import KeyState, key_state, reminder_identity, reminder_key


class CampaignState(StrEnum):
    """Whether a campaign is dialled: only an active one is; cancelling is final (what was
    never dialled is cancelled, calls already placed are followed to their end). A held one
    waits for a person: VoiceDock refused its creates in a way every contact would meet (its
    assistant, number or override); `dialer resume` or an edited campaign file releases it."""

    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    HELD = "held"


@dataclass(frozen=True, kw_only=True)
class CampaignHold:
    """Why a campaign is held: what VoiceDock said, and the first contact that got it."""

    #: VoiceDock's status and message, e.g. "422: Unknown field in assistant_override: …"
    reason: str
    #: the first contact refused so (its number and its line in the campaign file)
    phone: str | None
    line: int | None
    since: datetime

    def describe(self) -> str:
        """One line: what VoiceDock said, to whom first, since when."""
        first = ""
        if self.phone is not None:
            where = f"line {self.line}, " if self.line else ""
            first = f" (first: {where}{self.phone})"
        return f"VoiceDock said: {self.reason}{first}"


@dataclass(frozen=True, kw_only=True)
class StateChange:
    """What a campaign state change did, committed together."""

    previous: CampaignState
    state: CampaignState
    #: planned attempts cancelled with it (a cancel's; zero otherwise)
    cancelled: int


@dataclass(frozen=True, kw_only=True)
class ContactRecord:
    """A contact as the store keeps it (the campaign loader's Contact minus its file context).

    ``key`` is its reminder key (dialer.policy.reminders); left empty, it is the one its
    phone, ``id`` variable and appointment give."""

    phone: str
    name: str | None
    timezone: str | None
    variables: Mapping[str, Any]
    call_at: datetime | None = None
    appointment_at: datetime | None = None
    deadline: datetime | None = None
    source_line: int = 0
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(
                self,
                "key",
                reminder_key(
                    phone=self.phone,
                    contact_id=self.variables.get("id"),
                    appointment_at=self.appointment_at,
                ),
            )

    @property
    def identity(self) -> str:
        """Who the contact is across exports (its id, else its number)."""
        return reminder_identity(phone=self.phone, contact_id=self.variables.get("id"))


@dataclass(frozen=True, kw_only=True)
class StoredContact(ContactRecord):
    """A contact as stored: with its id, its campaign and whether the file still has it."""

    id: int
    campaign_id: int
    #: gone from the campaign file at the last import (its history is kept)
    removed: bool

    @classmethod
    def from_row(cls, row: sa.Row[Any], *, prefix: str = "") -> StoredContact:
        """From a row of the contacts table's columns, each named ``prefix`` + its name."""
        columns = row._mapping
        return cls(
            id=columns[f"{prefix}id"],
            campaign_id=columns[f"{prefix}campaign_id"],
            phone=columns[f"{prefix}phone"],
            name=columns[f"{prefix}name"],
            timezone=columns[f"{prefix}timezone"],
            variables=columns[f"{prefix}variables"],
            call_at=columns[f"{prefix}call_at"],
            appointment_at=columns[f"{prefix}appointment_at"],
            deadline=columns[f"{prefix}deadline"],
            source_line=columns[f"{prefix}source_line"],
            key=columns[f"{prefix}key"],
            removed=columns[f"{prefix}removed"],
        )


@dataclass(frozen=True, kw_only=True)
class CampaignRecord:
    """A campaign as stored: its file, its definition's digest and its state."""

    id: int
    name: str
    #: the campaign file it was imported from
    source: str
    state: CampaignState
    api_key_name: str
    definition_hash: str
    created_at: datetime
    updated_at: datetime
    #: "once" (each key until done, across runs) or "every_run"
    repeat: str = "once"
    #: the outcomes that meet the goal: a key whose last outcome is one of them is done
    done_when: frozenset[str] = frozenset({"completed"})
    #: why it is held (state HELD), else None
    hold: CampaignHold | None = None

    @property
    def hold_reason(self) -> str | None:
        """What the status page and `dialer status` say of a hold."""
        return None if self.hold is None else self.hold.describe()

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> CampaignRecord:
        columns = row._mapping
        hold = None
        if columns.get("held_at") is not None:
            hold = CampaignHold(
                reason=columns["hold_reason"] or "",
                phone=columns["hold_phone"],
                line=columns["hold_line"],
                since=columns["held_at"],
            )
        return cls(
            id=row.id,
            name=row.name,
            source=row.source,
            state=CampaignState(row.state),
            api_key_name=row.api_key_name,
            definition_hash=row.definition_hash,
            created_at=row.created_at,
            updated_at=row.updated_at,
            repeat=row.repeat,
            done_when=frozenset(row.done_when),
            hold=hold,
        )


@dataclass(frozen=True, kw_only=True)
class KeyRecord:
    """One reminder key of a campaign with its latest attempt that was not cancelled."""

    contact_id: int
    key: str
    phone: str
    name: str | None
    #: the line of the campaign file it was last imported from
    line: int
    removed: bool
    #: the latest attempt's state, outcome, number, due time and reason (None: never planned)
    attempt_state: AttemptState | None
    outcome: str | None
    attempt_no: int | None
    due_at: datetime | None
    reason: str | None

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> KeyRecord:
        return cls(
            contact_id=row.id,
            key=row.key,
            phone=row.phone,
            name=row.name,
            line=row.source_line,
            removed=row.removed,
            attempt_state=None if row.attempt_state is None else AttemptState(row.attempt_state),
            outcome=row.outcome,
            attempt_no=row.attempt_no,
            due_at=row.due_at,
            reason=row.reason,
        )

    def state(self, done_when: Collection[str]) -> KeyState:
        return key_state(
            removed=self.removed,
            attempt_state=None if self.attempt_state is None else self.attempt_state.value,
            outcome=self.outcome,
            done_when=done_when,
        )


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One schedule fire of a campaign: its attempts are planned in it."""

    id: int
    campaign_id: int
    fire_time: datetime
    created_at: datetime
    #: when its last attempt became final (None: still open)
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> RunRecord:
        return cls(
            id=row.id,
            campaign_id=row.campaign_id,
            fire_time=row.fire_time,
            created_at=row.created_at,
            finished_at=row.finished_at,
        )


@dataclass(frozen=True, kw_only=True)
class EventRecord:
    """One entry of the append-only history: a transition or a decision, with its data."""

    id: int
    at: datetime
    campaign_id: int | None
    attempt_id: int | None
    #: what happened, e.g. ``attempt.dialing`` or ``campaign.paused``
    kind: str
    data: Mapping[str, Any]

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> EventRecord:
        return cls(
            id=row.id,
            at=row.at,
            campaign_id=row.campaign_id,
            attempt_id=row.attempt_id,
            kind=row.kind,
            data=row.data,
        )


@dataclass(frozen=True, kw_only=True)
class AttemptRecord:
    """Every stored fact of one attempt: what reports and the audit show."""

    id: int
    run_id: int
    campaign_id: int
    contact_id: int
    phone: str
    attempt_no: int
    state: AttemptState
    due_at: datetime
    #: why the last deferral, skip or failure happened
    reason: str | None
    #: the daemon that moved it to dialing
    owner: str | None
    dialing_at: datetime | None
    #: the body of its last create, as sent
    request_body: dict[str, Any] | None
    #: the API key its dial went out with, while it is dialled or followed
    dial_key_name: str | None
    call_id: str | None
    next_poll_at: datetime | None
    polls: int
    outcome: str | None
    call_status: str | None
    error: str | None
    end_reason: str | None
    started_at: datetime | None
    ended_at: datetime | None
    duration_seconds: int | None
    summary: str | None
    analysis_result: dict[str, Any] | None
    messages: list[dict[str, Any]] | None
    raw: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> AttemptRecord:
        return cls(
            id=row.id,
            run_id=row.run_id,
            campaign_id=row.campaign_id,
            contact_id=row.contact_id,
            phone=row.phone,
            attempt_no=row.attempt_no,
            state=AttemptState(row.state),
            due_at=row.due_at,
            reason=row.reason,
            owner=row.owner,
            dialing_at=row.dialing_at,
            request_body=row.request_body,
            dial_key_name=row.dial_key_name,
            call_id=row.call_id,
            next_poll_at=row.next_poll_at,
            polls=row.polls,
            outcome=row.outcome,
            call_status=row.call_status,
            error=row.error,
            end_reason=row.end_reason,
            started_at=row.started_at,
            ended_at=row.ended_at,
            duration_seconds=row.duration_seconds,
            summary=row.summary,
            analysis_result=row.analysis_result,
            messages=row.messages,
            raw=row.raw,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@dataclass(frozen=True, kw_only=True)
class AttemptView:
    """One attempt joined with its contact and campaign name: what the loops work on."""

    id: int
    run_id: int
    campaign_id: int
    campaign_name: str
    contact_id: int
    phone: str
    attempt_no: int
    state: AttemptState
    due_at: datetime
    reason: str | None
    dialing_at: datetime | None
    call_id: str | None
    next_poll_at: datetime | None
    polls: int
    outcome: str | None
    contact: ContactRecord
    owner: str | None = None
    duration_seconds: int | None = None
    summary: str | None = None
    #: the campaign's API key name: which client (and budget) creates and follows the call
    api_key_name: str = "default"
    #: VoiceDock's status at the last recorded look (None: never looked at)
    call_status: str | None = None

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> AttemptView:
        """From one row of ``statements.ATTEMPT_VIEWS`` (contact columns as ``contact_*``)."""
        return cls(
            api_key_name=row.api_key_name,
            call_status=row.call_status,
            id=row.id,
            run_id=row.run_id,
            campaign_id=row.campaign_id,
            campaign_name=row.campaign_name,
            contact_id=row.contact_id,
            phone=row.phone,
            attempt_no=row.attempt_no,
            state=AttemptState(row.state),
            due_at=row.due_at,
            reason=row.reason,
            dialing_at=row.dialing_at,
            call_id=row.call_id,
            next_poll_at=row.next_poll_at,
            polls=row.polls,
            outcome=row.outcome,
            owner=row.owner,
            duration_seconds=row.duration_seconds,
            summary=row.summary,
            contact=ContactRecord(
                phone=row.contact_phone,
                name=row.contact_name,
                timezone=row.contact_timezone,
                variables=row.contact_variables,
                call_at=row.contact_call_at,
                appointment_at=row.contact_appointment_at,
                deadline=row.contact_deadline,
                source_line=row.contact_source_line,
                key=row.contact_key,
            ),
        )


class FollowedCall(NamedTuple):
    """A call in flight as a follower's list needs it (``statements.FOLLOWED``)."""

    attempt_id: int
    call_id: str
    dialing_at: datetime | None
    #: VoiceDock's status at the last recorded look (None: never looked at)
    call_status: str | None
    api_key_name: str


@dataclass(frozen=True, kw_only=True)
class CallResult:
    """The outcome fields of a call object, as the engine hands them to the store."""

    call_status: str
    outcome: str | None
    error: str | None
    end_reason: str | None
    started_at: datetime | None
    ended_at: datetime | None
    duration_seconds: int | None
    summary: str | None
    analysis_result: dict[str, Any] | None
    messages: list[dict[str, Any]] | None
    raw: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Retry:
    """The attempt an outcome leads to, written in the same transaction as the outcome.

    One transaction, so no moment exists (for a crash, or another daemon's ``finish_runs``)
    where the outcome is recorded and the retry it earned is not. ``due_at`` None: the policy
    would retry but the contact's deadline leaves no allowed moment (a ``retry.expired`` event
    instead of an attempt).
    """

    after: AttemptView
    outcome: str
    due_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class ScrapeCounts:
    """What a metrics scrape reads from the database: counts, never rows."""

    #: calls that may exist now (dialing or in flight), by campaign name (every campaign)
    in_flight: Mapping[str, int]
    #: planned attempts of active campaigns whose time has come
    due: int
    #: attempts that reached an outcome, by outcome (the whole database)
    finished: Mapping[str, int]


@dataclass(frozen=True, kw_only=True)
class LatestCounts:
    """A campaign's contacts by the state and outcome of their newest attempt (the progress
    display), counted by the database."""

    campaign: str
    counts: Mapping[tuple[AttemptState, str | None], int]

    @property
    def contacts(self) -> int:
        return sum(self.counts.values())

    def in_states(self, states: frozenset[AttemptState]) -> int:
        return sum(n for (state, _), n in self.counts.items() if state in states)

    def outcomes(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for (_, outcome), n in self.counts.items():
            if outcome is not None:
                found[outcome] = found.get(outcome, 0) + n
        return found


@dataclass(frozen=True, kw_only=True)
class RunProgress:
    """How far a campaign's newest run is: what the status page's progress bar shows.

    Each contact has one attempt at a time that is not final in a run (a retry is planned
    only once the attempt before it ended), so these are counts of contacts."""

    run_id: int
    fire_time: datetime
    #: contacts the run calls (each has a first attempt in it)
    contacts: int
    #: of those, the ones whose newest attempt is final
    settled: int
    #: of those, the ones with a call that may exist now (dialing or in flight)
    in_flight: int


@dataclass(frozen=True, kw_only=True)
class WorkerRecord:
    """A daemon that shares the database, with its last heartbeat."""

    id: str
    started_at: datetime
    heartbeat_at: datetime

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> WorkerRecord:
        return cls(id=row.id, started_at=row.started_at, heartbeat_at=row.heartbeat_at)


@dataclass(frozen=True, kw_only=True)
class RequestCount:
    """The requests every daemon sent with one API key in one minute."""

    key_name: str
    #: the minute's start, UTC
    minute: datetime
    requests: int
    #: of those, answered 429
    rate_limited: int

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> RequestCount:
        return cls(
            key_name=row.key_name,
            minute=row.minute,
            requests=int(row.requests),
            rate_limited=int(row.rate_limited),
        )
