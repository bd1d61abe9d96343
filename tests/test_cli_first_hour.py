"""The first hour of a new user, through the real `dialer` command: each rough edge a first try
met (issue 16), with what the command now says or does instead."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import typer
from typer.testing import CliRunner

from dialer.cli import app
from dialer.errors import NotFound
from dialer.ratelimit import RequestBudget
from dialer.simulator import Simulator, SimulatorConfig, serve
from dialer.store import Store
from dialer.voicedock import VoiceDockClient
from tests.e2e import KEY, nl_numbers, write_campaign, write_config

DIALER = Path(sys.executable).with_name("dialer")
REPO = Path(__file__).resolve().parent.parent
BODY = {"destination": "+31612345601", "assistant_id": "7d1e5b2a-4c3f-4e8a-9b6d-0a1b2c3d4e5f"}


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.delenv("DIALER_CONFIG", raising=False)
    yield CliRunner()
    # a command run in-process points structlog at CliRunner's stderr, closed afterwards: the
    # next test's log lines would fail on it
    structlog.reset_defaults()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DIALER_CONFIG", "VOICEDOCK_API_KEY")}
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ------------------------------------------------------------------ simulate


@contextlib.contextmanager
def _simulating(port: int, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [str(DIALER), "simulate", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_simulate_prints_the_base_url_to_paste_into_the_config() -> None:
    port = _free_port()
    with _simulating(port, _env()) as proc:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        pasted = [line for line in lines if line.startswith("base_url = ")]
        assert pasted == [f'base_url = "http://127.0.0.1:{port}/api/v1"\n'], lines
        assert "[voicedock]" in "".join(lines)
        assert "export VOICEDOCK_API_KEY=sim_test_key" in "".join(lines)
        assert "sim_test_key" not in "".join(lines[:3])
        # the line works: the simulator answers under it
        base_url = pasted[0].split('"')[1]
        for _ in range(100):
            with contextlib.suppress(httpx.TransportError):
                assert httpx.get(f"{base_url}/health").status_code == 200
                break
            asyncio.run(asyncio.sleep(0.05))
        else:
            pytest.fail("the simulator never answered")


def test_simulate_never_prints_a_key_taken_from_the_environment() -> None:
    secret = "fl_live_do_not_show_me_42"
    port = _free_port()
    with _simulating(port, _env(VOICEDOCK_API_KEY=secret)) as proc:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
    said = "".join(lines)
    assert f'base_url = "http://127.0.0.1:{port}/api/v1"' in said
    assert "$VOICEDOCK_API_KEY" in said and secret not in said


# ------------------------------------------------------------------ a 404 on the create


@pytest.mark.parametrize(
    ("suffix", "hint"),
    [
        ("", "base_url should end in /api/v1"),
        ("/api/v1/nowhere", "base_url should end in /api/v1"),
    ],
)
async def test_a_404_on_the_create_logs_one_hint_about_base_url(suffix: str, hint: str) -> None:
    sim = Simulator(SimulatorConfig(api_key=KEY, requests_per_minute=6000))
    async with serve(sim) as base_url:
        wrong = base_url.removesuffix("/api/v1") + suffix
        client = VoiceDockClient(base_url=wrong, api_key=KEY, budget=RequestBudget(6000))
        async with client:
            with structlog.testing.capture_logs() as logs:
                for _ in range(3):
                    with pytest.raises(NotFound):
                        await client.create_call(BODY)
    hints = [e for e in logs if e["event"] == "dialer.api.create_not_found"]
    assert len(hints) == 1, hints
    assert hint in hints[0]["hint"] and hints[0]["log_level"] == "warning"
    assert sim.created == []


async def test_a_404_under_api_v1_points_at_the_assistant_instead() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "Not Found", "message": "Assistant not found"})

    client = VoiceDockClient(
        base_url="https://api.example/api/v1",
        api_key=KEY,
        budget=RequestBudget(6000),
        transport=httpx.MockTransport(handler),
    )
    async with client:
        with structlog.testing.capture_logs() as logs, pytest.raises(NotFound):
            await client.create_call(BODY)
    (hint,) = [e for e in logs if e["event"] == "dialer.api.create_not_found"]
    assert "assistant_id" in hint["hint"] and "should end" not in hint["hint"]


async def test_dialer_run_says_once_what_a_404_on_the_create_means(
    tmp_path: Path, sqlite_url: str
) -> None:
    write_campaign(tmp_path, nl_numbers(3))
    sim = Simulator(SimulatorConfig(api_key=KEY, time_scale=200.0, requests_per_minute=6000))
    async with serve(sim) as base_url:
        config = write_config(
            tmp_path, db_url=sqlite_url, base_url=base_url.removesuffix("/api/v1")
        )
        log_path = tmp_path / "dialer.log"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                str(DIALER),
                "run",
                env=_env(VOICEDOCK_API_KEY=KEY, DIALER_CONFIG=str(config.source)),
                cwd=tmp_path,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        try:
            async with asyncio.timeout(60):
                while b"dialer.api.create_not_found" not in log_path.read_bytes():
                    assert proc.returncode is None, log_path.read_text()[-2000:]
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # room for more 404s, which must not repeat the hint
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), timeout=20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    events = [
        json.loads(line)
        for line in log_path.read_text(encoding="utf-8").splitlines()
        if line.startswith("{")
    ]
    hints = [e for e in events if e["event"] == "dialer.api.create_not_found"]
    assert len(hints) == 1
    assert "base_url should end in /api/v1" in hints[0]["hint"]
    assert KEY not in log_path.read_text(encoding="utf-8")
    assert sim.created == []


# ------------------------------------------------------------------ no config yet


@pytest.mark.parametrize("command", [["validate"], ["status"], ["db", "upgrade"], ["run"]])
def test_a_missing_config_says_how_to_make_one(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, command)
    assert result.exit_code == 2, result.output
    said = " ".join(result.stderr.split())
    assert "config.toml: file: file not found" in said
    assert "cp config.example.toml config.toml" in said
    assert "--config PATH" in said and "DIALER_CONFIG" in said


def test_the_hint_names_the_file_asked_for(runner: CliRunner, tmp_path: Path) -> None:
    wanted = tmp_path / "prod.toml"
    result = runner.invoke(app, ["validate", "--config", str(wanted)])
    assert result.exit_code == 2
    assert f"cp config.example.toml {wanted}" in " ".join(result.stderr.split())


# ------------------------------------------------------------------ validate several files


def test_validate_says_ok_for_every_good_file_when_another_fails(
    runner: CliRunner, tmp_path: Path
) -> None:
    good = write_campaign(tmp_path, nl_numbers(2), name="good")
    other = write_campaign(tmp_path, nl_numbers(2, start=10), name="other")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nasistant_id = "x"\n', encoding="utf-8")
    twin = tmp_path / "twin.toml"
    twin.write_text(good.read_text(encoding="utf-8"), encoding="utf-8")  # name "good" again
    result = runner.invoke(app, ["validate", str(good), str(bad), str(other), str(twin)])
    assert result.exit_code == 2
    said = " ".join(result.stdout.split())
    assert f"ok {good}: campaign 'good'" in said
    assert f"ok {other}: campaign 'other'" in said
    assert str(bad) not in result.stdout and str(twin) not in result.stdout
    errors = " ".join(result.stderr.split())
    assert f"{bad}:2: asistant_id: unknown key" in errors
    assert f"{twin}:1: name: campaign name 'good' is already used by {good}" in errors


def test_validate_with_the_configs_campaigns_says_ok_for_each(
    runner: CliRunner, tmp_path: Path
) -> None:
    write_campaign(tmp_path, nl_numbers(2), name="good")
    (tmp_path / "bad.toml").write_text('name = "bad"\n', encoding="utf-8")
    config = write_config(tmp_path, db_url="sqlite:///x.db", campaigns="*.toml")
    result = runner.invoke(app, ["validate", "--config", str(config.source)])
    assert result.exit_code == 2
    assert "ok " in result.stdout and "campaign 'good'" in result.stdout
    assert "bad.toml" in result.stderr


# ------------------------------------------------------------------ the shipped campaigns


def test_every_file_the_default_glob_finds_is_a_campaign(runner: CliRunner, tmp_path: Path) -> None:
    # campaigns/ as shipped, under a config that leaves [dialer] campaigns at its default
    shutil.copytree(REPO / "campaigns", tmp_path / "campaigns")
    (tmp_path / "config.toml").write_text("", encoding="utf-8")
    shipped = sorted((REPO / "campaigns").glob("*.toml"))
    assert shipped
    result = runner.invoke(app, ["validate", "--strict", "--config", str(tmp_path / "config.toml")])
    assert result.exit_code == 0, result.stderr
    said = " ".join(result.stdout.split())
    for path in shipped:
        assert f"ok {tmp_path / 'campaigns' / path.name}: campaign" in said
    # the simulator's forced outcomes are package data, beside the demo, out of the glob
    assert (REPO / "dialer" / "demo_data" / "demo-outcomes.toml").is_file()
    assert not (REPO / "campaigns" / "demo-outcomes.toml").exists()


# ------------------------------------------------------------------ before the first run


@pytest.mark.parametrize("command", [["status", "e2e"], ["report", "e2e"], ["audit", "e2e"]])
def test_a_campaign_not_imported_yet_says_how_to_import_it(
    runner: CliRunner, tmp_path: Path, sqlite_url: str, command: list[str]
) -> None:
    write_campaign(tmp_path, nl_numbers(2))
    config = write_config(tmp_path, db_url=sqlite_url)
    with Store(sqlite_url) as store:
        store.create_schema()
    result = runner.invoke(app, [*command, "--config", str(config.source)])
    assert result.exit_code == 2
    said = " ".join(result.stderr.split())
    assert "no campaign 'e2e' in the database" in said
    assert "`dialer run` imports every campaign file the config's [dialer] campaigns names" in said
    assert "dialer run --until-idle" in said


def test_status_of_an_empty_database_says_how_to_import(
    runner: CliRunner, tmp_path: Path, sqlite_url: str
) -> None:
    write_campaign(tmp_path, nl_numbers(2))
    config = write_config(tmp_path, db_url=sqlite_url)
    with Store(sqlite_url) as store:
        store.create_schema()
    result = runner.invoke(app, ["status", "--config", str(config.source)])
    assert result.exit_code == 0
    said = " ".join(result.stderr.split())
    assert (
        "no campaigns yet: `dialer run` imports every campaign file the config's [dialer]" in said
    )


# ------------------------------------------------------------------ plan's times and zones


def test_plan_shows_at_in_utc(runner: CliRunner, tmp_path: Path) -> None:
    path = write_campaign(tmp_path, nl_numbers(1))
    args = ["plan", str(path), "--at", "2027-03-05T12:00:00+05:00"]
    table = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.stderr
    assert "(as of 2027-03-05 07:00 UTC)" in table.stdout
    assert "12:00 UTC" not in table.stdout
    # the window is always open: the call is at once, 07:00 UTC, 08:00 in Amsterdam
    assert "Fri 2027-03-05 08:00 │ 2027-03-05 07:00" in table.stdout
    rows = runner.invoke(app, [*args, "--format", "json"])
    (row,) = map(json.loads, rows.stdout.splitlines())
    assert row["first_call"] == "2027-03-05T07:00:00+00:00"
    assert row["first_call_local"] == "2027-03-05T08:00:00+01:00"


def test_plan_labels_a_cron_fire_time_with_its_own_zone(runner: CliRunner, tmp_path: Path) -> None:
    path = write_campaign(
        tmp_path,
        ["+12125550199"],
        extra='cron = "0 9 * * mon-fri"\ntimezone = "America/New_York"',
    )
    # Saturday noon UTC: the next fire is Monday 09:00 in New York (EST, UTC-5)
    args = ["plan", str(path), "--at", "2027-03-06T12:00:00Z"]
    table = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.stderr
    title = " ".join(table.stdout.split())
    assert "(as of 2027-03-06 12:00 UTC, first run at 2027-03-08 09:00 America/New_York, " in title
    assert "2027-03-08 14:00 UTC)" in title
    assert "09:00 UTC" not in title
    assert "Mon 2027-03-08 09:00 │ 2027-03-08 14:00" in table.stdout


# ------------------------------------------------------------------ --help


def _commands() -> list[list[str]]:
    # typer's groups are click's, from whichever click typer brings: read them as groups
    root: Any = typer.main.get_command(app)
    found: list[list[str]] = [[]]
    for name, command in root.commands.items():
        found.append([name])
        found.extend([name, sub] for sub in getattr(command, "commands", {}))
    return found


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c) or "dialer")
def test_help_shows_flags_without_a_value_type(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "--help" in result.stdout
    assert "<bool>" not in result.stdout and "BOOLEAN" not in result.stdout


def test_run_help_shows_until_idle_as_a_flag(runner: CliRunner) -> None:
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "120"})
    (line,) = [line for line in result.stdout.splitlines() if "--until-idle" in line]
    assert line.split("--until-idle", 1)[1].split()[0] == "Exit"


# ------------------------------------------------------------------ demo's option


def test_demo_takes_a_campaign_file_as_campaign(runner: CliRunner, tmp_path: Path) -> None:
    shown = runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "120"}).stdout
    assert "--campaign" in shown and "--contacts" not in shown
    missing = tmp_path / "nope.toml"
    result = runner.invoke(app, ["demo", "--campaign", str(missing)])
    assert result.exit_code == 2
    assert f"no campaign file '{missing}'" in " ".join(result.stderr.split())


def test_demos_old_option_name_still_works_and_says_the_new_one(
    runner: CliRunner, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.toml"
    result = runner.invoke(app, ["demo", "--contacts", str(missing)])
    assert result.exit_code == 2
    said = " ".join(result.stderr.split())
    assert "--contacts is now --campaign" in said
    assert f"no campaign file '{missing}'" in said


# ------------------------------------------------------------------ phone extensions


@pytest.mark.parametrize(
    "written", ["+1 (212) 555-0199 ext. 4", "+1 212 555 0199 x4", "+12125550199;ext=4"]
)
def test_a_phone_extension_is_an_error_naming_its_line(
    runner: CliRunner, tmp_path: Path, written: str
) -> None:
    path = write_campaign(tmp_path, nl_numbers(2))
    csv_path = tmp_path / "e2e.csv"
    with csv_path.open("a", encoding="utf-8") as f:
        f.write(f'"{written}",Ext,10:05\n')  # line 4: header, two contacts, this one
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    said = " ".join(result.stderr.split())
    assert f"{csv_path}:4: phone: number '{written}' has an extension (4)" in said
    assert result.stdout == ""


def test_an_inline_contacts_extension_names_its_line(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "inline.toml"
    path.write_text(
        'name = "inline"\nassistant_id = "a"\n'
        '[[contacts]]\nphone = "+31612345601"\n'
        '[[contacts]]\nphone = "+1 (212) 555-0199 ext. 4"\n',
        encoding="utf-8",
    )
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:6: contacts[1].phone: number" in " ".join(result.stderr.split())


def test_a_do_not_call_extension_names_its_line(runner: CliRunner, tmp_path: Path) -> None:
    path = write_campaign(tmp_path, nl_numbers(2), extra='suppression_files = ["dnc.txt"]')
    (tmp_path / "dnc.txt").write_text("+31612345678\n+1 212 555 0199 x4\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    said = " ".join(result.stderr.split())
    assert f"{tmp_path / 'dnc.txt'}:2: phone: number '+1 212 555 0199 x4' has an extension" in said
