"""Helpers for end-to-end tests: a campaign on disk, a config, a daemon on the simulator."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import httpx

from dialer.attempts import FINAL_STATES, AttemptState
from dialer.campaign import Campaign, load_campaign
from dialer.config import Config, load_config
from dialer.daemon import Daemon, engine_settings, open_daemon, run_until_stopped
from dialer.engine import EngineSettings
from dialer.policy.polling import PollPlan
from dialer.simulator import Simulator
from dialer.store import Store

KEY = "sim_test_key"
ASSISTANT = "7d1e5b2a-4c3f-4e8a-9b6d-0a1b2c3d4e5f"
ALWAYS_OPEN = (
    '[window]\ndays = ["mon-sun"]\nhours = ["00:00-24:00"]\nmin_time_before_close = "0s"\n'
)


DIALER = str(Path(sys.executable).with_name("dialer"))


async def start_dialer(config: Path, *, until_idle: bool = True) -> asyncio.subprocess.Process:
    """The real `dialer run --until-idle` in its own process, keyed for the simulator
    (``until_idle=False``: `dialer run`, which runs until a signal stops it).

    Its JSON log goes to a file next to the config: an undrained pipe would fill and block the
    daemon's event loop mid-run, which is not what a deployed daemon does.
    """
    log = (config.parent / f"dialer-{len(list(config.parent.glob('dialer-*.log')))}.log").open("wb")
    try:
        return await asyncio.create_subprocess_exec(
            DIALER,
            "run",
            "--config",
            str(config),
            *(["--until-idle"] if until_idle else []),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "VOICEDOCK_API_KEY": KEY},
        )
    finally:
        log.close()  # the child has its own descriptor


def tail_of(process_log: Path, chars: int = 2000) -> str:
    return process_log.read_text(encoding="utf-8", errors="replace")[-chars:]


def nl_numbers(n: int, start: int = 0) -> list[str]:
    return [f"+3161{start + i:07d}" for i in range(n)]


def write_campaign(
    folder: Path,
    phones: Sequence[str],
    *,
    name: str = "e2e",
    extra: str = "",
    window: str = ALWAYS_OPEN,
    retry: str = "[retry]\nmax_attempts = 1\n",
) -> Path:
    lines = [
        f'name = "{name}"',
        f'assistant_id = "{ASSISTANT}"',
        'number_id = "c0ffee00-1d2e-4f3a-8b4c-5d6e7f8a9b0c"',
        f'contacts_file = "{name}.csv"',
        extra,
        window,
        retry,
        '[assistant_override]\nfirst_message = "Hello {{ name }}, a reminder for {{ slot }}."',
    ]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = ["phone,name,slot"] + [f"{p},Person {i},10:{i % 60:02d}" for i, p in enumerate(phones)]
    (folder / f"{name}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def write_config(
    folder: Path,
    *,
    db_url: str,
    base_url: str = "http://sim/api/v1",
    rpm: int = 6000,
    campaigns: str = "e2e.toml",
    max_concurrent: int = 10,
    voicedock_extra: str = "",
    extra: str = "",
    create_timeout: str = "2s",
) -> Config:
    path = folder / "config.toml"
    path.write_text(
        f'[voicedock]\nbase_url = "{base_url}"\nrequests_per_minute = {rpm}\n'
        f'create_timeout = "{create_timeout}"\n{voicedock_extra}\n\n'
        f'[database]\nurl = "{db_url}"\n\n'
        f'[dialer]\ncampaigns = ["{campaigns}"]\nmax_concurrent_calls = {max_concurrent}\n'
        f'reconcile_settle = "1s"\nreconcile_margin = "1m"\n{extra}\n',
        encoding="utf-8",
    )
    return load_config(path)


def fast_settings(config: Config, scale: float, **overrides: object) -> EngineSettings:
    values: dict[str, object] = dict(
        poll=PollPlan().scaled(scale),
        tick=0.05,
        reconcile_interval=timedelta(seconds=0.2),
        create_timeout=timedelta(seconds=1),
        reconcile_settle=timedelta(seconds=1),
        send_recheck_after=timedelta(seconds=0.5),
        report_grace=timedelta(seconds=30) / scale,
        idle_horizon=timedelta(minutes=5),
    )
    values.update(overrides)
    return engine_settings(config, **values)


async def run_daemon(
    config: Config,
    campaigns: Sequence[Campaign],
    sim: Simulator,
    settings: EngineSettings,
    *,
    stop_when: Callable[[Daemon], bool] | None = None,
    watch: Callable[[Daemon], None] | None = None,
    bound_s: float = 90.0,
    transport: httpx.AsyncBaseTransport | None = None,
    opened: Callable[[Daemon], None] | None = None,
) -> Daemon:
    """Run one daemon until idle (or until ``stop_when`` holds), with a hard time bound;
    ``opened`` is told of the daemon once it has started, before its loops run."""
    transport = transport or httpx.ASGITransport(app=sim.app)
    async with open_daemon(
        config, campaigns, transport=transport, settings=settings, api_key=KEY
    ) as daemon:
        stop = asyncio.Event()
        if opened is not None:
            opened(daemon)

        def tick() -> None:
            if watch is not None:
                watch(daemon)
            if stop_when is not None and stop_when(daemon):
                stop.set()

        async with asyncio.timeout(bound_s):
            await run_until_stopped(daemon, until_idle=stop_when is None, on_tick=tick, stop=stop)
        return daemon


def load(path: Path) -> Campaign:
    return load_campaign(path)


def latest_states(store: Store, campaign: str) -> dict[str, AttemptState]:
    row = store.campaign(campaign)
    assert row is not None and row.id is not None
    return {a.phone: a.state for a in store.latest_attempts(row.id)}


def all_final(store: Store, campaign: str) -> bool:
    return all(state in FINAL_STATES for state in latest_states(store, campaign).values())
