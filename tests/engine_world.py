"""An engine, its store and the simulator under one fake time, for tests that step a world by
hand: dispatch, follow and reconcile when the test says, with a budget the test can hold."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from dialer.campaign import Campaign, load_campaign
from dialer.config import Config
from dialer.daemon import engine_settings
from dialer.engine import Engine
from dialer.policy.polling import PollPlan
from dialer.ratelimit import RequestBudget
from dialer.simulator import Simulator, SimulatorConfig
from dialer.store import AttemptView, Store
from dialer.voicedock import VoiceDockClient
from tests.clock import FakeClock
from tests.e2e import KEY, nl_numbers, write_campaign, write_config

T0 = datetime(2027, 3, 1, 8, 30, tzinfo=UTC)  # a Monday, 09:30 in Amsterdam
PHONE = nl_numbers(1)[0]
RETRY_AFTER_S = 600.0  # a long 429 pause: far beyond every timeout of the engine
CREATE_TIMEOUT = timedelta(seconds=30)
SETTLE = timedelta(seconds=30)
RECHECK = timedelta(seconds=5)


@dataclass
class World:
    """One campaign of one contact, a store, a fake time and whatever answers the API."""

    config: Config
    campaign: Campaign
    store: Store
    clock: FakeClock
    transport: httpx.AsyncBaseTransport
    stack: contextlib.AsyncExitStack
    engines: list[Engine] = field(default_factory=list)

    def budget(self) -> RequestBudget:
        return RequestBudget(
            100_000,
            margin=0.0,
            clock=self.clock.monotonic,
            wall_clock=self.clock.unix,
            sleep=self.clock.sleep,
        )

    async def engine(
        self,
        worker: str,
        budget: RequestBudget | None = None,
        *,
        keys: Mapping[str, str] | None = None,
        backoff_s: float = 0,
        poll: PollPlan | None = None,
        tick: float = 0.01,
        campaigns: Sequence[Campaign] | None = None,
    ) -> Engine:
        """A daemon on this world; ``keys``: its API keys by name (default: KEY as "default");
        ``backoff_s``: the client's back-off before re-sending after a failure (real time);
        ``poll``: its poll plan (default: PollPlan()); ``tick``: the longest its loops sleep
        (real time), when a test runs them; ``campaigns``: what it dials (default: the world's
        one campaign)."""
        clients = {
            name: await self.stack.enter_async_context(
                VoiceDockClient(
                    base_url=self.config.voicedock.base_url,
                    api_key=secret,
                    budget=budget or self.budget(),
                    transport=self.transport,
                    backoff_base_s=backoff_s,
                )
            )
            for name, secret in (keys or {"default": KEY}).items()
        }
        engine = Engine(
            store=self.store,
            clients=clients,
            campaigns=campaigns or [self.campaign],
            settings=engine_settings(
                self.config,
                poll=poll or PollPlan(),
                worker_id=worker,
                create_timeout=CREATE_TIMEOUT,
                reconcile_settle=SETTLE,
                send_recheck_after=RECHECK,
                worker_ttl=timedelta(seconds=30),
                tick=tick,
            ),
            clock=self.clock,
        )
        engine.sync_campaigns()
        self.engines.append(engine)
        return engine

    def attempt(self) -> AttemptView:
        (attempt,) = self.store.attempts()
        return attempt


@contextlib.asynccontextmanager
async def world(
    tmp_path: Path,
    transport: httpx.AsyncBaseTransport,
    clock: FakeClock,
    *,
    window: str | None = None,
    phones: Sequence[str] = (PHONE,),
    extra: str = "",
    db_url: str | None = None,
    lock_wait_s: float = 30.0,
) -> AsyncIterator[World]:
    campaign = load_campaign(
        write_campaign(tmp_path, phones, extra=extra, **({"window": window} if window else {}))
    )
    config = write_config(tmp_path, db_url=db_url or f"sqlite:///{tmp_path}/dialer.db")
    with Store(config.database_url, lock_wait_s=lock_wait_s) as store:
        store.create_schema()
        async with contextlib.AsyncExitStack() as stack:
            w = World(
                config=config,
                campaign=campaign,
                store=store,
                clock=clock,
                transport=transport,
                stack=stack,
            )
            try:
                yield w
            finally:
                for engine in w.engines:
                    await engine.drain(grace_s=0)


def simulator(clock: FakeClock) -> Simulator:
    return Simulator(
        SimulatorConfig(api_key=KEY, requests_per_minute=100_000, seed=3),
        clock=clock.monotonic,
        wall_clock=clock,
    )


def held_budget(w: World) -> RequestBudget:
    budget = w.budget()
    budget.pause_for(RETRY_AFTER_S)  # as a 429 with this Retry-After would
    return budget
