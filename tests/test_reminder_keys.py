"""Reminders from a list that changes, in the store: one reminder per key across runs, keys
added and gone between two exports, the appointment moved, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from dialer.attempts import AttemptState
from dialer.policy.reminders import KeyState, key_identity, reminder_key
from dialer.store import CallResult, ContactRecord, Retry, Store

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
VISIT = datetime(2027, 3, 2, 13, 0, tzinfo=UTC)


def patient(
    i: int, *, visit: datetime | None = VISIT, contact_id: str | None = None
) -> ContactRecord:
    variables = {"name": f"Patient {i}"} | ({"id": contact_id} if contact_id else {})
    return ContactRecord(
        phone=f"+3161234{i:04d}",
        name=f"Patient {i}",
        timezone=None,
        variables=variables,
        appointment_at=visit,
        source_line=i + 2,
    )


def export(
    store: Store, rows: Sequence[ContactRecord], *, version: str, repeat: str = "once"
) -> int:
    """One export of the clinic's list, imported as the daemon does."""
    return store.sync_campaign(
        name="reminders",
        source="reminders.toml",
        definition_hash=version,
        api_key_name="default",
        contacts=rows,
        now=T0,
        repeat=repeat,
    )


def outcome(name: str) -> CallResult:
    return CallResult(
        call_status="ended" if name in ("completed", "voicemail") else "failed",
        outcome=name,
        error=None,
        end_reason=None,
        started_at=None,
        ended_at=T0,
        duration_seconds=None,
        summary=None,
        analysis_result=None,
        messages=None,
        raw={},
    )


def call(store: Store, attempt_id: int, result: str, *, retry_at: datetime | None = None) -> None:
    """Dial the attempt and record its outcome (and the retry it earned, if any)."""
    assert store.begin_dialing(attempt_id, owner="a", body={}, now=T0)
    store.mark_in_flight(attempt_id, call_id=f"call-{attempt_id}", now=T0, next_poll_at=T0)
    attempt = store.attempt(attempt_id)
    retry = None if retry_at is None else Retry(after=attempt, outcome=result, due_at=retry_at)
    assert store.record_outcome(attempt_id, result=outcome(result), now=T0, retry=retry)


def states(store: Store, campaign_id: int) -> dict[str, KeyState]:
    return {k.key: k.state({"completed"}) for k in store.iter_keys(campaign_id)}


def test_keys_are_the_id_else_the_phone_with_the_appointment() -> None:
    assert patient(1).key == "+31612340001@2027-03-02T13:00:00+00:00"
    assert patient(1, visit=None).key == "+31612340001"
    assert patient(1, contact_id="A-7").key == "id:A-7@2027-03-02T13:00:00+00:00"
    assert key_identity(patient(1, contact_id="A-7").key) == "id:A-7"
    assert key_identity(patient(1).key) == "+31612340001"
    # an id of its own with an "@" and no appointment is all identity
    assert key_identity(reminder_key(phone="+1", contact_id="a@b", appointment_at=None)) == (
        "id:a@b"
    )


def test_one_number_may_hold_two_appointments(store: Store) -> None:
    later = VISIT + timedelta(days=7)
    cid = export(store, [patient(1), patient(1, visit=later)], version="v1")
    assert [c.key for c in store.contacts(cid)] == [patient(1).key, patient(1, visit=later).key]


def test_a_later_run_calls_no_key_the_first_planned(store: Store) -> None:
    """Once per key: done, closed or pending, a key is not planned again by the next fire."""
    cid = export(store, [patient(1), patient(2), patient(3)], version="v1")
    assert store.create_run(cid, fire_time=T0, now=T0) is not None
    done, retried, pending = store.due_attempts(now=T0, limit=10)
    call(store, done.id, "completed")
    call(store, retried.id, "no_answer", retry_at=T0 + timedelta(hours=2))
    tomorrow = T0 + timedelta(days=1)
    assert store.create_run(cid, fire_time=tomorrow, now=tomorrow) is not None
    attempts = store.attempts(campaign_id=cid)
    assert len(attempts) == 4  # three first attempts and one retry: nothing new
    retry = next(a for a in attempts if a.attempt_no == 2)
    # the retry keeps its time and its count: it is the key's second attempt, not a first one
    assert (retry.state, retry.due_at) == (AttemptState.PLANNED, T0 + timedelta(hours=2))
    assert store.attempt(pending.id).state is AttemptState.PLANNED  # not superseded
    assert states(store, cid) == {
        patient(1).key: KeyState.DONE,
        patient(2).key: KeyState.PENDING,
        patient(3).key: KeyState.PENDING,
    }


def test_every_run_still_calls_everyone_at_every_fire(store: Store) -> None:
    cid = export(store, [patient(1)], version="v1", repeat="every_run")
    store.create_run(cid, fire_time=T0, now=T0)
    (first,) = store.due_attempts(now=T0, limit=10)
    call(store, first.id, "completed")
    tomorrow = T0 + timedelta(days=1)
    store.create_run(cid, fire_time=tomorrow, now=tomorrow)
    assert len(store.due_attempts(now=tomorrow, limit=10)) == 1


def test_a_new_row_joins_the_latest_run_at_once_and_reopens_it(store: Store) -> None:
    cid = export(store, [patient(1)], version="v1")
    run_id = store.create_run(cid, fire_time=T0, now=T0)
    (first,) = store.due_attempts(now=T0, limit=10)
    call(store, first.id, "completed")
    assert store.finish_runs(now=T0) == [run_id]
    export(store, [patient(1), patient(2)], version="v2")  # added this morning
    (added,) = store.due_attempts(now=T0, limit=10)
    assert (added.phone, added.run_id) == (patient(2).phone, run_id)
    assert store.runs(cid)[0].finished_at is None
    assert [e.kind for e in store.events(kind="run.reopened")] == ["run.reopened"]


def test_rows_added_before_the_first_fire_wait_for_it(store: Store) -> None:
    cid = export(store, [patient(1)], version="v1")
    export(store, [patient(1), patient(2)], version="v2")
    assert store.due_attempts(now=T0, limit=10) == []
    store.create_run(cid, fire_time=T0, now=T0)
    assert len(store.due_attempts(now=T0, limit=10)) == 2


def test_a_removed_row_is_cancelled_with_its_reason_and_a_rescheduled_one_too(
    store: Store,
) -> None:
    moved = VISIT + timedelta(days=2)
    cid = export(store, [patient(1), patient(2), patient(3)], version="v1")
    store.create_run(cid, fire_time=T0, now=T0)
    # the next export: patient 1 cancelled the appointment, patient 2 moved it
    export(store, [patient(2, visit=moved), patient(3)], version="v2")
    by_key = {k.key: k for k in store.iter_keys(cid)}
    assert by_key[patient(1).key].removed and by_key[patient(2).key].removed
    cancelled = {e.attempt_id: e.data["reason"] for e in store.events(kind="attempt.cancelled")}
    reasons = {store.attempt(a).phone: reason for a, reason in cancelled.items()}
    assert reasons == {patient(1).phone: "removed", patient(2).phone: "rescheduled"}
    due = sorted((a.phone, a.contact.appointment_at) for a in store.due_attempts(now=T0, limit=9))
    assert due == [(patient(2).phone, moved), (patient(3).phone, VISIT)]
    assert states(store, cid)[patient(1).key] is KeyState.REMOVED


def test_a_row_put_back_after_it_was_removed_is_planned_again(store: Store) -> None:
    cid = export(store, [patient(1), patient(2)], version="v1")
    store.create_run(cid, fire_time=T0, now=T0)
    export(store, [patient(2)], version="v2")
    export(store, [patient(1), patient(2)], version="v3")  # an export that was wrong, fixed
    assert sorted(a.phone for a in store.due_attempts(now=T0, limit=9)) == [
        patient(1).phone,
        patient(2).phone,
    ]


def test_a_call_in_flight_when_its_row_is_removed_earns_no_retry(store: Store) -> None:
    cid = export(store, [patient(1)], version="v1")
    store.create_run(cid, fire_time=T0, now=T0)
    (due,) = store.due_attempts(now=T0, limit=10)
    assert store.begin_dialing(due.id, owner="a", body={}, now=T0)
    store.mark_in_flight(due.id, call_id="call-1", now=T0, next_poll_at=T0)
    export(store, [patient(2)], version="v2")
    attempt = store.attempt(due.id)
    retry = Retry(after=attempt, outcome="no_answer", due_at=T0 + timedelta(hours=2))
    assert store.record_outcome(due.id, result=outcome("no_answer"), now=T0, retry=retry)
    (dropped,) = store.events(kind="retry.dropped")
    assert dropped.data["reason"] == "removed"
    assert [a.phone for a in store.due_attempts(now=T0 + timedelta(days=1), limit=9)] == [
        patient(2).phone
    ]


def test_an_id_keeps_its_key_when_the_number_changes(store: Store) -> None:
    cid = export(store, [patient(1, contact_id="A-1", visit=None)], version="v1")
    store.create_run(cid, fire_time=T0, now=T0)
    new_number = ContactRecord(
        phone="+31699999999",
        name="Patient 1",
        timezone=None,
        variables={"name": "Patient 1", "id": "A-1"},
        source_line=2,
    )
    export(store, [new_number], version="v2")
    (contact,) = store.contacts(cid)
    assert (contact.key, contact.phone, contact.removed) == ("id:A-1", "+31699999999", False)


@pytest.mark.postgres
def test_two_daemons_importing_one_edit_import_it_once(pg_url: str) -> None:
    """Both read the new export at once; the campaign row takes them in turn, the second
    finds it imported: one cancellation event per removed key, not two."""
    import threading

    with Store(pg_url) as store:
        cid = export(store, [patient(1), patient(2)], version="v1")
        store.create_run(cid, fire_time=T0, now=T0)
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def daemon() -> None:
        with Store(pg_url) as own:
            barrier.wait()
            try:
                export(own, [patient(2), patient(3)], version="v2")
            except BaseException as exc:
                failures.append(exc)

    threads = [threading.Thread(target=daemon) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with Store(pg_url) as store:
        assert len(store.events(kind="attempt.cancelled")) == 1
        assert len(store.events(kind="campaign.updated")) == 1
        assert sorted(a.phone for a in store.due_attempts(now=T0, limit=9)) == [
            patient(2).phone,
            patient(3).phone,
        ]
