"""The tables: SQLModel table models and the column types they share."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from dialer.attempts import AttemptState
from dialer.errors import StoreError
from dialer.store.records import CampaignState


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no offset, so we store naive UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise StoreError("naive datetime given to the store; every instant must be aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class CampaignRow(SQLModel, table=True):
    __tablename__ = "campaigns"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column_kwargs={"unique": True}, max_length=200)
    source: str
    definition_hash: str
    api_key_name: str = "default"
    state: str = CampaignState.ACTIVE.value
    #: "once": each reminder key until done, across runs; "every_run": everyone at each fire
    repeat: str = Field(default="once", max_length=16)
    #: the outcomes that meet the campaign's goal: a key with one of them is done
    done_when: list[str] = Field(default_factory=lambda: ["completed"], sa_type=sa.JSON)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    #: state "held": since when, what VoiceDock said, and the first contact refused so
    held_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    hold_reason: str | None = Field(default=None, max_length=2000)
    hold_phone: str | None = Field(default=None, max_length=32)
    hold_line: int | None = None


class ContactRow(SQLModel, table=True):
    __tablename__ = "contacts"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    #: the reminder key (dialer.policy.reminders): one contact row per key of the campaign
    key: str = Field(max_length=300)
    phone: str = Field(max_length=32)
    name: str | None = None
    timezone: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    call_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    appointment_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    deadline: datetime | None = Field(default=None, sa_type=UTCDateTime)
    source_line: int = 0
    removed: bool = False


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "fire_time"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    fire_time: datetime = Field(sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AttemptRow(SQLModel, table=True):
    __tablename__ = "attempts"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "contact_id", "attempt_no"),
        sa.Index("ix_attempts_state_due", "state", "due_at"),
        sa.Index("ix_attempts_state_poll", "state", "next_poll_at"),
        sa.Index("ix_attempts_phone_dialing", "phone", "dialing_at"),
        # "has this run an attempt still to finish": a seek, not a walk over the run's attempts
        sa.Index("ix_attempts_run_state", "run_id", "state"),
        # The status page (dialer.web) answers as fast for a million contacts as for ten:
        # counts per state and outcome read from this index alone, and a page of one
        # (state, outcome) newest first is a seek;
        sa.Index("ix_attempts_campaign_outcome", "campaign_id", "state", "outcome", "id"),
        # a page of one state newest first whatever the outcome (PostgreSQL orders by id after
        # "outcome IS NULL" only with a sort), and of one skip reason, its reasons counted;
        sa.Index("ix_attempts_campaign_state", "campaign_id", "state", "id", "reason"),
        # a campaign's next due time, one seek;
        sa.Index("ix_attempts_campaign_due", "campaign_id", "state", "due_at"),
        # its calls per hour, a range of the hours shown.
        sa.Index("ix_attempts_campaign_dialing", "campaign_id", "dialing_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", index=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    phone: str = Field(max_length=32)
    attempt_no: int = 1
    state: str = AttemptState.PLANNED.value
    due_at: datetime = Field(sa_type=UTCDateTime)
    reason: str | None = None  # why the last deferral / skip / failure happened
    owner: str | None = None  # the daemon that moved it to dialing
    dialing_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    request_body: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    # the API key the dial was sent with, while it is dialled or followed (NULL when planned):
    # a call exists in that key's organisation only, whatever the campaign file says now
    dial_key_name: str | None = None
    call_id: str | None = Field(default=None, sa_column_kwargs={"unique": True})
    next_poll_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    polls: int = 0
    outcome: str | None = None
    call_status: str | None = None
    error: str | None = None
    end_reason: str | None = None
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    duration_seconds: int | None = None
    summary: str | None = None
    analysis_result: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    messages: list[dict[str, Any]] | None = Field(default=None, sa_type=sa.JSON)
    raw: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class WorkerRow(SQLModel, table=True):
    """Daemons sharing the database; a stale heartbeat means its claims may be taken over."""

    __tablename__ = "workers"

    id: str = Field(primary_key=True, max_length=200)
    started_at: datetime = Field(sa_type=UTCDateTime)
    heartbeat_at: datetime = Field(sa_type=UTCDateTime)


class BudgetRow(SQLModel, table=True):
    """One request budget per API key, shared by every daemon (GCRA's theoretical arrival time)."""

    __tablename__ = "budgets"

    key_name: str = Field(primary_key=True, max_length=200)
    tat: datetime = Field(sa_type=UTCDateTime)


class RequestCountRow(SQLModel, table=True):
    """The requests one daemon sent with one API key in one minute (the status page's budget
    use): each daemon adds its counts once a minute, never a write per request."""

    __tablename__ = "request_counts"

    #: the minute's start, UTC
    minute: datetime = Field(sa_type=UTCDateTime, primary_key=True)
    key_name: str = Field(primary_key=True, max_length=200)
    worker_id: str = Field(primary_key=True, max_length=200)
    requests: int = 0
    #: of those, answered 429
    rate_limited: int = 0


class EventRow(SQLModel, table=True):
    """Append-only history: every transition and every decision, with its reason."""

    __tablename__ = "events"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime)
    campaign_id: int | None = Field(default=None, index=True)
    attempt_id: int | None = Field(default=None, index=True)
    kind: str = Field(max_length=64)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)


# The Core tables the statements are built from: ``Model.__table__`` is there at runtime, but
# SQLModel does not declare it; the metadata's mapping is typed.
CAMPAIGNS = SQLModel.metadata.tables[CampaignRow.__tablename__]
CONTACTS = SQLModel.metadata.tables[ContactRow.__tablename__]
RUNS = SQLModel.metadata.tables[RunRow.__tablename__]
ATTEMPTS = SQLModel.metadata.tables[AttemptRow.__tablename__]
WORKERS = SQLModel.metadata.tables[WorkerRow.__tablename__]
BUDGETS = SQLModel.metadata.tables[BudgetRow.__tablename__]
EVENTS = SQLModel.metadata.tables[EventRow.__tablename__]
REQUEST_COUNTS = SQLModel.metadata.tables[RequestCountRow.__tablename__]


def jsonable(value: Any) -> Any:
    """Round-trip through JSON so datetimes and other objects never reach a JSON column raw."""
    return json.loads(json.dumps(value, default=str))
