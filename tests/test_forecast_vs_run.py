"""`dialer plan`'s forecast against a real run (issue 8): calls made before the window closes.

A 500-contact campaign, one attempt per contact, whose calling window closes after a little over
half of them: the forecast ``dialer plan`` prints (``plan_campaign``, the very function the
command calls) is compared with the real daemon (``open_daemon``, its own dispatch, follow and
housekeeping loops) run in process against the simulator, both from the same instant. The run
is counted from the simulator's own record of the calls it created, at their simulated times,
never from the dialer's database.

One clock drives the engine, the simulator's call lifecycles and its wall clock (``created_at``):
``SCALE`` simulated seconds per real second while the event loop is idle (see ``ScaledClock``).
The ~23 simulated minutes of calling take about 20 real seconds.

What is held fixed, and why:

- The simulator's calls are all answered and about as long as the config's
  ``expected_call_length`` (~91 s from the dial, with a 15 % spread). The forecast cannot know
  an outcome mix; the claim under test is its model of the dialer (lines, the window's close,
  when an end is seen), and a wide random mix would make the count itself noisy: a renewal
  count's relative noise is about CV / sqrt(calls), ~4 % for a realistic mix at ~280 calls
  against ~1 % here (the seeded simulator's draws still depend on request timing).
- The window's last start falls in the middle of a round of calls. The forecast's calls all
  last the same time, so it dials in rounds of ``max_concurrent`` (20 calls here, ~7 % of the
  count); mid-round, a run whose lines stay in lockstep and one whose lines drift apart both
  make the forecast's number, and a few seconds either way change nothing. (At other closes
  the step error is up to about half a round: a sweep of the last start over 1260-1410 s gave
  -2.6 % .. +4.1 %.)
- The request budget does not bind. The daemon's budget counts real minutes (``open_daemon``
  builds it with the real clock), so the config grants ``100 * SCALE`` requests a real minute,
  at least 100 a simulated one; the simulator allows 1000 a simulated minute. The plan reads
  the same large figure: concurrency is the binding limit in both, as it is under the default
  config (10 lines of 90 s calls need ~7 of the 25 calls a minute 100 requests allow).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from dialer.campaign import Campaign
from dialer.config import Config
from dialer.daemon import engine_settings, open_daemon, run_until_stopped
from dialer.plan import plan_campaign, plan_capacity
from dialer.simulator import OutcomeMix, Simulator, SimulatorConfig
from tests.e2e import KEY, load, nl_numbers, write_campaign, write_config

SCALE = 100.0  # simulated seconds per real second
CONTACTS = 500
LINES = 20
T0 = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)  # Monday 09:00 in Amsterdam (+31 numbers)
CLOSE = T0 + timedelta(minutes=30)  # 09:30 local
# No call starts in the last 7m30s: the last start is 09:22:30, 1350 s after the opening.
# Each line holds a call ~100 s (90 s call + half a 20 s list interval until its end is seen),
# so 1350 s is 13.5 rounds: the last start falls mid-round (see the module docstring).
WINDOW = '[window]\ndays = ["mon-sun"]\nhours = ["09:00-09:30"]\nmin_time_before_close = "7m30s"\n'
LAST_START = CLOSE - timedelta(minutes=7, seconds=30)
TOLERANCE = 0.05
REAL_BOUND_S = 120.0  # a hang guard only
STEP_S = 0.002  # real seconds per step of the clock


class ScaledClock:
    """``start`` until :meth:`drive` runs, then ``SCALE`` simulated seconds per real second
    while the event loop is idle, in steps of ``STEP_S`` real seconds.

    The dialer's store is synchronous: while it commits, the loop is blocked and this clock
    does not move. Scaled naively, each millisecond of the dialer's own work would cost
    ``SCALE`` ms of simulated time (a 40 ms list-and-redial turn is 4 s at x100, 4 % of a
    100 s line hold), a slowness no real daemon has; the forecast rightly knows nothing of it.
    """

    def __init__(self, start: datetime, scale: float) -> None:
        self.start = start
        self.scale = scale
        self.elapsed = 0.0  # simulated seconds since start

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def sim_seconds(self) -> float:
        """The simulator's clock: its "real" seconds, which it multiplies by its time scale."""
        return self.elapsed / self.scale

    async def drive(self) -> None:
        while True:
            await asyncio.sleep(STEP_S)
            self.elapsed += STEP_S * self.scale


def simulator(clock: ScaledClock) -> Simulator:
    # All answered: ring 3-7 s, then a talk of median 85 s (lognormal, sigma 0.15).
    only_answered = OutcomeMix.only("answered")
    return Simulator(
        SimulatorConfig(
            api_key=KEY,
            time_scale=SCALE,
            scale_rate_limit=True,
            # Far from the reserve: a hold would read X-RateLimit-Reset (simulated wall time)
            # against the budget's real wall clock.
            requests_per_minute=1000,
            seed=8,
            mix=only_answered,
            ring_seconds=(3.0, 7.0),
            talk_seconds_mean=85.0,
            talk_seconds_sigma=0.15,
        ),
        clock=clock.sim_seconds,
        wall_clock=clock,
    )


async def run(config: Config, campaign: Campaign, sim: Simulator, clock: ScaledClock) -> None:
    """The daemon's own loops (dispatch, follow, housekeeping) from T0 until the last start."""
    # The config's own poll plan: the engine's clock is simulated time, so nothing is scaled
    # but `tick`, the real seconds a loop may sleep (0.01 s, also the loops' floor, is at most
    # 1 s simulated).
    settings = engine_settings(config, worker_id="forecast-vs-run", tick=0.01)
    async with open_daemon(
        config,
        [campaign],
        transport=httpx.ASGITransport(app=sim.app),
        clock=clock,
        settings=settings,
        api_key=KEY,
    ) as daemon:
        # The campaign's schedule fires at its import time (T0), which APScheduler would wait
        # for in real time: fire the run ourselves, as the scheduler's listener would.
        assert daemon.engine.fire(campaign.name, T0) is not None
        driver = asyncio.create_task(clock.drive(), name="clock")
        stop = asyncio.Event()

        def after_last_start() -> None:
            # The window allows no start after LAST_START (until tomorrow); the margin lets a
            # create sent just before it reach the simulator.
            if clock() >= LAST_START + timedelta(seconds=30):
                stop.set()

        try:
            async with asyncio.timeout(REAL_BOUND_S):
                await run_until_stopped(
                    daemon, until_idle=False, on_tick=after_last_start, stop=stop
                )
        finally:
            driver.cancel()


def test_forecast_of_calls_before_the_close_is_within_5_percent(tmp_path: Path) -> None:
    path = write_campaign(tmp_path, nl_numbers(CONTACTS), window=WINDOW)
    config = write_config(
        tmp_path,
        db_url=f"sqlite:///{tmp_path}/dialer.db",
        rpm=int(100 * SCALE),
        max_concurrent=LINES,
    )
    campaign = load(path)
    assert campaign.retry.max_attempts == 1  # one attempt per contact: no retries to forecast

    planned = plan_campaign(campaign, config, now=T0)
    assert len(planned) == CONTACTS and not [p for p in planned if p.skip]
    forecast = sum(1 for p in planned if p.first_call is not None and p.first_call < CLOSE)

    clock = ScaledClock(T0, SCALE)
    sim = simulator(clock)
    started = time.monotonic()
    asyncio.run(run(config, campaign, sim, clock))
    wall_s = time.monotonic() - started

    created = [r for r in sim.created if r.created_at < CLOSE]
    actual = len(created)
    assert len({r.destination for r in created}) == actual  # one call per contact
    assert sim.count_status(429) == 0  # the request budget never bound
    assert min(r.created_at for r in created) >= T0
    # A meaningful share of the campaign is NOT reached before the close, by either count.
    for calls in (forecast, actual):
        assert 0.3 <= 1 - calls / CONTACTS <= 0.7, (forecast, actual)

    difference = (forecast - actual) / actual
    print(f"forecast={forecast} actual={actual} difference={difference:+.1%} wall={wall_s:.1f}s")
    assert abs(forecast - actual) <= TOLERANCE * actual, (forecast, actual, f"{difference:+.1%}")


@pytest.mark.parametrize(
    ("campaign_extra", "config_extra", "lines", "holds"),
    [
        # from list_threshold (3) calls on, an end is seen half a list interval late: 20 lines
        # of ~95 s calls need ~12.6 creates a minute of 95, half the rest pays for a list
        # every 1.5 s, but 20 calls end one every 4.75 s (a list per end): 2.375 s late
        ("", "", LINES, 92.375),
        # a campaign's own limit lowers the daemon's: one line is polled, not listed
        ("max_concurrent_calls = 1", "", 1, 90),
        # ... but never raises it
        ("max_concurrent_calls = 50", "", LINES, 92.375),
        # webhooks report an end at once
        ("", "\n[webhooks]\n", LINES, 90),
    ],
)
def test_the_plan_reads_its_limits_as_the_engine_applies_them(
    tmp_path: Path, campaign_extra: str, config_extra: str, lines: int, holds: float
) -> None:
    campaign = load(write_campaign(tmp_path, nl_numbers(1), extra=campaign_extra))
    config = write_config(
        tmp_path, db_url=f"sqlite:///{tmp_path}/never.db", max_concurrent=LINES, extra=config_extra
    )
    capacity = plan_capacity(campaign, config)
    assert (capacity.max_concurrent, capacity.call_duration) == (lines, timedelta(seconds=holds))
