"""kill -9 at random moments: the real `dialer run` process, killed ten times mid-campaign and
restarted on the same database each time, never dials anyone twice and loses no outcome."""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import select

from dialer.attempts import AttemptState
from dialer.simulator import Simulator, SimulatorConfig, serve
from dialer.store import Store
from dialer.store.tables import AttemptRow
from tests.e2e import (
    KEY,
    all_final,
    latest_states,
    nl_numbers,
    start_dialer,
    tail_of,
    write_campaign,
    write_config,
)

MAX_ATTEMPTS = 2
RETRY = f"[retry]\nmax_attempts = {MAX_ATTEMPTS}\n" + "".join(
    f'{outcome} = {{ after = "1s", max = 1 }}\n'
    for outcome in ("no_answer", "busy", "voicemail", "failed_transient")
)


@pytest.mark.slow
async def test_sigkill_ten_times_no_double_dial(tmp_path: Path, sqlite_url: str) -> None:
    simulator = Simulator(
        SimulatorConfig(api_key=KEY, time_scale=60, seed=9, requests_per_minute=20_000)
    )
    phones = nl_numbers(120)
    write_campaign(tmp_path, phones, retry=RETRY)
    rng = random.Random(20261125)
    kills = 0
    async with serve(simulator) as base_url:
        config = write_config(
            tmp_path,
            db_url=sqlite_url,
            base_url=base_url,
            rpm=20_000,
            extra='stuck_after = "1m"\npoll_interval = "0.3s"\n'
            'expected_call_length = "1.5s"\nlist_interval = "0.5s"',
        )
        assert config.source is not None
        for _ in range(40):
            if kills == 10:
                break
            process = await start_dialer(config.source)
            # Kill at a random moment once the daemon is past its imports and working.
            await asyncio.sleep(rng.uniform(1.2, 3.0))
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            await process.wait()
        assert kills == 10
        created_before_final = len(simulator.created)
        final = await start_dialer(config.source)
        async with asyncio.timeout(180):
            code = await final.wait()
        assert code == 0, tail_of(tmp_path / f"dialer-{kills}.log")

    created = simulator.created
    per_destination = Counter(r.destination for r in created)
    print(
        f"\ncrash run: {len(phones)} contacts, {kills} SIGKILLs, {len(created)} calls created "
        f"({created_before_final} before the final run), max per destination "
        f"{max(per_destination.values())}, outcomes {Counter(r.outcome for r in created)}"
    )
    assert simulator.max_live_calls_per_destination() == 1
    assert max(per_destination.values()) <= MAX_ATTEMPTS
    assert set(per_destination) == set(phones)
    with Store(config.database_url) as store:
        assert all_final(store, "e2e")
        states = Counter(latest_states(store, "e2e").values())
        assert set(states) <= {AttemptState.ENDED, AttemptState.UNKNOWN}, states
        with store.session() as session:
            rows = list(session.exec(select(AttemptRow)).all())
    assert {r.call_id for r in created} <= {r.call_id for r in rows if r.call_id}
    assert all(r.outcome for r in rows if r.state == AttemptState.ENDED)
    # Attempts beyond the first exist only where the policy planned a retry.
    first_outcomes = Counter(r.outcome for r in rows if r.attempt_no == 1)
    assert first_outcomes
