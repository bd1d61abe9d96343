"""Domain records: what the store hands to the rest of the dialer (frozen, keyword-only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dialer.attempts import (
    AttemptState,
)


@dataclass(frozen=True, kw_only=True)
class ContactRecord:
    """A contact as the store keeps it (the campaign loader's Contact minus its file context)."""

    phone: str
    name: str | None
    timezone: str | None
    variables: Mapping[str, Any]
    call_at: datetime | None = None
    appointment_at: datetime | None = None
    deadline: datetime | None = None
    source_line: int = 0


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
