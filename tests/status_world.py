"""A campaign in every state, for the status page's tests (store reads and web pages)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dialer.attempts import AttemptState
from dialer.store import CallResult, ContactRecord, Retry, Store

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def contacts(n: int) -> list[ContactRecord]:
    return [
        ContactRecord(
            phone=f"+316123{i:05d}",
            name=f"Person {i}" if i % 7 else f"Ëlise van Dijk-{i}",
            timezone=None,
            variables={},
            source_line=i + 2,
        )
        for i in range(n)
    ]


def ended(outcome: str, status: str = "ended", summary: str | None = None) -> CallResult:
    return CallResult(
        call_status=status,
        outcome=outcome,
        error=None,
        end_reason=None,
        started_at=T0,
        ended_at=T0 + timedelta(seconds=60),
        duration_seconds=60,
        summary=summary,
        analysis_result=None,
        messages=None,
        raw={},
    )


def campaign_in_every_state(
    store: Store,
    n: int = 60,
    *,
    name: str = "browse",
    people: list[ContactRecord] | None = None,
    summary: str | None = None,
) -> int:
    """A campaign whose attempts are in every state, with retries (``summary``: what each
    ended call's summary says)."""
    cid = store.sync_campaign(
        name=name,
        source=f"campaigns/{name}.toml",
        definition_hash="h",
        api_key_name="default",
        contacts=people if people is not None else contacts(n),
        now=T0,
    )
    store.create_run(cid, fire_time=T0, now=T0)
    now = T0 + timedelta(minutes=1)
    for i, attempt in enumerate(store.attempts(campaign_id=cid)):
        step = i % 10
        if step == 0:
            continue  # planned
        if step == 5:
            store.close_unplaced(attempt.id, state=AttemptState.SKIPPED, reason="dnc", now=now)
            continue
        if step == 6:
            store.close_unplaced(attempt.id, state=AttemptState.EXPIRED, reason="deadline", now=now)
            continue
        if step == 7:
            store.close_unplaced(
                attempt.id, state=AttemptState.SKIPPED, reason="unknown_timezone", now=now
            )
            continue
        assert store.begin_dialing(attempt.id, owner="w", body={}, now=now)
        if step == 1:
            continue  # dialing
        if step == 9:
            store.mark_create_failed(attempt.id, error="422", now=now)
            continue
        store.mark_in_flight(attempt.id, call_id=f"call-{attempt.id}", now=now, next_poll_at=now)
        if step == 2:
            continue  # in flight
        view = store.attempt(attempt.id)
        if step == 3:
            store.record_outcome(attempt.id, result=ended("completed", summary=summary), now=now)
        elif step == 4:  # no answer, retried: the retry is planned
            retry = Retry(after=view, outcome="no_answer", due_at=now + timedelta(hours=1))
            store.record_outcome(
                attempt.id, result=ended("no_answer", "failed"), now=now, retry=retry
            )
        else:  # busy, no retry left
            store.record_outcome(attempt.id, result=ended("busy", "failed"), now=now)
    return cid
