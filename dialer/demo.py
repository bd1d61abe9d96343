"""`dialer demo`: a real campaign, end to end, against the built-in simulator on loopback.

Everything is the production path (config file, campaign loader, store, budget, client, engine,
schedules); only VoiceDock is replaced by the simulator, time-scaled so a 90-second call takes
three seconds, with its rate limit scaled alike.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import timedelta
from importlib import resources
from pathlib import Path

from rich.console import Console

from dialer.daemon import engine_settings, open_daemon, run_until_stopped, stop_on_signals
from dialer.progress import live_progress, outcome_tables
from dialer.simulator import Simulator, SimulatorConfig, serve

TIME_SCALE = 30.0
DEMO_KEY = "sim_demo_key"
#: what the simulator answers for some demo numbers, so every run shows a retry and a failure
FORCED_OUTCOMES_FILE = "demo-outcomes.toml"


#: the demo campaign's files, package data of ``dialer`` (found in a wheel as in a checkout)
DEMO_DATA = "demo_data"
DEMO_FILES = ("demo.toml", "demo.csv", FORCED_OUTCOMES_FILE)


def unpack_demo_campaign(folder: Path) -> Path:
    """Write the built-in demo campaign into ``folder``; the path of its TOML file.

    Read through importlib.resources, so it works from any installed form of the package (a
    wheel, a zip), and copied, because the loader reads a CSV next to the campaign file."""
    data = resources.files("dialer") / DEMO_DATA
    for name in DEMO_FILES:
        (folder / name).write_bytes((data / name).read_bytes())
    return folder / DEMO_FILES[0]


def _config_text(base_url: str, db: Path, campaign: Path) -> str:
    return f"""
[voicedock]
base_url = "{base_url}"
api_key_env = "DIALER_DEMO_UNUSED"
requests_per_minute = {int(100 * TIME_SCALE)}

[database]
url = "sqlite:///{db}"

[dialer]
campaigns = ["{campaign}"]
max_concurrent_calls = 12
poll_interval = "1s"
stuck_after = "3m"
"""


def _forced_outcomes(campaign: Path) -> dict[str, str]:
    import tomllib

    path = campaign.with_name(FORCED_OUTCOMES_FILE)
    if not path.exists():
        return {}
    with path.open("rb") as fh:
        return {str(k): str(v) for k, v in tomllib.load(fh).get("outcomes", {}).items()}


def run_demo(
    console: Console, *, campaign_path: Path | None = None, keep: Path | None = None
) -> int:
    with tempfile.TemporaryDirectory(prefix="dialer-demo-") as tmp:
        workdir = keep.resolve() if keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if campaign_path is None:
            campaign_folder = workdir / "campaign"
            campaign_folder.mkdir(exist_ok=True)
            campaign_path = unpack_demo_campaign(campaign_folder)
        return asyncio.run(_demo(console, campaign_path.resolve(), workdir))


async def _demo(console: Console, campaign_path: Path, workdir: Path) -> int:
    from dialer.campaign.catalog import load_all
    from dialer.config import load_config
    from dialer.policy.polling import PollPlan

    sim = Simulator(
        SimulatorConfig(
            api_key=DEMO_KEY,
            time_scale=TIME_SCALE,
            requests_per_minute=100,
            scale_rate_limit=True,
            seed=7,
            destination_outcomes=_forced_outcomes(campaign_path),
        )
    )
    started = time.monotonic()
    async with serve(sim, host="127.0.0.1", port=0) as base_url:
        db = workdir / "demo.db"
        db.unlink(missing_ok=True)
        config_path = workdir / "config.toml"
        config_path.write_text(_config_text(base_url, db, campaign_path), encoding="utf-8")
        # the demo's own throwaway database, whatever $DIALER_DATABASE_URL says
        config = load_config(config_path, environ={})
        campaigns = load_all(config)
        settings = engine_settings(
            config,
            poll=PollPlan().scaled(TIME_SCALE),
            idle_horizon=timedelta(minutes=5),
            reconcile_settle=timedelta(seconds=3),
            create_timeout=timedelta(seconds=5),
        )
        console.rule(
            f"[bold]VoiceDock dialer demo[/bold] — simulator at {base_url} (time x{TIME_SCALE:g})"
        )
        console.print(
            f"campaign {campaign_path.name}: {sum(len(c.contacts) for c in campaigns)} contacts; "
            f"database {db}"
        )
        async with open_daemon(config, campaigns, settings=settings, api_key=DEMO_KEY) as daemon:
            with stop_on_signals() as stop, live_progress(daemon.store, console) as refresh:
                await run_until_stopped(daemon, until_idle=True, stop=stop, on_tick=refresh)
            console.print()
            for campaign in campaigns:
                for table in outcome_tables(daemon.store, campaign.name):
                    console.print(table)
            requests = sum(daemon.engine.requests_sent().values())
            ended = daemon.engine.stats["ended"]
    wall = time.monotonic() - started
    double = sum(1 for calls in sim.created_by_destination().values() if len(calls) > 1)
    console.print(
        f"wall time {wall:.1f}s · {len(sim.created)} calls created · {ended} ended · "
        f"{requests} API requests ({requests / max(ended, 1):.2f} per completed call) · "
        f"destinations called more than once (retries): {double}"
    )
    return 0
