"""The engine end to end on the simulator: every contact terminal, one create per contact,
outcome fields stored, a restart that dials nobody twice, reconciliation of `dialing` rows."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlmodel import select

from dialer.attempts import AttemptState
from dialer.campaign import load_campaign
from dialer.daemon import Daemon
from dialer.simulator import Simulator, SimulatorConfig
from dialer.store import Store
from dialer.store.tables import AttemptRow
from tests.clock import FakeClock
from tests.e2e import (
    KEY,
    all_final,
    fast_settings,
    latest_states,
    load,
    nl_numbers,
    run_daemon,
    write_campaign,
    write_config,
)
from tests.engine_world import T0, world
from tests.engine_world import simulator as world_simulator

SCALE = 200.0


def sim(**overrides: object) -> Simulator:
    values: dict[str, object] = dict(
        api_key=KEY, time_scale=SCALE, seed=11, requests_per_minute=6000
    )
    values.update(overrides)
    return Simulator(SimulatorConfig(**values))  # type: ignore[arg-type]


async def test_campaign_runs_to_the_end_with_one_create_per_contact(
    tmp_path: Path, db_url: str
) -> None:
    phones = nl_numbers(20)
    campaign = load(write_campaign(tmp_path, phones))
    config = write_config(tmp_path, db_url=db_url)
    simulator = sim()
    daemon = await run_daemon(config, [campaign], simulator, fast_settings(config, SCALE))

    created = Counter(r.destination for r in simulator.created)
    assert created == Counter(phones)  # exactly one create per contact, by the simulator's record
    with Store(config.database_url) as store:
        assert all_final(store, "e2e")
        assert set(latest_states(store, "e2e").values()) == {AttemptState.ENDED}
        with store.session() as session:
            rows = list(session.exec(select(AttemptRow)).all())
        by_call = {r.call_id: r for r in rows}
        for record in simulator.created:
            row = by_call[record.call_id]
            assert row.raw is not None and row.raw["id"] == record.call_id
            assert row.outcome is not None and row.ended_at is not None
            assert (
                row.request_body is not None
                and row.request_body["destination"] == record.destination
            )
            if record.outcome == "answered":
                assert row.outcome == "completed"
                assert row.duration_seconds and row.summary and row.messages and row.analysis_result
                assert row.started_at is not None
    # Rendered per contact, and our attempt id travels in the metadata.
    first = simulator.created[0].body
    assert first["assistant_override"]["first_message"].startswith("Hello Person ")
    assert "dialer_attempt_id" in first["assistant_override"]["metadata"]
    assert daemon.engine.stats["created"] == 20


async def test_restart_mid_campaign_dials_nobody_twice(tmp_path: Path, db_url: str) -> None:
    phones = nl_numbers(30)
    campaign = load(write_campaign(tmp_path, phones))
    config = write_config(tmp_path, db_url=db_url)
    simulator = sim(talk_seconds_mean=400)  # ~2 s per call: the first daemon stops mid-call
    settings = fast_settings(config, SCALE)

    first = await run_daemon(
        config, [campaign], simulator, settings, stop_when=lambda d: d.engine.stats["created"] >= 10
    )
    with Store(config.database_url) as store:
        states = Counter(latest_states(store, "e2e").values())
    assert states[AttemptState.IN_FLIGHT] > 0, states  # stopped with calls in flight
    assert states[AttemptState.PLANNED] > 0, states
    assert first.engine.stats["created"] >= 10

    # A new daemon (new worker id) on the same database finishes the campaign.
    second = fast_settings(config, SCALE, worker_id="second")
    await run_daemon(config, [load(tmp_path / "e2e.toml")], simulator, second)
    assert Counter(r.destination for r in simulator.created) == Counter(phones)
    with Store(config.database_url) as store:
        assert all_final(store, "e2e")
        assert len(store.runs(store.campaign("e2e").id)) == 1  # type: ignore[union-attr,arg-type]


async def test_dialing_rows_are_reconciled_before_any_redial(
    tmp_path: Path, sqlite_url: str
) -> None:
    """A crash between commit and answer: adopt the call if it exists, else redial."""
    phones = nl_numbers(4)
    campaign = load(write_campaign(tmp_path, phones))
    config = write_config(tmp_path, db_url=sqlite_url)
    simulator = sim()
    now = datetime.now(UTC)
    with Store(config.database_url) as store:
        store.create_schema()
        cid = store.sync_campaign(
            name="e2e",
            source="x",
            definition_hash=campaign.definition_hash,
            api_key_name="default",
            contacts=[_record(c) for c in campaign.contacts],
            now=now,
        )
        row = store.campaign("e2e")
        assert row is not None
        store.create_run(cid, fire_time=row.created_at, now=now)
        due = {a.phone: a for a in store.due_attempts(now=now, limit=10)}
        # Two attempts were committed as dialing by a daemon that then died ("ghost").
        for phone in phones[:2]:
            assert store.begin_dialing(due[phone].id, owner="ghost", body={}, now=now)
    # ...and its POST for the first one did reach VoiceDock.
    import httpx

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=simulator.app),
        base_url="http://sim/api/v1",
        headers={"Authorization": f"Bearer {KEY}"},
    ) as client:
        response = await client.post(
            "/calls/outbound",
            json={
                "destination": phones[0],
                "assistant_id": campaign.assistant_id,
                "number_id": campaign.number_id,
            },
        )
        assert response.status_code == 201
    daemon = await run_daemon(config, [campaign], simulator, fast_settings(config, SCALE))
    assert Counter(r.destination for r in simulator.created) == Counter(phones)
    assert daemon.engine.stats["adopted"] == 1
    assert daemon.engine.stats["released"] >= 1
    with Store(config.database_url) as store:
        assert all_final(store, "e2e")
        kinds = Counter(e.kind for e in store.events())
        assert kinds["attempt.adopted"] == 1 and kinds["attempt.not_placed"] >= 1


def _record(contact):  # type: ignore[no-untyped-def]
    from dialer.engine import contact_record

    return contact_record(contact)


async def test_out_of_credits_pauses_dispatch_and_resumes_by_itself(
    tmp_path: Path, sqlite_url: str
) -> None:
    """402 holds every dial (no contact is blamed for our account) and clears on its own."""
    phones = nl_numbers(10)
    campaign = load(write_campaign(tmp_path, phones))
    config = write_config(tmp_path, db_url=sqlite_url)
    simulator = sim(credit_budget_calls=4)
    settings = fast_settings(config, SCALE, account_recheck=timedelta(seconds=0.3))
    held: Counter[AttemptState] = Counter()

    def top_up_once_blocked(daemon: Daemon) -> None:
        if simulator.count_status(402) and not held:
            held.update(latest_states(daemon.store, "e2e").values())
            simulator.top_up(100)

    daemon = await run_daemon(config, [campaign], simulator, settings, watch=top_up_once_blocked)
    assert held[AttemptState.FAILED] == 0
    assert held[AttemptState.PLANNED] + held[AttemptState.DIALING] >= 6  # waiting, not failed
    assert Counter(r.destination for r in simulator.created) == Counter(phones)
    assert daemon.engine.account_problem is None  # cleared by the first successful create
    with Store(config.database_url) as store:
        assert set(latest_states(store, "e2e").values()) == {AttemptState.ENDED}
        released = [e for e in store.events(kind="attempt.not_placed")]
        assert released and all("account:InsufficientCredits" in str(e.data) for e in released)


async def test_a_campaign_at_its_cap_does_not_keep_the_others_from_dialling(
    tmp_path: Path, db_url: str
) -> None:
    """The oldest due attempts, more than a page of them, belong to a campaign at its own
    max_concurrent_calls: the next campaign's due attempts are dialled in the same pass."""
    clock = FakeClock(T0)
    sim = world_simulator(clock)
    phones = nl_numbers(34)
    # 10 lines in all (the world's config), 1 for the first campaign: with 9 free lines the
    # pages of the old all-campaign read held 22 attempts, fewer than the first one's 29 due
    async with world(
        tmp_path,
        httpx.ASGITransport(app=sim.app),
        clock,
        phones=phones[:30],
        extra="max_concurrent_calls = 1",
        db_url=db_url,
    ) as w:
        second = load_campaign(write_campaign(tmp_path, phones[30:], name="second"))
        engine = await w.engine("a", campaigns=[w.campaign, second])
        assert engine.fire("e2e", T0) is not None
        assert await engine.dispatch_once() == 1  # the first campaign is at its cap from now
        clock.advance(timedelta(minutes=1))
        assert engine.fire("second", clock()) is not None
        started = await engine.dispatch_once()
        live = Counter(
            a.campaign_name
            for a in w.store.attempts(states=[AttemptState.DIALING, AttemptState.IN_FLIGHT])
        )
        assert started >= 1
        assert live == {"e2e": 1, "second": started}
