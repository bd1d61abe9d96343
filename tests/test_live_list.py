"""The list changes while the daemon runs, and fires are missed while none runs: the engine on
the simulator under one fake time. Edits are read once they settle; a good edit plans new keys
at once and cancels the ones gone; a broken one is logged once and ignored; a missed cron fire
is caught up once within its grace, and only recorded beyond it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import structlog

from dialer.attempts import FINAL_STATES, AttemptState
from dialer.config import Config
from dialer.daemon import Daemon
from dialer.engine import Engine, EngineSettings
from dialer.simulator import Simulator, SimulatorConfig
from dialer.store import CampaignState
from tests.clock import FakeClock
from tests.e2e import (
    KEY,
    all_final,
    fast_settings,
    load,
    nl_numbers,
    run_daemon,
    write_campaign,
    write_config,
)
from tests.engine_world import T0, World, simulator, world

PHONES = nl_numbers(3)
SETTLED = timedelta(seconds=10)  # past the watch's look interval and its settle delay


def rewrite_contacts(w: World, phones: list[str], *, broken: bool = False) -> None:
    rows = ["phone,name,slot"] + [f"{p},Person {i},10:{i:02d}" for i, p in enumerate(phones)]
    if broken:
        rows.append("+31 not a number,Nobody,10:00")
    path = w.campaign.source.with_suffix(".csv")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


async def settle_and_refresh(engine: Engine, clock: FakeClock) -> int:
    """Two looks at the files, far enough apart for the edit to count as settled."""
    clock.advance(SETTLED)
    first = await engine.refresh_campaigns()
    clock.advance(SETTLED)
    return first + await engine.refresh_campaigns()


async def run_to_the_end(w: World, engine: Engine, clock: FakeClock) -> None:
    """Dial what is due and follow every call to its end (the simulator's calls are short)."""
    for _ in range(40):
        await engine.dispatch_once()
        await engine.drain()
        clock.advance(timedelta(seconds=30))
        await engine.follow_once()
        if all(a.state in FINAL_STATES for a in w.store.attempts()):
            return
    raise AssertionError("the calls did not end")


def created(sim: Simulator) -> list[str]:
    return [r.destination for r in sim.created]


async def test_a_row_added_to_a_finished_one_shot_campaign_is_called(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    sim = simulator(clock)
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock, phones=PHONES[:2]) as w:
        engine = await w.engine("a")
        assert engine.fire("e2e", T0) is not None
        await run_to_the_end(w, engine, clock)
        assert w.store.finish_runs(now=clock.now)  # the one run is over
        rewrite_contacts(w, PHONES)  # the clinic adds a patient this morning
        assert await settle_and_refresh(engine, clock) == 1
        assert await engine.dispatch_once() == 1
        await engine.drain()
        assert sorted(created(sim)) == sorted(PHONES)
        (run,) = w.store.runs(w.store.campaign("e2e").id)  # type: ignore[union-attr]
        assert run.finished_at is None  # re-opened for the new row


async def test_an_edit_is_read_only_once_it_has_settled(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    sim = simulator(clock)
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock, phones=PHONES[:1]) as w:
        engine = await w.engine("a")
        engine.fire("e2e", T0)
        rewrite_contacts(w, PHONES[:2])
        clock.advance(SETTLED)
        assert await engine.refresh_campaigns() == 0  # first sight of the change
        rewrite_contacts(w, PHONES[:3])  # the export is still being written
        clock.advance(SETTLED)
        assert await engine.refresh_campaigns() == 0  # changed again: wait once more
        clock.advance(SETTLED)
        assert await engine.refresh_campaigns() == 1
        assert len(w.store.attempts()) == 3


async def test_a_broken_file_is_logged_once_and_the_last_good_list_goes_on(
    tmp_path: Path,
) -> None:
    clock = FakeClock(T0)
    sim = simulator(clock)
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock, phones=PHONES[:2]) as w:
        engine = await w.engine("a")
        engine.fire("e2e", T0)
        rewrite_contacts(w, PHONES[:1], broken=True)  # a bad row, and a patient gone
        with structlog.testing.capture_logs() as logs:
            assert await settle_and_refresh(engine, clock) == 0
            assert await settle_and_refresh(engine, clock) == 0
        failures = [e for e in logs if e["event"] == "dialer.campaign.reload_failed"]
        assert len(failures) == 1 and "not a number" in " ".join(failures[0]["problems"])
        assert await engine.dispatch_once() == 2  # both patients of the last good list
        await engine.drain()
        rewrite_contacts(w, PHONES)  # fixed
        assert await settle_and_refresh(engine, clock) == 1
        assert await engine.dispatch_once() == 1
        await engine.drain()
        assert sorted(created(sim)) == sorted(PHONES)


async def test_rows_gone_are_cancelled_and_a_paused_campaign_reads_its_edit_on_resume(
    tmp_path: Path,
) -> None:
    clock = FakeClock(T0)
    sim = simulator(clock)
    # a window that opens tomorrow: today's attempts wait, planned
    tomorrow = f'[window]\ndays = ["{(T0 + timedelta(days=1)).strftime("%a").lower()}"]\n'
    async with world(
        tmp_path, httpx.ASGITransport(app=sim.app), clock, phones=PHONES, window=tomorrow
    ) as w:
        engine = await w.engine("a")
        engine.fire("e2e", T0)
        await engine.dispatch_once()  # deferred to tomorrow
        w.store.change_campaign_state("e2e", CampaignState.PAUSED, now=clock.now)
        rewrite_contacts(w, PHONES[1:])
        assert await settle_and_refresh(engine, clock) == 0  # paused: the edit waits
        w.store.change_campaign_state("e2e", CampaignState.ACTIVE, now=clock.now)
        assert await settle_and_refresh(engine, clock) == 1
        gone = next(a for a in w.store.attempts() if a.phone == PHONES[0])
        assert (gone.state, gone.reason) == (AttemptState.CANCELLED, "removed")
        assert sim.created == []


CRON = 'timezone = "Europe/Amsterdam"\ncron = "0 9 * * *"'  # 08:00 UTC in March


async def test_a_fire_missed_while_no_daemon_ran_is_caught_up_once(tmp_path: Path) -> None:
    clock = FakeClock(T0)  # Monday 09:30 in Amsterdam
    sim = simulator(clock)
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock, extra=CRON) as w:
        first = await w.engine("a")  # imports the campaign at T0, then stops
        assert first.catch_up() == []  # Monday's 09:00 fire came before the campaign
        clock.now = T0 + timedelta(days=1, minutes=10)  # Tuesday 09:40: the 09:00 fire missed
        later = await w.engine("b")
        with structlog.testing.capture_logs() as logs:
            (run_id,) = later.catch_up()
            assert (await w.engine("c")).catch_up() == []  # a second daemon, a restart
        caught = [e for e in logs if e["event"] == "dialer.run.caught_up"]
        assert len(caught) == 1 and caught[0]["late_s"] == 40 * 60
        campaign = w.store.campaign("e2e")
        assert campaign is not None
        (run,) = w.store.runs(campaign.id)
        assert (run.id, run.fire_time) == (run_id, T0 + timedelta(days=1) - timedelta(minutes=30))
        assert await later.dispatch_once() == 1


async def test_a_fire_missed_beyond_its_grace_is_recorded_not_run(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    sim = simulator(clock)
    async with world(tmp_path, httpx.ASGITransport(app=sim.app), clock, extra=CRON) as w:
        await w.engine("a")
        clock.now = T0 + timedelta(days=3, hours=2)  # Thursday 11:30: three fires missed
        assert (await w.engine("b")).catch_up() == []
        assert (await w.engine("c")).catch_up() == []  # said again, recorded once
        campaign = w.store.campaign("e2e")
        assert campaign is not None
        assert w.store.runs(campaign.id) == []
        (missed,) = w.store.events(kind="run.missed")
        assert missed.data["fire_time"] == "2027-03-04T08:00:00+00:00"
        assert missed.data["earlier_missed"] == 2


# ------------------------------------------------------------------ the real daemon's loops
SCALE = 60.0


def write_rows(csv_path: Path, phones: list[str], *, broken: bool = False) -> None:
    rows = ["phone,name,slot"] + [f"{p},Person {i},10:{i:02d}" for i, p in enumerate(phones)]
    if broken:
        rows.append("not a phone number,Nobody,10:00")
    # written next to it and renamed in, as an export job should: never read half-written
    partial = csv_path.with_suffix(".partial")
    partial.write_text("\n".join(rows) + "\n", encoding="utf-8")
    partial.replace(csv_path)


def fast_simulator() -> Simulator:
    return Simulator(
        SimulatorConfig(api_key=KEY, time_scale=SCALE, seed=5, requests_per_minute=6000)
    )


def watching_fast(config: Config) -> EngineSettings:
    return fast_settings(
        config,
        SCALE,
        campaign_watch=timedelta(seconds=0.1),
        campaign_settle=timedelta(seconds=0.2),
    )


async def test_a_running_daemon_calls_a_row_added_after_its_one_run_finished(
    tmp_path: Path, sqlite_url: str
) -> None:
    phones = nl_numbers(4, start=100)
    campaign = load(write_campaign(tmp_path, phones[:3]))
    config = write_config(tmp_path, db_url=sqlite_url)
    sim = Simulator(
        SimulatorConfig(api_key=KEY, time_scale=SCALE, seed=5, requests_per_minute=6000)
    )
    added = False

    def stop_when(daemon: Daemon) -> bool:
        nonlocal added
        if not added:
            if all_final(daemon.store, "e2e") and len(sim.created) == 3:
                write_rows(campaign.source.with_suffix(".csv"), phones)  # one more patient
                added = True
            return False
        return len(sim.created) == 4 and all_final(daemon.store, "e2e")

    await run_daemon(config, [campaign], sim, watching_fast(config), stop_when=stop_when)
    assert sorted(r.destination for r in sim.created) == sorted(phones)


async def test_a_broken_list_saved_mid_run_leaves_the_last_good_one_running(
    tmp_path: Path, sqlite_url: str
) -> None:
    phones = nl_numbers(6, start=200)
    campaign = load(write_campaign(tmp_path, phones))
    config = write_config(tmp_path, db_url=sqlite_url, max_concurrent=2)
    sim = Simulator(
        SimulatorConfig(api_key=KEY, time_scale=SCALE, seed=5, requests_per_minute=6000)
    )
    saved = False

    def stop_when(daemon: Daemon) -> bool:
        nonlocal saved
        if not saved and sim.created:
            # a bad row, and half of the patients gone: none of it may apply
            write_rows(campaign.source.with_suffix(".csv"), phones[:3], broken=True)
            saved = True
        return saved and len(sim.created) == len(phones) and all_final(daemon.store, "e2e")

    with structlog.testing.capture_logs() as logs:
        await run_daemon(config, [campaign], sim, watching_fast(config), stop_when=stop_when)
    assert sorted(r.destination for r in sim.created) == sorted(phones)
    failures = [e for e in logs if e["event"] == "dialer.campaign.reload_failed"]
    assert len(failures) == 1
