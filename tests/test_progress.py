"""The live progress display counts in the database: its grouped read agrees with the newest
attempt of every contact (retries planned behind ended calls included), on both backends."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.console import Console

from dialer.attempts import AttemptState
from dialer.progress import live_progress
from dialer.simulator import OutcomeMix, OutcomeName, Simulator, SimulatorConfig
from dialer.store import Store
from tests.e2e import KEY, fast_settings, load, nl_numbers, run_daemon, write_campaign, write_config

SCALE = 200.0


async def test_progress_counts_are_the_newest_attempts_counted(tmp_path: Path, db_url: str) -> None:
    phones = nl_numbers(8)
    # an unanswered call earns a retry planned long after the run
    retry = '[retry]\nmax_attempts = 2\nno_answer = { after = "6h", max = 1 }\n'
    campaign = load(write_campaign(tmp_path, phones, retry=retry))
    config = write_config(tmp_path, db_url=db_url)
    forced: dict[str, OutcomeName | list[OutcomeName]] = {
        phones[0]: "no_answer",
        phones[1]: "no_answer",
    }
    simulator = Simulator(
        SimulatorConfig(
            api_key=KEY,
            time_scale=SCALE,
            seed=5,
            requests_per_minute=6000,
            destination_outcomes=forced,
            mix=OutcomeMix.only("answered"),
        )
    )
    await run_daemon(config, [campaign], simulator, fast_settings(config, SCALE))
    with Store(config.database_url) as store:
        row = store.campaign("e2e")
        assert row is not None
        latest = store.latest_attempts(row.id)
        (counted,) = store.latest_state_counts()
        assert counted.campaign == "e2e"
        assert dict(counted.counts) == Counter((a.state, a.outcome) for a in latest)
        assert counted.contacts == len(phones)
        # the two unanswered contacts wait for their retry: their newest attempt is planned
        assert counted.in_states(frozenset({AttemptState.PLANNED})) == 2
        console = Console(record=True, width=160, force_terminal=False)
        with live_progress(store, console) as refresh:
            refresh()
        shown = console.export_text()
        assert "e2e" in shown and f"{len(phones) - 2}/{len(phones)}" in shown
        assert "waiting 2" in shown and "in flight 0" in shown


def test_a_campaign_without_attempts_is_counted_empty(tmp_path: Path, sqlite_url: str) -> None:
    from dialer.engine import import_campaign
    from dialer.engine.settings import utc_now

    campaign = load(write_campaign(tmp_path, nl_numbers(3)))
    with Store(sqlite_url) as store:
        store.create_schema()
        import_campaign(store, campaign, now=utc_now())
        (counted,) = store.latest_state_counts()
        assert (counted.campaign, dict(counted.counts), counted.contacts) == ("e2e", {}, 0)
