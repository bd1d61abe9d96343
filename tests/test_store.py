"""The store on both backends: imports, runs, the attempt state machine, outcomes, events."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from dialer.attempts import ALLOWED_TRANSITIONS, AttemptState
from dialer.errors import StoreError
from dialer.store import (
    AttemptView,
    CallResult,
    CampaignState,
    ContactRecord,
    Retry,
    StateChange,
    StateChangeRefused,
    Store,
)
from dialer.store.tables import AttemptRow

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def contacts(n: int) -> list[ContactRecord]:
    return [
        ContactRecord(
            phone=f"+3161234{i:04d}",
            name=f"Person {i}",
            timezone=None,
            variables={"name": f"Person {i}", "slot": "10:30"},
            source_line=i + 2,
        )
        for i in range(n)
    ]


def sync(store: Store, n: int = 3, *, digest: str = "h1", repeat: str = "once") -> int:
    return store.sync_campaign(
        name="reminders",
        source="campaigns/r.toml",
        definition_hash=digest,
        api_key_name="default",
        contacts=contacts(n),
        now=T0,
        repeat=repeat,
    )


def result(**overrides: object) -> CallResult:
    values: dict[str, object] = dict(
        call_status="ended",
        outcome="completed",
        error=None,
        end_reason="customer-ended-call",
        started_at=T0,
        ended_at=T0 + timedelta(seconds=95),
        duration_seconds=95,
        summary="Confirmed the appointment.",
        analysis_result={"sentiment": 8},
        messages=[{"role": "assistant", "content": "Hi"}],
        raw={"id": "call-1", "status": "ended"},
    )
    values.update(overrides)
    return CallResult(**values)  # type: ignore[arg-type]


def test_sync_is_idempotent_and_keeps_contacts(store: Store) -> None:
    cid = sync(store)
    assert sync(store) == cid
    assert [c.phone for c in store.contacts(cid)] == [c.phone for c in contacts(3)]
    assert store.contacts(cid)[0].variables == {"name": "Person 0", "slot": "10:30"}


def test_run_is_created_once_per_fire_time(store: Store) -> None:
    cid = sync(store)
    assert store.create_run(cid, fire_time=T0, now=T0) is not None
    assert store.create_run(cid, fire_time=T0, now=T0 + timedelta(seconds=5)) is None
    assert len(store.runs(cid)) == 1
    assert len(store.due_attempts(now=T0, limit=100)) == 3


@pytest.mark.parametrize("repeat", ["once", "every_run"])
def test_planning_a_run_takes_no_python_memory_per_contact(store: Store, repeat: str) -> None:
    """create_run plans its attempts in the database (INSERT ... SELECT): the memory it takes
    in this process is the same for 300 contacts as for 20,000. A row and a parameter dict per
    contact made planning a 1,000,000-contact run take ~650 MB of the daemon's memory."""
    peaks = {}
    for n in (300, 20_000):
        cid = store.sync_campaign(
            name=f"big-{n}",
            source=f"big-{n}.toml",
            definition_hash="h1",
            api_key_name="default",
            contacts=(
                ContactRecord(
                    phone=f"+3162{i:07d}",
                    name=None,
                    timezone=None,
                    variables={},
                    source_line=i + 2,
                )
                for i in range(n)
            ),
            now=T0,
            repeat=repeat,
        )
        tracemalloc.start()
        try:
            store.create_run(cid, fire_time=T0, now=T0 + timedelta(seconds=1))
            peaks[n] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        with store.session() as session:
            planned = session.exec(
                sa.select(AttemptRow.phone, AttemptRow.attempt_no, AttemptRow.state)  # type: ignore[call-overload]
                .where(AttemptRow.campaign_id == cid)
                .order_by(AttemptRow.id)
            ).all()
        assert [tuple(row) for row in planned] == [
            (f"+3162{i:07d}", 1, AttemptState.PLANNED.value) for i in range(n)
        ]
    # 20,000 contacts as lists and dicts would be ~14 MB more
    assert peaks[20_000] < peaks[300] + 1_000_000, peaks


def test_new_contacts_join_open_run_and_removed_ones_are_cancelled(store: Store) -> None:
    cid = sync(store, 3)
    store.create_run(cid, fire_time=T0, now=T0)
    store.sync_campaign(
        name="reminders",
        source="r.toml",
        definition_hash="h2",
        api_key_name="default",
        contacts=contacts(4)[1:],
        now=T0,
    )
    states = {a.phone: a.state for a in store.attempts(campaign_id=cid)}
    assert states[contacts(4)[0].phone] is AttemptState.CANCELLED
    assert states[contacts(4)[3].phone] is AttemptState.PLANNED
    assert len(states) == 4


def test_dialing_is_a_claim_only_one_worker_wins(store: Store) -> None:
    cid = sync(store, 1)
    store.create_run(cid, fire_time=T0, now=T0)
    (due,) = store.due_attempts(now=T0, limit=10)
    assert store.begin_dialing(due.id, owner="a", body={"destination": due.phone}, now=T0)
    assert not store.begin_dialing(due.id, owner="b", body={"destination": due.phone}, now=T0)
    view = store.attempt(due.id)
    assert view.state is AttemptState.DIALING and view.owner == "a" and view.dialing_at == T0
    assert store.due_attempts(now=T0, limit=10) == []


def test_a_run_finishes_once_when_its_last_attempt_is_final(store: Store) -> None:
    cid = sync(store, 2)
    run_id = store.create_run(cid, fire_time=T0, now=T0)
    first, second = store.due_attempts(now=T0, limit=10)
    store.begin_dialing(first.id, owner="a", body={}, now=T0)
    store.mark_in_flight(first.id, call_id="call-1", now=T0, next_poll_at=T0)
    store.record_outcome(first.id, result=result(), now=T0)
    assert store.finish_runs(now=T0) == []  # the second attempt is still planned
    store.begin_dialing(second.id, owner="a", body={}, now=T0)
    store.mark_in_flight(second.id, call_id="call-2", now=T0, next_poll_at=T0)
    assert store.finish_runs(now=T0) == []  # in flight
    store.mark_unknown(second.id, now=T0, next_poll_at=T0, reason="stuck")
    assert store.finish_runs(now=T0 + timedelta(minutes=1)) == [run_id]  # unknown is final
    assert store.finish_runs(now=T0 + timedelta(minutes=2)) == []
    assert [e.kind for e in store.events(kind="run.finished")] == ["run.finished"]
    assert all(run.finished_at is not None for run in store.runs(cid))


def test_full_lifecycle_stores_every_outcome_field(store: Store) -> None:
    cid = sync(store, 1)
    store.create_run(cid, fire_time=T0, now=T0)
    (due,) = store.due_attempts(now=T0, limit=10)
    store.begin_dialing(due.id, owner="a", body={"destination": due.phone}, now=T0)
    store.mark_in_flight(due.id, call_id="call-1", now=T0, next_poll_at=T0 + timedelta(seconds=5))
    look = store.claim_polls(now=T0 + timedelta(seconds=5), limit=10, lease=timedelta(seconds=30))
    assert [a.id for a in look] == [due.id]
    store.record_poll(
        due.id,
        call_status="in-progress",
        raw={"status": "in-progress"},
        now=T0,
        next_poll_at=T0 + timedelta(seconds=30),
    )
    assert store.record_outcome(due.id, result=result(), now=T0 + timedelta(seconds=100))
    assert not store.record_outcome(due.id, result=result(), now=T0 + timedelta(seconds=101))
    with store.session() as session:
        row = session.get(AttemptRow, due.id)
        assert row is not None
        assert (row.state, row.outcome, row.duration_seconds, row.summary) == (
            "ended",
            "completed",
            95,
            "Confirmed the appointment.",
        )
        assert row.analysis_result == {"sentiment": 8}
        assert row.messages == [{"role": "assistant", "content": "Hi"}]
        assert row.started_at == T0 and row.polls == 1
    kinds = [e.kind for e in store.events(attempt_id=due.id)]
    assert kinds == ["attempt.dialing", "attempt.created", "attempt.ended"]
    assert store.finish_runs(now=T0 + timedelta(minutes=5)) != []
    assert all(run.finished_at is not None for run in store.runs(cid))


def test_unknown_still_records_a_late_result(store: Store) -> None:
    cid = sync(store, 1)
    store.create_run(cid, fire_time=T0, now=T0)
    (due,) = store.due_attempts(now=T0, limit=10)
    store.begin_dialing(due.id, owner="a", body={}, now=T0)
    store.mark_in_flight(due.id, call_id="call-9", now=T0, next_poll_at=T0)
    store.mark_unknown(
        due.id, now=T0 + timedelta(hours=1), next_poll_at=T0 + timedelta(hours=2), reason="stuck"
    )
    assert store.attempt(due.id).outcome == "unknown"
    assert store.record_outcome(due.id, result=result(), now=T0 + timedelta(hours=3))
    late = store.attempt(due.id)
    assert (late.state, late.reason) == (AttemptState.ENDED, None)  # no longer "stuck"


def test_illegal_transitions_are_refused(store: Store) -> None:
    cid = sync(store, 1)
    store.create_run(cid, fire_time=T0, now=T0)
    (due,) = store.due_attempts(now=T0, limit=10)
    from dialer.store import TransitionRefused

    with pytest.raises(TransitionRefused):
        store.mark_in_flight(due.id, call_id="x", now=T0, next_poll_at=T0)  # never dialled
    assert not store.record_outcome(due.id, result=result(), now=T0)
    assert store.attempt(due.id).state is AttemptState.PLANNED


def test_release_unplaced_and_retry(store: Store) -> None:
    cid = sync(store, 1)
    store.create_run(cid, fire_time=T0, now=T0)
    (due,) = store.due_attempts(now=T0, limit=10)
    store.begin_dialing(due.id, owner="a", body={}, now=T0)
    store.release_unplaced(due.id, due_at=T0 + timedelta(minutes=1), reason="rate_limited", now=T0)
    assert store.due_attempts(now=T0, limit=10) == []
    (again,) = store.due_attempts(now=T0 + timedelta(minutes=1), limit=10)
    assert again.id == due.id and again.reason == "rate_limited"
    store.begin_dialing(due.id, owner="a", body={}, now=T0)
    store.mark_in_flight(due.id, call_id="c", now=T0, next_poll_at=T0)
    in_flight = store.attempt(due.id)
    store.record_outcome(
        due.id,
        result=result(outcome="no_answer", call_status="failed"),
        now=T0,
        retry=Retry(after=in_flight, outcome="no_answer", due_at=T0 + timedelta(hours=2)),
    )
    (retry,) = store.due_attempts(now=T0 + timedelta(hours=2), limit=10)
    assert (retry.attempt_no, retry.reason) == (2, "retry:no_answer")
    assert store.calls_since(due.phone, T0 - timedelta(days=7)) == [T0]


def in_flight_attempt(store: Store, *, repeat: str = "once") -> tuple[int, AttemptView]:
    """One contact, one run, its attempt dialled and in flight."""
    cid = sync(store, 1, repeat=repeat)
    run_id = store.create_run(cid, fire_time=T0, now=T0)
    assert run_id is not None
    (due,) = store.due_attempts(now=T0, limit=10)
    store.begin_dialing(due.id, owner="a", body={}, now=T0)
    store.mark_in_flight(due.id, call_id="c", now=T0, next_poll_at=T0)
    return run_id, store.attempt(due.id)


def test_an_outcome_and_its_retry_are_one_write(store: Store) -> None:
    # No moment exists where the outcome is recorded and its retry is not: a run whose only
    # attempt just ended with a retry to come is never seen as finished, by any daemon.
    run_id, attempt = in_flight_attempt(store)
    retry = Retry(after=attempt, outcome="busy", due_at=T0 + timedelta(minutes=10))
    busy = result(outcome="busy", call_status="failed")
    assert store.record_outcome(attempt.id, result=busy, now=T0, retry=retry)
    assert store.finish_runs(now=T0) == []
    # the same end seen again (a webhook after the list): neither the outcome nor the retry twice
    assert not store.record_outcome(attempt.id, result=busy, now=T0, retry=retry)
    history = store.attempt_history(run_id, attempt.contact_id)
    assert [(a.attempt_no, a.state) for a in history] == [
        (1, AttemptState.ENDED),
        (2, AttemptState.PLANNED),
    ]
    assert len(store.events(kind="attempt.retry_planned")) == 1


def test_a_retry_past_the_deadline_is_an_event_and_the_run_finishes(store: Store) -> None:
    run_id, attempt = in_flight_attempt(store)
    expired = Retry(after=attempt, outcome="no_answer", due_at=None)
    assert store.record_outcome(
        attempt.id, result=result(outcome="no_answer"), now=T0, retry=expired
    )
    assert [a.attempt_no for a in store.attempt_history(run_id, attempt.contact_id)] == [1]
    (event,) = store.events(kind="retry.expired")
    assert (event.attempt_id, event.data) == (attempt.id, {"outcome": "no_answer"})
    assert store.finish_runs(now=T0) == [run_id]


def test_a_retry_that_exists_already_does_not_fail_the_outcome(store: Store) -> None:
    # On PostgreSQL a failed INSERT would abort the transaction that holds the outcome.
    run_id, attempt = in_flight_attempt(store)
    with store.session() as session:  # another writer got there first: attempt 2 exists
        session.add(
            AttemptRow(
                run_id=run_id,
                campaign_id=attempt.campaign_id,
                contact_id=attempt.contact_id,
                phone=attempt.phone,
                attempt_no=2,
                state=AttemptState.PLANNED.value,
                due_at=T0 + timedelta(minutes=10),
                created_at=T0,
                updated_at=T0,
            )
        )
    later = Retry(after=attempt, outcome="busy", due_at=T0 + timedelta(hours=5))
    assert store.record_outcome(attempt.id, result=result(outcome="busy"), now=T0, retry=later)
    history = store.attempt_history(run_id, attempt.contact_id)
    assert [(a.attempt_no, a.due_at) for a in history] == [
        (1, T0),
        (2, T0 + timedelta(minutes=10)),
    ]
    assert store.attempt(attempt.id).outcome == "busy"


def test_aware_datetimes_round_trip(store: Store) -> None:
    from datetime import timezone

    cid = sync(store, 1)
    fire = datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    store.create_run(cid, fire_time=fire, now=T0)
    (run,) = store.runs(cid)
    assert run.fire_time == fire and run.fire_time.tzinfo is UTC


def test_every_state_has_transition_rules() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(AttemptState)


def test_shared_budget_spaces_requests_and_allows_a_burst(store: Store) -> None:
    interval = timedelta(seconds=1)
    grants = 0
    now = T0
    waits: list[timedelta] = []
    # Ask every 100 ms for 10 s: a burst of 3, then one per second.
    for _ in range(100):
        wait = store.take_request_slot("default", now=now, interval=interval, burst=3)
        if wait == timedelta(0):
            grants += 1
        else:
            waits.append(wait)
        now += timedelta(milliseconds=100)
    assert grants == 3 + 9  # burst plus one per elapsed second (the first ask opened the window)
    assert all(timedelta(0) < w <= interval for w in waits)


def test_shared_budget_is_per_key(store: Store) -> None:
    interval = timedelta(seconds=10)
    assert store.take_request_slot("a", now=T0, interval=interval, burst=1) == timedelta(0)
    assert store.take_request_slot("b", now=T0, interval=interval, burst=1) == timedelta(0)
    assert store.take_request_slot("a", now=T0, interval=interval, burst=1) == interval


def test_heartbeats_and_poll_claims(store: Store) -> None:
    store.heartbeat("w1", now=T0)
    store.heartbeat("w2", now=T0 - timedelta(minutes=5))
    assert store.live_workers(now=T0, ttl=timedelta(seconds=30)) == {"w1"}
    cid = sync(store, 2)
    store.create_run(cid, fire_time=T0, now=T0)
    for i, due in enumerate(store.due_attempts(now=T0, limit=10)):
        store.begin_dialing(due.id, owner="w1", body={}, now=T0)
        store.mark_in_flight(due.id, call_id=f"c{i}", now=T0, next_poll_at=T0)
    claimed = store.claim_polls(now=T0, limit=10, lease=timedelta(seconds=60))
    assert len(claimed) == 2
    assert (
        store.claim_polls(now=T0 + timedelta(seconds=59), limit=10, lease=timedelta(seconds=60))
        == []
    )
    assert (
        len(
            store.claim_polls(now=T0 + timedelta(seconds=60), limit=10, lease=timedelta(seconds=60))
        )
        == 2
    )


def test_a_stale_reconcile_decision_cannot_touch_a_newer_dial(store: Store) -> None:
    """ABA: released and dialled again by someone else, the old decision must fail."""
    from dialer.store import TransitionRefused

    cid = sync(store, 1)
    store.create_run(cid, fire_time=T0, now=T0)
    (due,) = store.due_attempts(now=T0, limit=10)
    store.begin_dialing(due.id, owner="dead", body={}, now=T0)
    stale = store.attempt(due.id)  # two reconcilers read this
    store.release_unplaced(due.id, due_at=T0, reason="absent", now=T0, dialed_at=stale.dialing_at)
    later = T0 + timedelta(seconds=5)
    store.begin_dialing(due.id, owner="alive", body={}, now=later)
    with pytest.raises(TransitionRefused):
        store.release_unplaced(
            due.id, due_at=T0, reason="absent", now=T0, dialed_at=stale.dialing_at
        )
    assert store.attempt(due.id).owner == "alive"


def test_a_paused_campaign_cannot_be_dialled_even_from_a_stale_read(store: Store) -> None:
    cid = sync(store, 1)
    store.create_run(cid, fire_time=T0, now=T0)
    (due,) = store.due_attempts(now=T0, limit=10)  # read before the pause
    store.change_campaign_state("reminders", CampaignState.PAUSED, now=T0)
    assert not store.begin_dialing(due.id, owner="a", body={}, now=T0)
    store.change_campaign_state("reminders", CampaignState.ACTIVE, now=T0)
    assert store.begin_dialing(due.id, owner="a", body={}, now=T0)


def test_a_cancel_cancels_what_was_never_dialled_and_is_final(store: Store) -> None:
    cid = sync(store, 3)
    store.create_run(cid, fire_time=T0, now=T0)
    dialled, *_ = store.due_attempts(now=T0, limit=10)
    assert store.begin_dialing(dialled.id, owner="a", body={}, now=T0)
    change = store.change_campaign_state("reminders", CampaignState.CANCELLED, now=T0)
    assert change == StateChange(
        previous=CampaignState.ACTIVE, state=CampaignState.CANCELLED, cancelled=2
    )
    assert store.attempt(dialled.id).state is AttemptState.DIALING  # followed to its end
    with pytest.raises(StateChangeRefused, match="final"):
        store.change_campaign_state("reminders", CampaignState.ACTIVE, now=T0)
    campaign = store.campaign("reminders")
    assert campaign is not None and campaign.state is CampaignState.CANCELLED
    kinds = [e.kind for e in store.events() if e.kind.startswith("campaign.")]
    assert kinds == ["campaign.created", "campaign.cancelled"]
    assert store.change_campaign_state("other", CampaignState.PAUSED, now=T0) is None


#: a database that refuses to cancel any attempt: a full disk, as far as the store can tell
REFUSE_CANCELLING = {
    "sqlite": [
        "CREATE TRIGGER refuse_cancelling BEFORE UPDATE OF state ON attempts"
        " WHEN NEW.state = 'cancelled' BEGIN SELECT RAISE(ABORT, 'the disk is full'); END"
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION refuse_cancelling() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'the disk is full'; END $$",
        "CREATE TRIGGER refuse_cancelling BEFORE UPDATE OF state ON attempts FOR EACH ROW"
        " WHEN (NEW.state = 'cancelled') EXECUTE FUNCTION refuse_cancelling()",
    ],
}


def test_a_cancel_that_fails_midway_leaves_the_campaign_as_it_was(store: Store) -> None:
    """The state and the cancellations it implies commit together: when the database refuses
    to cancel the planned attempts, the campaign stays active with everything still planned,
    and no campaign.cancelled event says otherwise."""
    cid = sync(store, 3)
    store.create_run(cid, fire_time=T0, now=T0)
    with store.session() as session:
        for statement in REFUSE_CANCELLING[store.dialect]:
            session.execute(sa.text(statement))
    with pytest.raises(StoreError, match="the disk is full"):
        store.change_campaign_state("reminders", CampaignState.CANCELLED, now=T0)
    campaign = store.campaign("reminders")
    assert campaign is not None and campaign.state is CampaignState.ACTIVE
    assert len(store.due_attempts(now=T0, limit=10)) == 3
    assert store.events(kind="campaign.cancelled") == []


def test_a_call_that_ends_after_its_campaign_was_cancelled_earns_no_retry(store: Store) -> None:
    run_id, attempt = in_flight_attempt(store)
    (campaign,) = store.campaigns()
    assert store.change_campaign_state(campaign.name, CampaignState.CANCELLED, now=T0)
    retry = Retry(after=attempt, outcome="no_answer", due_at=T0 + timedelta(hours=2))
    assert store.record_outcome(attempt.id, result=result(outcome="no_answer"), now=T0, retry=retry)
    assert [a.attempt_no for a in store.attempt_history(run_id, attempt.contact_id)] == [1]
    (event,) = store.events(kind="retry.dropped")
    assert event.data["reason"] == "campaign_cancelled"
    assert store.finish_runs(now=T0) != []  # nothing keeps the run open


def test_a_retry_earned_after_a_newer_run_was_created_is_dropped(store: Store) -> None:
    """The call was in flight when the next fire made its run: that run calls the contact,
    the retry would call them a second time."""
    _, attempt = in_flight_attempt(store, repeat="every_run")
    (campaign,) = store.campaigns()
    assert campaign.id is not None
    fire2 = T0 + timedelta(minutes=5)
    assert store.create_run(campaign.id, fire_time=fire2, now=fire2) is not None
    retry = Retry(after=attempt, outcome="no_answer", due_at=fire2 + timedelta(minutes=10))
    no_answer = result(outcome="no_answer", call_status="failed")
    assert store.record_outcome(attempt.id, result=no_answer, now=fire2, retry=retry)
    assert len(store.due_attempts(now=fire2 + timedelta(hours=1), limit=10)) == 1
    (event,) = store.events(kind="retry.dropped")
    assert event.data["reason"] == "superseded"


def test_a_dial_released_after_a_newer_run_was_created_is_cancelled(store: Store) -> None:
    cid = sync(store, 1, repeat="every_run")
    store.create_run(cid, fire_time=T0, now=T0)
    (due,) = store.due_attempts(now=T0, limit=10)
    assert store.begin_dialing(due.id, owner="a", body={}, now=T0)
    fire2 = T0 + timedelta(minutes=1)
    assert store.create_run(cid, fire_time=fire2, now=fire2) is not None
    store.release_unplaced(due.id, due_at=fire2, reason="rate_limited", now=fire2)  # a 429
    assert (store.attempt(due.id).state, store.attempt(due.id).reason) == (
        AttemptState.CANCELLED,
        "superseded",
    )
    assert len(store.due_attempts(now=fire2 + timedelta(minutes=1), limit=10)) == 1


def test_a_run_created_late_for_an_earlier_fire_supersedes_nothing_newer(store: Store) -> None:
    cid = sync(store, 1)
    store.create_run(cid, fire_time=T0 + timedelta(days=1), now=T0)
    late = store.create_run(cid, fire_time=T0, now=T0)  # a daemon with a stale schedule
    assert late is not None
    (due,) = store.due_attempts(now=T0 + timedelta(days=1), limit=10)
    assert due.run_id != late  # the newer fire's attempt is the one kept
