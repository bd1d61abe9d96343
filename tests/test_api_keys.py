"""Several API keys in one deployment: each campaign dials with its own key, within its budget."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from dialer.attempts import FINAL_STATES, AttemptState
from dialer.cli import app
from dialer.config import Config
from dialer.daemon import Daemon
from dialer.simulator import Simulator, SimulatorConfig
from dialer.store import Store
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

NORTH_KEY = "sim_north_key"
SCALE = 30.0
#: per SIMULATED minute (the simulator scales its limit like its calls)
DEFAULT_LIMIT = 600
NORTH_LIMIT = 60


def _two_key_config(tmp_path: Path, db_url: str) -> Config:
    """Campaign "south" on the default key, "north" on its own, smaller key."""
    write_campaign(tmp_path, nl_numbers(150), name="south")
    write_campaign(tmp_path, nl_numbers(30, start=1000), name="north", extra='key = "north"')
    # The dialer's budgets are per real minute: the simulated limits times the scale.
    return write_config(
        tmp_path,
        db_url=db_url,
        rpm=int(DEFAULT_LIMIT * SCALE),
        campaigns="*.toml",
        max_concurrent=200,
        voicedock_extra=(
            'budget_margin = 0.1\n[voicedock.keys.north]\napi_key_env = "NORTH_KEY"\n'
            f"requests_per_minute = {int(NORTH_LIMIT * SCALE)}\n"
        ),
    )


async def test_each_campaign_dials_with_its_key_within_that_keys_limit(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NORTH_KEY", NORTH_KEY)
    config = _two_key_config(tmp_path, db_url)
    campaigns = [load(tmp_path / "south.toml"), load(tmp_path / "north.toml")]
    sim = Simulator(
        SimulatorConfig(
            api_key=KEY,
            extra_api_keys=(NORTH_KEY,),
            requests_per_minute=DEFAULT_LIMIT,
            key_requests_per_minute={NORTH_KEY: NORTH_LIMIT},
            time_scale=SCALE,
            scale_rate_limit=True,
            seed=17,
        )
    )
    daemon = await run_daemon(
        config,
        campaigns,
        sim,
        fast_settings(config, SCALE, max_concurrent_calls=200),
        transport=httpx.ASGITransport(app=sim.app),
        bound_s=120,
    )

    with Store(config.database_url) as store:  # the daemon's own store closed with it
        for name in ("south", "north"):
            states = latest_states(store, name)
            assert len(states) == {"south": 150, "north": 30}[name]
            assert all(state in FINAL_STATES for state in states.values()), states
    south = set(nl_numbers(150))
    north = set(nl_numbers(30, start=1000))
    used = {record.destination: record.api_key for record in sim.created}
    assert {d for d, key in used.items() if key == KEY} == south
    assert {d for d, key in used.items() if key == NORTH_KEY} == north
    window = 60 / SCALE
    assert sim.peak_requests_in_window(window, api_key=NORTH_KEY) <= NORTH_LIMIT
    assert sim.peak_requests_in_window(window, api_key=KEY) <= DEFAULT_LIMIT
    assert sim.count_status(429) == 0
    # The budgets are separate: the default key went well past what the small key may spend.
    assert sim.peak_requests_in_window(window, api_key=KEY) > NORTH_LIMIT
    # The engine's request count spans both clients.
    assert sum(daemon.engine.requests_sent().values()) == len(sim.request_log)
    assert set(daemon.clients) == {"default", "north"}


def test_a_campaign_naming_an_unknown_key_is_refused_with_file_line_and_field(
    tmp_path: Path, sqlite_url: str
) -> None:
    write_campaign(tmp_path, nl_numbers(2), name="east", extra='key = "east"')
    config = write_config(tmp_path, db_url=sqlite_url, campaigns="east.toml")
    result = CliRunner().invoke(app, ["validate", "--config", str(config.source)])
    assert result.exit_code == 2
    assert "east.toml:5: key: no API key 'east' in the config" in result.stderr
    assert "[voicedock.keys.east]" in result.stderr


async def test_a_refused_key_holds_only_its_own_campaigns(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The north key is revoked once the daemon has started (a key wrong from the start stops
    # `dialer run` at once, see test_holds): its contacts must wait, not fail; south runs to
    # the end.
    monkeypatch.setenv("NORTH_KEY", "sim_revoked_key")
    config = _two_key_config(tmp_path, sqlite_url)
    campaigns = [load(tmp_path / "south.toml"), load(tmp_path / "north.toml")]
    sim = Simulator(
        SimulatorConfig(
            api_key=KEY,
            extra_api_keys=("sim_revoked_key",),
            time_scale=SCALE,
            scale_rate_limit=True,
            seed=18,
        )
    )

    def south_done(daemon: Daemon) -> bool:
        return all_final(daemon.store, "south")

    daemon = await run_daemon(
        config,
        campaigns,
        sim,
        fast_settings(config, SCALE, max_concurrent_calls=200),
        stop_when=south_done,
        bound_s=120,
        opened=lambda _: sim.revoke("sim_revoked_key"),
    )
    problem = daemon.engine.account_problem
    with Store(config.database_url) as store:
        north = latest_states(store, "north")
        assert all_final(store, "south")
    assert set(north.values()) == {AttemptState.PLANNED}, north
    assert {record.api_key for record in sim.created} == {KEY}
    assert problem is not None and problem.startswith("key north: ")
