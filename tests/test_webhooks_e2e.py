"""Webhooks as an accelerator: signed deliveries (some dropped, some doubled) end calls without
a poll; polling still finishes the calls whose webhooks never came."""

from __future__ import annotations

import socket
from collections import Counter
from pathlib import Path

import pytest

from dialer.attempts import AttemptState
from dialer.simulator import Simulator, SimulatorConfig, serve
from dialer.store import Store
from tests.e2e import (
    KEY,
    fast_settings,
    latest_states,
    load,
    nl_numbers,
    run_daemon,
    write_campaign,
    write_config,
)

SECRET = "whsec_e2e"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_webhooks_end_calls_and_polling_covers_the_dropped_ones(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIALER_TEST_WEBHOOK_SECRET", SECRET)
    port = free_port()
    simulator = Simulator(
        SimulatorConfig(
            api_key=KEY,
            time_scale=100,
            seed=5,
            requests_per_minute=20_000,
            webhook_url=f"http://127.0.0.1:{port}/webhooks/voicedock",
            webhook_secret=SECRET,
            webhook_drop=0.2,
            webhook_duplicate=0.2,
        )
    )
    phones = nl_numbers(40)
    campaign = load(write_campaign(tmp_path, phones))
    async with serve(simulator) as base_url:
        config = write_config(
            tmp_path,
            db_url=sqlite_url,
            base_url=base_url,
            rpm=20_000,
            extra=f'\n[webhooks]\nlisten = "127.0.0.1:{port}"\n'
            'secret_env = "DIALER_TEST_WEBHOOK_SECRET"',
        )
        daemon = await run_daemon(
            config, [campaign], simulator, fast_settings(config, 100), transport=None
        )
    assert Counter(r.destination for r in simulator.created) == Counter(phones)
    assert simulator.webhooks_sent > 0
    assert daemon.engine.stats.get("webhooks", 0) > 0
    with Store(config.database_url) as store:
        assert set(latest_states(store, "e2e").values()) == {AttemptState.ENDED}
        assert len(store.events(kind="attempt.ended")) == 40  # duplicates recorded once
