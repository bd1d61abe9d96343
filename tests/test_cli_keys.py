"""`dialer validate`, `status` and `plan` speak in reminder keys: the campaign's mode, each key
done, pending (which attempt, when next), closed, new or removed, read from the database."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dialer.cli import app
from dialer.config import Config
from dialer.simulator import Simulator, SimulatorConfig
from tests.e2e import KEY, fast_settings, load, nl_numbers, run_daemon, write_campaign, write_config

SCALE = 200.0
PHONES = nl_numbers(4, start=300)
RETRY = '[retry]\nmax_attempts = 3\nno_answer = { after = "12h", max = 2 }\n'


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("DIALER_CONFIG", raising=False)
    return CliRunner()


def invoke(runner: CliRunner, config: Config, *args: str) -> tuple[int, str]:
    assert config.source is not None
    result = runner.invoke(app, [*args, "--config", str(config.source)])
    return result.exit_code, result.stdout


def test_validate_says_which_mode_a_campaign_is_in(tmp_path: Path, runner: CliRunner) -> None:
    once = write_campaign(tmp_path, PHONES, name="once")
    every = write_campaign(tmp_path, PHONES, name="every", extra='repeat = "every_run"')
    result = runner.invoke(app, ["validate", str(once), str(every)])
    assert result.exit_code == 0
    said = " ".join(result.stdout.split())  # as printed, wrapped at the terminal's width
    assert (
        "'once', 4 contacts, once per key: each reminder until done (done when completed)" in said
    )
    assert "'every', 4 contacts, every run: everyone at each fire" in said


async def test_status_and_plan_show_each_key_done_pending_new_or_removed(
    tmp_path: Path, runner: CliRunner, sqlite_url: str
) -> None:
    path = write_campaign(tmp_path, PHONES[:3], retry=RETRY)
    config = write_config(tmp_path, db_url=sqlite_url)
    sim = Simulator(
        SimulatorConfig(
            api_key=KEY,
            time_scale=SCALE,
            seed=5,
            requests_per_minute=6000,
            destination_outcomes={
                PHONES[0]: "answered",
                PHONES[1]: "no_answer",
                PHONES[2]: "invalid_number",
            },
        )
    )
    await run_daemon(
        config,
        [load(path)],
        sim,
        fast_settings(config, SCALE, idle_horizon=timedelta(minutes=1)),
    )
    code, out = invoke(runner, config, "status")
    assert code == 0
    said = " ".join(out.split())
    assert "keys: 0 new · 1 pending · 1 done · 1 closed · 0 removed (once per key" in said

    code, out = invoke(runner, config, "status", "e2e", "--keys")
    assert code == 0
    lines = {line.split("│")[2].strip(): line for line in out.splitlines() if "│ +31" in line}
    assert "done" in lines[PHONES[0]] and "completed" in lines[PHONES[0]]
    assert "pending" in lines[PHONES[1]] and "attempt 2, next" in lines[PHONES[1]]
    assert "closed" in lines[PHONES[2]] and "invalid_number" in lines[PHONES[2]]

    # the next export: the third contact is gone, a fourth is new
    write_campaign(tmp_path, [PHONES[0], PHONES[1], PHONES[3]], retry=RETRY)
    code, out = invoke(runner, config, "plan", str(path), "--format", "json")
    assert code == 0
    rows = {row["phone"]: row for row in map(json.loads, out.splitlines())}
    assert rows[PHONES[0]]["state"] == "done" and rows[PHONES[0]]["first_call"] is None
    assert rows[PHONES[1]]["state"] == "pending"
    assert rows[PHONES[1]]["detail"].startswith("attempt 2 of 3")
    assert rows[PHONES[1]]["first_call"] is not None  # when its retry is due
    assert rows[PHONES[2]]["state"] == "removed"
    assert rows[PHONES[3]]["state"] == "new" and rows[PHONES[3]]["first_call"] is not None
