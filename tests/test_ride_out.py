"""Riding out outages (issue 17): each test runs a campaign of 200 contacts on the simulator
while the ground moves under the daemon — PostgreSQL's connections terminated again and again,
PostgreSQL unreachable for 30 s, SQLite locked by another process for 20 s, SQLite full and
then freed, VoiceDock refusing connections for a simulated hour, VoiceDock answering every
request after 10 s — and ends with every contact final, no double dial, no outcome missing,
the daemon never having exited and the request budget held.

Judged from the simulator's record of created calls, never from the dialer's own database
alone. Each test prints its figures. A stop during each kind of outage is timed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from sqlmodel import select

from dialer.attempts import AttemptState
from dialer.daemon import open_daemon, run_until_stopped
from dialer.policy.backoff import Backoff
from dialer.simulator import Simulator, SimulatorConfig, serve
from dialer.store import Store
from dialer.store.database import DAEMON_LOCK_WAIT_S
from dialer.store.tables import AttemptRow
from tests.e2e import (
    KEY,
    all_final,
    fast_settings,
    load,
    nl_numbers,
    run_daemon,
    start_dialer,
    tail_of,
    write_campaign,
    write_config,
)
from tests.outages import (
    locked_by_another_process,
    log_lines,
    pg_behind_proxy,
    size_limited,
    sqlite_path,
    terminate_backends,
)

CONTACTS = 200
LIMIT = 100  # VoiceDock's requests per (simulated) minute per key
ONCE = "[retry]\nmax_attempts = 1\n"  # each contact is called exactly once: a second is a double
#: the engine's shutdown grace (EngineSettings.shutdown_grace) and the one statement a stop may
#: find waiting on a lock: a stop during any outage ends within their sum (plus start-up noise)
STOP_BOUND_S = 10.0 + DAEMON_LOCK_WAIT_S + 5.0


@dataclass
class Verdict:
    """What the simulator's record and the database say after a run."""

    contacts: int
    created: int
    doubles: int
    max_live: int
    not_final: int
    missing_outcome: int
    unowned_calls: int
    states: Counter[str]
    peak: int
    limit: int
    rate_limited: int

    def check(self) -> None:
        assert self.created == self.contacts, self  # every contact called...
        assert self.doubles == 0 and self.max_live == 1, self  # ...exactly once
        assert self.not_final == 0, self
        assert self.missing_outcome == 0 and self.unowned_calls == 0, self
        assert set(self.states) == {AttemptState.ENDED.value}, self
        assert self.peak <= self.limit and self.rate_limited == 0, self

    def __str__(self) -> str:
        return (
            f"{self.contacts} contacts, {self.created} calls created, {self.doubles} double "
            f"dials, states {dict(self.states)}, outcomes missing {self.missing_outcome}, "
            f"calls no attempt owns {self.unowned_calls}, peak {self.peak} requests per "
            f"simulated minute (limit {self.limit}), 429s {self.rate_limited}"
        )


def judge(sim: Simulator, db_url: str, phones: list[str], *, scale: float) -> Verdict:
    created = sim.created
    per_destination = Counter(r.destination for r in created)
    with Store(db_url) as store:
        final = all_final(store, "e2e")
        with store.session() as session:
            rows = list(session.exec(select(AttemptRow)).all())
    by_call = {r.call_id: r for r in rows if r.call_id}
    return Verdict(
        contacts=len(phones),
        created=len(per_destination.keys() & set(phones)),
        doubles=sum(n - 1 for n in per_destination.values()),
        max_live=sim.max_live_calls_per_destination(),
        not_final=0 if final else 1,
        missing_outcome=sum(
            1
            for record in created
            if record.call_id in by_call
            and not (by_call[record.call_id].outcome and by_call[record.call_id].raw)
        ),
        unowned_calls=sum(1 for record in created if record.call_id not in by_call),
        states=Counter(str(r.state) for r in rows),
        peak=sim.peak_requests_in_window(60.0 / scale),
        limit=LIMIT,
        rate_limited=sim.count_status(429),
    )


def simulator(scale: float, seed: int, **config: Any) -> Simulator:
    values: dict[str, Any] = dict(
        api_key=KEY,
        time_scale=scale,
        seed=seed,
        talk_seconds_mean=20,
        requests_per_minute=LIMIT,
        scale_rate_limit=True,
    )
    values.update(config)
    return Simulator(SimulatorConfig(**values))


def network() -> httpx.AsyncHTTPTransport:
    """Real sockets to the served simulator (in-process daemons default to its ASGI app), so
    the client's timeouts and refused connections are real; its pool as the client keeps it."""
    return httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=4)
    )


def events(lines: list[dict[str, Any]], prefix: str) -> Counter[str]:
    return Counter(line["event"] for line in lines if str(line.get("event")).startswith(prefix))


async def until(condition: Callable[[], bool], *, within_s: float) -> None:
    """Watch the simulator's record (or a process) until ``condition``; a state to reach."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        assert loop.time() < deadline, f"not reached within {within_s} s"
        await asyncio.sleep(0.05)


def dialing(db_url: str) -> int:
    """Attempts in `dialing` (a POST about to go out or waiting for its answer)."""
    with Store(db_url) as store:
        return store.count_attempts(states=[AttemptState.DIALING])


def subprocess_config(
    tmp_path: Path, db_url: str, base_url: str, scale: float, *, create_timeout: str = "2s"
) -> Path:
    """A config for real `dialer run` processes: the simulator's limit scaled like its time
    (20 % of headroom: several processes on two cores bunch their requests; see
    test_several_daemons)."""
    config = write_config(
        tmp_path,
        db_url=db_url,
        base_url=base_url,
        rpm=int(LIMIT * scale),
        max_concurrent=40,
        create_timeout=create_timeout,
        voicedock_extra="budget_margin = 0.2",
        extra='stuck_after = "1m"\npoll_interval = "0.3s"\n'
        'expected_call_length = "2s"\nlist_interval = "1s"',
    )
    assert config.source is not None
    return config.source


# ---------------------------------------------------------------------------- PostgreSQL
@pytest.mark.postgres
@pytest.mark.slow
async def test_postgres_connections_terminated_again_and_again(tmp_path: Path, pg_url: str) -> None:
    scale = 20.0
    sim = simulator(scale, seed=17)
    phones = nl_numbers(CONTACTS)
    write_campaign(tmp_path, phones, retry=ONCE)
    terminated: list[int] = []
    async with serve(sim) as base_url:
        config = subprocess_config(tmp_path, pg_url, base_url, scale)
        daemons = [await start_dialer(config) for _ in range(2)]
        await until(lambda: len(sim.created) >= 30, within_s=60)
        # Every connection of both daemons, thirty times in eight seconds mid-campaign: most
        # are idle in the pool (the pool's ping replaces them unseen); some are cut mid-statement.
        for _ in range(30):
            terminated.append(await asyncio.to_thread(terminate_backends, pg_url))
            await asyncio.sleep(0.25)
            assert all(d.returncode is None for d in daemons)  # riding it out, not exiting
        async with asyncio.timeout(240):
            codes = [await d.wait() for d in daemons]
        assert codes == [0, 0], tail_of(tmp_path / "dialer-1.log")
    verdict = judge(sim, pg_url, phones, scale=scale)
    logs = [line for i in range(2) for line in log_lines(tmp_path / f"dialer-{i}.log")]
    said = events(logs, "dialer.database") + events(logs, "dialer.budget.shared_row")
    print(
        f"\nconnections terminated: {sum(terminated)} backends in {len(terminated)} rounds "
        f"({terminated}); {verdict}; the daemons logged {dict(said)}"
    )
    assert sum(terminated) >= len(terminated)  # there were connections to terminate
    verdict.check()


@pytest.mark.postgres
@pytest.mark.slow
async def test_postgres_unreachable_for_30_s(tmp_path: Path, pg_url: str) -> None:
    scale = 20.0
    sim = simulator(scale, seed=18)
    phones = nl_numbers(CONTACTS)
    write_campaign(tmp_path, phones, retry=ONCE)
    with pg_behind_proxy(pg_url) as (proxied_url, proxy):
        async with serve(sim) as base_url:
            config = subprocess_config(tmp_path, proxied_url, base_url, scale)
            daemons = [await start_dialer(config) for _ in range(2)]
            await until(lambda: len(sim.created) >= 50, within_s=60)
            await asyncio.to_thread(proxy.refuse)  # the server gone: refused, connections cut
            gone_at, created_then = sim.now(), len(sim.created)
            for _ in range(30):
                await asyncio.sleep(1)
                assert all(d.returncode is None for d in daemons)  # riding it out
            await asyncio.to_thread(proxy.accept)
            back_at = sim.now()
            async with asyncio.timeout(240):
                codes = [await d.wait() for d in daemons]
            assert codes == [0, 0], tail_of(tmp_path / "dialer-1.log")
    verdict = judge(sim, pg_url, phones, scale=scale)
    during = [r for r in sim.created if gone_at <= r.created_real <= back_at]
    after_a_second = [r for r in during if r.created_real > gone_at + 1.0]
    logs = [line for i in range(2) for line in log_lines(tmp_path / f"dialer-{i}.log")]
    said = events(logs, "dialer.database")
    print(
        f"\npostgres unreachable {back_at - gone_at:.1f} s after {created_then} calls: "
        f"{len(during)} created while it was away ({len(after_a_second)} after its first "
        f"second); {verdict}; the daemons logged {dict(said)}"
    )
    assert not after_a_second  # dialling stopped at once: nothing goes out uncommitted
    assert said["dialer.database.unavailable"] >= 2 and said["dialer.database.back"] >= 2
    verdict.check()


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_daemon_cut_off_from_postgres_is_taken_over_and_dials_nothing_stale(
    tmp_path: Path, pg_url: str
) -> None:
    """One daemon loses the database for 45 s (longer than a heartbeat's lifetime) while the
    other keeps it: the other takes its dials and calls over; back, the first sends nothing
    on the claims it held before (each is confirmed first), and nobody is called twice."""
    scale = 20.0
    sim = simulator(scale, seed=25)
    phones = nl_numbers(CONTACTS)
    write_campaign(tmp_path, phones, retry=ONCE)
    with pg_behind_proxy(pg_url) as (proxied_url, proxy):
        async with serve(sim) as base_url:
            through_proxy = subprocess_config(tmp_path, proxied_url, base_url, scale)
            cut_off = await start_dialer(through_proxy.rename(tmp_path / "cut-off.toml"))
            steady = await start_dialer(subprocess_config(tmp_path, pg_url, base_url, scale))
            await until(lambda: len(sim.created) >= 50, within_s=60)
            await asyncio.to_thread(proxy.refuse)
            for _ in range(45):
                await asyncio.sleep(1)
                assert cut_off.returncode is None  # riding it out
            await asyncio.to_thread(proxy.accept)
            async with asyncio.timeout(240):
                codes = [await d.wait() for d in (cut_off, steady)]
            assert codes == [0, 0], tail_of(tmp_path / "dialer-0.log")
    verdict = judge(sim, pg_url, phones, scale=scale)
    cut_off_said = events(log_lines(tmp_path / "dialer-0.log"), "dialer.")
    steady_said = events(log_lines(tmp_path / "dialer-1.log"), "dialer.attempt.reconciled")
    print(
        f"\none daemon cut off from postgres for 45 s: the other reconciled "
        f"{steady_said['dialer.attempt.reconciled']} of its dials; the cut-off one withdrew "
        f"{cut_off_said['dialer.attempt.withdrawn']}, found "
        f"{cut_off_said['dialer.attempt.taken_over']} taken over, created "
        f"{cut_off_said['dialer.call.created']} calls in all; {verdict}"
    )
    verdict.check()


# ---------------------------------------------------------------------------- SQLite
@pytest.mark.slow
async def test_sqlite_locked_by_another_process_for_20_s(tmp_path: Path, sqlite_url: str) -> None:
    scale = 20.0
    sim = simulator(scale, seed=19)
    phones = nl_numbers(CONTACTS)
    write_campaign(tmp_path, phones, retry=ONCE)
    with Store(sqlite_url) as setup:
        setup.create_schema()
    async with serve(sim) as base_url:
        config = subprocess_config(tmp_path, sqlite_url, base_url, scale)
        daemon = await start_dialer(config)
        await until(lambda: len(sim.created) >= 50, within_s=60)
        async with locked_by_another_process(sqlite_path(sqlite_url), 20.0) as released:
            locked_at, created_then = sim.now(), len(sim.created)
            while not released.done():
                await asyncio.sleep(0.5)
                assert daemon.returncode is None  # riding it out
            assert await released == 0
            unlocked_at = sim.now()
        async with asyncio.timeout(240):
            code = await daemon.wait()
        assert code == 0, tail_of(tmp_path / "dialer-0.log")
    verdict = judge(sim, sqlite_url, phones, scale=scale)
    during = [r for r in sim.created if locked_at <= r.created_real <= unlocked_at]
    said = events(log_lines(tmp_path / "dialer-0.log"), "dialer.database")
    print(
        f"\nsqlite locked {unlocked_at - locked_at:.1f} s by another process after "
        f"{created_then} calls: {len(during)} created meanwhile; {verdict}; the daemon "
        f"logged {dict(said)}"
    )
    assert said["dialer.database.unavailable"] >= 1 and said["dialer.database.back"] >= 1
    verdict.check()


@pytest.mark.slow
async def test_sqlite_full_then_freed(tmp_path: Path, sqlite_url: str) -> None:
    scale = 60.0
    sim = simulator(scale, seed=20)
    phones = nl_numbers(CONTACTS)
    campaign = load(write_campaign(tmp_path, phones, retry=ONCE))
    config = write_config(
        tmp_path,
        db_url=sqlite_url,
        rpm=int(LIMIT * scale),
        max_concurrent=25,
        voicedock_extra="budget_margin = 0.2",
    )
    settings = fast_settings(config, scale, poll_lease=timedelta(seconds=1))
    moments: dict[str, float] = {}
    with size_limited(sqlite_url) as limit, structlog.testing.capture_logs() as logs:

        async def fill_then_free() -> None:
            await until(lambda: len(sim.created) >= 50, within_s=60)
            moments["full"], moments["pages"] = sim.now(), limit.full()
            moments["created_then"] = len(sim.created)
            await asyncio.sleep(8.0)  # eight seconds of a full disk
            limit.free()
            moments["freed"] = sim.now()

        timeline = asyncio.create_task(fill_then_free())
        daemon = await run_daemon(config, [campaign], sim, settings, bound_s=180)
        await timeline
    verdict = judge(sim, sqlite_url, phones, scale=scale)
    said = events(logs, "dialer.database")
    unavailable = [line for line in logs if line["event"] == "dialer.database.unavailable"]
    full_for = [r for r in sim.created if moments["full"] <= r.created_real <= moments["freed"]]
    print(
        f"\nsqlite full for {moments['freed'] - moments['full']:.1f} s at {moments['pages']:.0f} "
        f"pages after {moments['created_then']:.0f} calls: {len(full_for)} created while full; "
        f"{verdict}; logged {dict(said)}; "
        f"stats {daemon.engine.stats}"
    )
    assert len(unavailable) == 1 and unavailable[0]["kind"] == "full"  # one clear line
    # dialling stopped (a write or two may still have fitted in the last page)
    assert not [r for r in full_for if r.created_real > moments["full"] + 1.0]
    assert said["dialer.database.back"] >= 1
    verdict.check()


# ---------------------------------------------------------------------------- VoiceDock
@pytest.mark.slow
async def test_voicedock_refusing_connections_for_a_simulated_hour(
    tmp_path: Path, sqlite_url: str
) -> None:
    scale = 360.0  # a simulated hour is ten seconds
    hour_s = 3600.0 / scale
    # ten-minute calls (under two seconds each): the campaign outlasts the outage's start
    sim = simulator(scale, seed=21, talk_seconds_mean=600)
    phones = nl_numbers(CONTACTS)
    campaign = load(write_campaign(tmp_path, phones, retry=ONCE))
    outage: dict[str, float] = {}

    async def take_it_away() -> None:
        await until(lambda: len(sim.created) >= 60, within_s=60)
        await sim.refuse_connections()
        outage["gone"] = sim.now()
        await asyncio.sleep(hour_s)
        await sim.accept_connections()
        outage["back"] = sim.now()

    async with serve(sim, network=True) as base_url:
        config = write_config(
            tmp_path,
            db_url=sqlite_url,
            base_url=base_url,
            rpm=int(LIMIT * scale),
            max_concurrent=25,
            voicedock_extra="budget_margin = 0.2",
        )
        settings = fast_settings(
            config,
            scale,
            # the engine's own clock is real time: its outage pace is scaled like the world's
            unreachable_backoff=Backoff(base=timedelta(seconds=1), cap=timedelta(minutes=1)).scaled(
                scale
            ),
            outage_log_every=timedelta(minutes=1) / scale,
        )
        with structlog.testing.capture_logs() as logs:
            timeline = asyncio.create_task(take_it_away())
            daemon = await run_daemon(
                config, [campaign], sim, settings, bound_s=180, transport=network()
            )
            await timeline
    verdict = judge(sim, sqlite_url, phones, scale=scale)
    said = events(logs, "dialer.voicedock")
    order = [line["event"] for line in logs]
    gone = order.index("dialer.voicedock.unreachable")
    resumed = order.index("dialer.voicedock.dialling_resumes")
    reconciled = order.index("dialer.voicedock.reachable")
    created_while_held = order[gone:resumed].count("dialer.call.created")
    sent = daemon.engine.requests_sent()
    failed = {key: n for key, n in sent.items() if key[2] == "error"}
    simulated_minutes = (outage["back"] - outage["gone"]) * scale / 60
    print(
        f"\nvoicedock refusing connections for {outage['back'] - outage['gone']:.1f} s "
        f"(a simulated hour) after 60 calls: requests that got no answer {failed}; logged "
        f"{dict(said)} over {simulated_minutes:.0f} simulated minutes; {verdict}; "
        f"stats {daemon.engine.stats}"
    )
    assert said["dialer.voicedock.unreachable"] == 1
    assert (
        said["dialer.voicedock.reachable"] == 1 and said["dialer.voicedock.dialling_resumes"] == 1
    )
    # said again once a (simulated) minute, not once a request: at most 60 over the hour
    # (fewer here: housekeeping, which says it, ticks every 50 ms, 18 simulated s at 360x)
    assert 10 <= said["dialer.voicedock.still_unreachable"] <= 60
    assert reconciled < resumed and created_while_held == 0  # reconciled before any dial
    # no busy loop: the creates under way when it went (the client's own re-sends), then
    # one probe at a time, backing off to a simulated minute: ~60 plus the ramp
    assert failed.get(("POST", "/calls/outbound", "error"), 0) <= 25 * 5
    assert failed.get(("GET", "/calls", "error"), 0) <= 5 * 5 + 7 + 2 * 60
    verdict.check()


@pytest.mark.slow
async def test_voicedock_answering_every_request_after_10_s(
    tmp_path: Path, sqlite_url: str
) -> None:
    scale = 10.0  # ten simulated seconds are one second
    sim = simulator(scale, seed=22)
    sim.answer_after(10.0)
    phones = nl_numbers(CONTACTS)
    campaign = load(write_campaign(tmp_path, phones, retry=ONCE))
    async with serve(sim) as base_url:
        # VoiceDock's timeouts scaled like its time: 5 s to connect, 15 s per read (GETs)
        # and 20 s for a create's answer, each ten times faster
        config = write_config(
            tmp_path,
            db_url=sqlite_url,
            base_url=base_url,
            rpm=int(LIMIT * scale),
            max_concurrent=50,
            create_timeout="2s",
            voicedock_extra='budget_margin = 0.2\nconnect_timeout = "0.5s"\nread_timeout = "1.5s"',
        )
        settings = fast_settings(config, scale)
        started = time.monotonic()
        with structlog.testing.capture_logs() as logs:
            daemon = await run_daemon(
                config, [campaign], sim, settings, bound_s=240, transport=network()
            )
        took = time.monotonic() - started
    verdict = judge(sim, sqlite_url, phones, scale=scale)
    latencies = [line["latency_ms"] for line in logs if line["event"] == "dialer.api.request"]
    requests = Counter(
        (line["method"], line["status"]) for line in logs if line["event"] == "dialer.api.request"
    )
    print(
        f"\nvoicedock answering after 10 simulated s: {took:.1f} s for {CONTACTS} contacts "
        f"({CONTACTS / took * 60 / scale:.1f} calls per simulated minute), median answer "
        f"{sorted(latencies)[len(latencies) // 2]:.0f} ms, requests {dict(requests)}; "
        f"{verdict}; stats {daemon.engine.stats}"
    )
    verdict.check()
    # a timeout on a create would have been ambiguous and reconciled, never re-sent
    assert daemon.engine.stats.get("released", 0) == 0


# ---------------------------------------------------------------------------- stopping
@pytest.mark.slow
@pytest.mark.parametrize(
    "outage",
    [
        pytest.param("postgres_unreachable", marks=pytest.mark.postgres),
        "sqlite_locked",
        "voicedock_refusing",
        "voicedock_slow",
    ],
)
async def test_a_stop_during_an_outage_ends_within_the_grace(
    outage: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SIGTERM to the real `dialer run` while the outage lasts: it exits, cleanly, within the
    shutdown grace (plus the one statement that may be waiting on a lock)."""
    scale = 20.0
    sim = simulator(scale, seed=23)
    phones = nl_numbers(60)
    write_campaign(tmp_path, phones, retry=ONCE)
    async with contextlib.AsyncExitStack() as stack:
        if outage == "postgres_unreachable":
            db_url, proxy = stack.enter_context(pg_behind_proxy(request.getfixturevalue("pg_url")))
        else:
            db_url = f"sqlite:///{tmp_path}/dialer.db"
            with Store(db_url) as setup:
                setup.create_schema()
        base_url = await stack.enter_async_context(
            serve(sim, network=outage == "voicedock_refusing")
        )
        # slow: a create's answer is awaited as long as in production, so some are out at the stop
        config = subprocess_config(
            tmp_path,
            db_url,
            base_url,
            scale,
            create_timeout="30s" if outage == "voicedock_slow" else "2s",
        )
        if outage == "voicedock_slow":
            sim.answer_after(10.0 * scale)  # ten real seconds: creates are out at the stop
        daemon = await start_dialer(config, until_idle=False)
        log = tmp_path / "dialer-0.log"
        if outage == "voicedock_slow":
            await until(lambda: dialing(db_url) >= 10, within_s=60)
        else:
            await until(lambda: len(sim.created) >= 10, within_s=60)
            if outage == "postgres_unreachable":
                await asyncio.to_thread(proxy.refuse)
            elif outage == "sqlite_locked":
                await stack.enter_async_context(
                    locked_by_another_process(sqlite_path(db_url), 60.0)
                )
            else:
                await sim.refuse_connections()
            said = "dialer.voicedock.unreachable" if "voicedock" in outage else "unavailable"
            # the daemon knows it is in the outage
            await until(lambda: said in log.read_text(errors="replace"), within_s=60)
        await asyncio.sleep(1.0)
        assert daemon.returncode is None
        stopping = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            code = await daemon.wait()
        took = time.monotonic() - stopping
    lines = log_lines(tmp_path / "dialer-0.log")
    print(
        f"\nSIGTERM during {outage}: exit code {code} after {took:.1f} s (bound {STOP_BOUND_S} s); "
        f"logged {dict(events(lines, 'dialer.database') + events(lines, 'dialer.voicedock'))}"
    )
    assert code == 0, tail_of(tmp_path / "dialer-0.log")
    assert took <= STOP_BOUND_S
    assert events(lines, "dialer.engine.loop_died") == Counter()


@pytest.mark.slow
async def test_a_stop_while_sqlite_is_full_ends_within_the_grace(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The size limit is per connection, so this daemon runs in the test's process; the stop
    is the one SIGTERM sets (dialer.daemon.stop_on_signals)."""
    scale = 20.0
    sim = simulator(scale, seed=24)
    campaign = load(write_campaign(tmp_path, nl_numbers(60), retry=ONCE))
    config = write_config(tmp_path, db_url=sqlite_url, rpm=int(LIMIT * scale), max_concurrent=40)
    settings = fast_settings(config, scale)
    with size_limited(sqlite_url) as limit, structlog.testing.capture_logs() as logs:
        async with open_daemon(
            config,
            [campaign],
            transport=httpx.ASGITransport(app=sim.app),
            settings=settings,
            api_key=KEY,
        ) as daemon:
            stop = asyncio.Event()
            running = asyncio.create_task(run_until_stopped(daemon, until_idle=False, stop=stop))
            await until(lambda: len(sim.created) >= 10, within_s=60)
            limit.full()
            await until(lambda: daemon.engine.database_outage is not None, within_s=60)
            await asyncio.sleep(1.0)
            stopping = time.monotonic()
            stop.set()
            async with asyncio.timeout(60):
                await running
            took = time.monotonic() - stopping
    said = events(logs, "dialer.database")
    print(f"\nstop while sqlite is full: {took:.1f} s (bound {STOP_BOUND_S} s); said {dict(said)}")
    assert took <= STOP_BOUND_S
    assert said["dialer.database.unavailable"] == 1
