"""Fault injection: 300 contacts through 429s, 5xx, ambiguous creates and calls that never end.

Judged from the simulator's own record of created calls, never from the dialer's database:
no destination ever has two live calls, none gets more calls than its attempts allow, every
call the simulator created is owned by an attempt, and every contact ends settled.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from dialer.attempts import AttemptState
from dialer.simulator import Faults, Simulator, SimulatorConfig, serve
from dialer.store import Store
from dialer.store.tables import AttemptRow
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

SCALE = 300.0
MAX_ATTEMPTS = 3
RETRY = (
    f"[retry]\nmax_attempts = {MAX_ATTEMPTS}\n"
    'no_answer = { after = "1s", max = 2 }\nbusy = { after = "1s", max = 2 }\n'
    'voicemail = { after = "1s", max = 1 }\nfailed_transient = { after = "1s", max = 2 }\n'
)


@pytest.mark.slow
async def test_300_contacts_under_faults(tmp_path: Path, sqlite_url: str) -> None:
    faults = Faults(
        rate_limited=0.10,
        server_error=0.05,
        ambiguous_create=0.03,
        stuck_call=0.01,
        late_response_s=3.0,
    )
    simulator = Simulator(
        SimulatorConfig(
            api_key=KEY, time_scale=SCALE, seed=2026, requests_per_minute=20_000, faults=faults
        )
    )
    phones = nl_numbers(300)
    campaign = load(write_campaign(tmp_path, phones, retry=RETRY))
    async with serve(simulator) as base_url:
        config = write_config(
            tmp_path, db_url=sqlite_url, base_url=base_url, rpm=20_000, extra='stuck_after = "4s"'
        )
        settings = fast_settings(
            config,
            SCALE,
            max_concurrent_calls=25,
            stuck_after=timedelta(seconds=4),
            late_result_horizon=timedelta(seconds=5),
        )
        daemon = await run_daemon(
            config, [campaign], simulator, settings, bound_s=150, transport=None
        )

    created = simulator.created
    per_destination = Counter(r.destination for r in created)
    injected = Counter(r.response for r in created)
    print(
        f"\nfault run: {len(phones)} contacts, {len(created)} calls created, "
        f"responses {dict(injected)}, 429s {simulator.count_status(429)}, "
        f"5xx {sum(1 for r in simulator.request_log if r.status >= 500)}, "
        f"stuck {sum(1 for r in created if r.outcome == 'stuck')}, stats {daemon.engine.stats}"
    )
    assert simulator.max_live_calls_per_destination() == 1
    assert max(per_destination.values()) <= MAX_ATTEMPTS
    assert set(per_destination) <= set(phones)
    assert injected["lost"] + injected["late"] + injected["error"] > 0  # faults really happened
    with Store(config.database_url) as store:
        assert all_final(store, "e2e")
        states = Counter(latest_states(store, "e2e").values())
        assert set(states) <= {AttemptState.ENDED, AttemptState.UNKNOWN}, states
        with store.session() as session:
            rows = list(session.exec(select(AttemptRow)).all())
    owned = {r.call_id for r in rows if r.call_id}
    assert {r.call_id for r in created} <= owned  # every call placed is followed by an attempt
    for row in rows:
        if row.state == AttemptState.ENDED:
            assert row.outcome and row.raw  # no outcome missing
        if row.state == AttemptState.UNKNOWN:
            assert row.outcome == "unknown"
