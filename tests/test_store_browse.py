"""The status page's reads (dialer.store.browse) on both backends, each checked against the
same answer worked out the slow way from every attempt of the campaign."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest

from dialer.attempts import AttemptState
from dialer.progress import campaign_statuses
from dialer.store import AttemptView, Search, Store
from dialer.store.store import REASON_MAX_CHARS
from tests.status_world import T0, campaign_in_every_state, contacts

NOT_CALLED = {AttemptState.SKIPPED, AttemptState.EXPIRED, AttemptState.CANCELLED}


@pytest.fixture
def campaign(store: Store) -> int:
    return campaign_in_every_state(store)


def every_attempt(store: Store, cid: int) -> list[AttemptView]:
    return store.attempts(campaign_id=cid)


def walk(page: Callable[[int | None], list[AttemptView]]) -> list[int]:
    """Every id a keyset paging yields, page after page."""
    seen: list[int] = []
    before: int | None = None
    while True:
        views = page(before)
        if not views:
            return seen
        seen.extend(view.id for view in views)
        before = views[-1].id


def test_progress_is_what_dialer_status_says(store: Store, campaign: int) -> None:
    progress = store.run_progress(campaign)
    (status,) = campaign_statuses(store)
    assert progress is not None
    assert (progress.contacts, progress.settled, progress.in_flight) == (
        status.contacts,
        status.settled,
        status.in_flight,
    )
    assert store.campaign_next_due_at(campaign) == status.next_due_at
    assert status.settled not in (0, status.contacts)  # the campaign is under way


def test_progress_of_a_campaign_never_fired(store: Store) -> None:
    cid = store.sync_campaign(
        name="later",
        source="later.toml",
        definition_hash="h",
        api_key_name="default",
        contacts=contacts(3),
        now=T0,
    )
    assert store.run_progress(cid) is None
    assert store.campaign_next_due_at(cid) is None
    assert store.attempts_up_to(cid, 10) == 0


def test_attempts_up_to_stops_counting_at_its_limit(store: Store, campaign: int) -> None:
    attempts = len(every_attempt(store, campaign))
    assert attempts > 2
    assert store.attempts_up_to(campaign, attempts + 5) == attempts
    assert store.attempts_up_to(campaign, attempts) == attempts
    assert store.attempts_up_to(campaign, 2) == 2


def test_pages_of_groups_walk_every_matching_attempt_newest_first(
    store: Store, campaign: int
) -> None:
    attempts = every_attempt(store, campaign)
    groups = set(Counter((a.state, a.outcome) for a in attempts))
    for chosen in [
        groups,  # everything
        {(AttemptState.ENDED, "busy")},
        {g for g in groups if g[0] is AttemptState.ENDED},
        {(AttemptState.PLANNED, None), (AttemptState.SKIPPED, None)},
        {(AttemptState.ENDED, "voicemail")},  # no such attempt
    ]:
        expected = sorted((a.id for a in attempts if (a.state, a.outcome) in chosen), reverse=True)
        for limit in (1, 4, 50):
            seen = walk(
                lambda before, chosen=chosen, limit=limit: store.newest_attempts(
                    campaign, chosen, by="outcome", before=before, limit=limit
                )
            )
            assert seen == expected


def test_pages_by_reason(store: Store, campaign: int) -> None:
    attempts = every_attempt(store, campaign)
    counts = store.reason_counts(campaign, NOT_CALLED)
    assert counts == Counter((a.state, a.reason) for a in attempts if a.state in NOT_CALLED)
    for reason in ("dnc", "deadline", "unknown_timezone"):
        groups = {(state, reason) for state in NOT_CALLED}
        expected = sorted(
            (a.id for a in attempts if (a.reason == reason and a.state in NOT_CALLED)), reverse=True
        )
        assert expected
        seen = walk(
            lambda before, groups=groups: store.newest_attempts(
                campaign, groups, by="reason", before=before, limit=3
            )
        )
        assert seen == expected


def test_latest_only_leaves_out_attempts_that_were_retried(store: Store, campaign: int) -> None:
    attempts = every_attempt(store, campaign)
    newest = {a.contact_id: a.id for a in sorted(attempts, key=lambda a: a.id)}
    groups = {(AttemptState.ENDED, "no_answer"), (AttemptState.ENDED, "busy")}
    seen = walk(
        lambda before: store.newest_attempts(
            campaign, groups, by="outcome", before=before, limit=2, latest_only=True
        )
    )
    retried = [a for a in attempts if a.outcome == "no_answer"]
    assert retried and all(newest[a.contact_id] != a.id for a in retried)
    assert seen == sorted(
        (a.id for a in attempts if a.outcome == "busy" and newest[a.contact_id] == a.id),
        reverse=True,
    )


@pytest.mark.parametrize(
    ("search", "matches"),
    [
        (Search(name_part="person 1"), lambda a: (a.contact.name or "").startswith("Person 1")),
        (Search(name_part="VAN DIJK"), lambda a: "van Dijk" in (a.contact.name or "")),
        (Search(name_part="50%"), lambda a: False),  # % is a character, not a wildcard
        (Search(digits="00012"), lambda a: "00012" in a.phone),
    ],
)
def test_a_search_in_windows_finds_every_match(
    store: Store, campaign: int, search: Search, matches: Callable[[AttemptView], bool]
) -> None:
    attempts = every_attempt(store, campaign)
    expected = sorted((a.id for a in attempts if matches(a)), reverse=True)
    top = max(a.id for a in attempts) + 1
    found: list[int] = []
    window = 7
    for upper in range(top, 0, -window):
        seen = walk(
            lambda before, upper=upper: store.search_attempts(
                campaign,
                search,
                before=upper if before is None else before,
                floor=max(upper - window, 0),
                limit=2,
            )
        )
        found.extend(seen)
    assert found == expected


def test_a_whole_number_is_found_by_a_seek(store: Store, campaign: int) -> None:
    attempts = every_attempt(store, campaign)
    phone = next(a.phone for a in attempts if a.outcome == "no_answer")
    views = store.search_attempts(campaign, Search(phone=phone), before=10**9)
    assert [v.id for v in views] == sorted(
        (a.id for a in attempts if a.phone == phone), reverse=True
    )
    assert len(views) == 2  # the call and its retry


def test_calls_per_hour(store: Store, campaign: int) -> None:
    attempts = every_attempt(store, campaign)
    dialled = [a for a in attempts if a.dialing_at is not None]
    hour = T0.replace(minute=0)
    assert store.calls_per_hour(campaign, since=hour, until=hour + timedelta(hours=2)) == {
        hour: len(dialled)
    }
    assert (
        store.calls_per_hour(
            campaign, since=hour + timedelta(hours=1), until=hour + timedelta(hours=2)
        )
        == {}
    )
    assert store.last_dialled_at(campaign) == max(a.dialing_at for a in dialled if a.dialing_at)


def test_request_counts_add_up_per_minute_and_old_minutes_are_forgotten(store: Store) -> None:
    minute = T0
    store.add_request_counts(
        "w1", minute=minute, counts={"default": (10, 1), "north": (3, 0)}, forget_before=T0
    )
    store.add_request_counts("w1", minute=minute, counts={"default": (2, 0)}, forget_before=T0)
    store.add_request_counts(
        "w2", minute=minute + timedelta(minutes=1), counts={"default": (5, 0)}, forget_before=T0
    )
    got = {
        (c.key_name, c.minute, c.requests, c.rate_limited) for c in store.request_counts_since(T0)
    }
    assert got == {
        ("default", minute, 12, 1),
        ("north", minute, 3, 0),
        ("default", minute + timedelta(minutes=1), 5, 0),
    }
    store.add_request_counts(
        "w2", minute=T0 + timedelta(minutes=2), counts={}, forget_before=T0 + timedelta(minutes=1)
    )
    assert {c.minute for c in store.request_counts_since(T0)} == {minute + timedelta(minutes=1)}


def test_workers_seen_since(store: Store) -> None:
    store.heartbeat("old", now=T0)
    store.heartbeat("new", now=T0 + timedelta(minutes=5))
    assert [w.id for w in store.workers_seen_since(T0)] == ["new", "old"]
    assert [w.id for w in store.workers_seen_since(T0 + timedelta(minutes=1))] == ["new"]


def test_a_long_reason_is_kept_short_enough_for_its_index(store: Store, campaign: int) -> None:
    planned = store.attempts(campaign_id=campaign, states=[AttemptState.PLANNED])[0]
    store.close_unplaced(planned.id, state=AttemptState.SKIPPED, reason="x" * 5000, now=T0)
    assert store.attempt(planned.id).reason == "x" * REASON_MAX_CHARS
