"""The real `dialer` command: quick commands through typer's CliRunner against a real SQLite
database prepared with the Store API, and the installed entry point in subprocesses against
the simulator served on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from dialer.attempts import AttemptState
from dialer.cli import app
from dialer.config import Config
from dialer.daemon import Daemon
from dialer.errors import ConfigError, StoreError
from dialer.simulator import Simulator, SimulatorConfig, serve
from dialer.store import ContactRecord, Store
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

DIALER = Path(sys.executable).with_name("dialer")
NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
SCALE = 200.0


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    # The commands read DIALER_CONFIG; a developer's own must not leak into a test.
    monkeypatch.delenv("DIALER_CONFIG", raising=False)
    return CliRunner()


def invoke(runner: CliRunner, config: Config, *args: str) -> tuple[int, str, str]:
    assert config.source is not None
    result = runner.invoke(app, [*args, "--config", str(config.source)])
    return result.exit_code, result.stdout, result.stderr


def seed(store: Store, folder: Path, names: Sequence[str]) -> int:
    """Campaign "e2e" in ``store`` with one contact per name and one run at NOW; its id."""
    phones = nl_numbers(len(names))
    write_campaign(folder, phones)
    store.create_schema()
    campaign_id = store.sync_campaign(
        name="e2e",
        source=str(folder / "e2e.toml"),
        definition_hash="h1",
        api_key_name="default",
        contacts=[
            ContactRecord(phone=p, name=n, timezone=None, variables={})
            for p, n in zip(phones, names, strict=True)
        ],
        now=NOW,
    )
    assert store.create_run(campaign_id, fire_time=NOW, now=NOW) is not None
    return campaign_id


@pytest.fixture
def prepared(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[Config, Store]]:
    """A database with campaign "e2e": 4 contacts planned, one dialled, one skipped (dnc)."""
    with Store(sqlite_url) as store:
        campaign_id = seed(store, tmp_path, [f"Person {i}" for i in range(4)])
        config = write_config(tmp_path, db_url=sqlite_url)
        first, second, *_ = store.attempts(campaign_id=campaign_id)
        assert store.begin_dialing(first.id, owner="test", body={}, now=NOW)
        store.close_unplaced(second.id, state=AttemptState.SKIPPED, reason="dnc", now=NOW)
        yield config, store


# ------------------------------------------------------------------ pause, resume, cancel


def test_pause_resume_and_cancel_change_the_campaign(
    runner: CliRunner, prepared: tuple[Config, Store]
) -> None:
    config, store = prepared
    code, out, _ = invoke(runner, config, "pause", "e2e")
    assert code == 0 and "paused (was active)" in out
    assert store.campaign("e2e").state == "paused"  # type: ignore[union-attr]
    assert store.due_attempts(now=NOW + timedelta(days=1), limit=10) == []

    code, out, _ = invoke(runner, config, "resume", "e2e")
    assert code == 0 and store.campaign("e2e").state == "active"  # type: ignore[union-attr]
    assert len(store.due_attempts(now=NOW + timedelta(days=1), limit=10)) == 2

    code, out, _ = invoke(runner, config, "cancel", "e2e")
    assert code == 0 and "2 planned attempts cancelled" in out
    states = sorted(a.state.value for a in store.attempts())
    # the call in progress stays followed; only what was never dialled is cancelled
    assert states == ["cancelled", "cancelled", "dialing", "skipped"]

    code, _, err = invoke(runner, config, "resume", "e2e")
    assert code == 2 and "cancelled" in err


@pytest.mark.parametrize("command", ["pause", "resume", "cancel", "status", "report", "export"])
def test_an_unknown_campaign_exits_2(
    runner: CliRunner, prepared: tuple[Config, Store], command: str
) -> None:
    code, _, err = invoke(runner, prepared[0], command, "no-such-campaign")
    assert code == 2 and "no campaign 'no-such-campaign'" in err


# ------------------------------------------------------------------ status, report, export


def test_status_shows_state_counts_in_flight_and_next_due(
    runner: CliRunner, prepared: tuple[Config, Store]
) -> None:
    config, _ = prepared
    invoke(runner, config, "pause", "e2e")
    code, out, _ = invoke(runner, config, "status", "e2e")
    assert code == 0
    assert "e2e (paused)" in out
    assert "planned" in out and "skipped" in out and "dialing" in out
    assert "in flight 1" in out and "settled 1/4" in out
    assert "next due 2027-03-01 09:00:00 UTC (paused)" in out
    code, out, _ = invoke(runner, config, "status", "--watch", "--interval", "0.1", "--rounds", "2")
    assert code == 0 and "e2e (paused)" in out


def test_report_adds_local_time_and_skip_reasons(
    runner: CliRunner, prepared: tuple[Config, Store]
) -> None:
    config, _ = prepared
    code, out, _ = invoke(runner, config, "report", "e2e", "--format", "csv")
    assert code == 0
    rows = {r["phone"]: r for r in csv.DictReader(io.StringIO(out))}
    dialled, skipped = rows["+31610000000"], rows["+31610000001"]
    assert dialled["zone"] == "Europe/Amsterdam"
    assert dialled["local_dialing_at"] == "2027-03-01T10:00:00+01:00"
    assert dialled["skip_reason"] == ""
    assert (skipped["state"], skipped["skip_reason"]) == ("skipped", "dnc")

    assert {(r["run_id"], r["fire_time"]) for r in rows.values()} == {("1", NOW.isoformat())}

    code, out, _ = invoke(runner, config, "export", "e2e")
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(records) == 4
    assert {r["skip_reason"] for r in records} == {None, "dnc"}


@pytest.mark.parametrize("name", ['=HYPERLINK("http://evil.example","x")', "-1+1", "@SUM(1)", "+1"])
def test_a_csv_report_does_not_hand_a_spreadsheet_a_formula(
    runner: CliRunner, tmp_path: Path, sqlite_url: str, name: str
) -> None:
    with Store(sqlite_url) as store:
        seed(store, tmp_path, [name])
    config = write_config(tmp_path, db_url=sqlite_url)
    code, out, _ = invoke(runner, config, "report", "e2e", "--format", "csv")
    assert code == 0
    (row,) = csv.DictReader(io.StringIO(out))
    assert row["name"] == f"'{name}"  # text to a spreadsheet, not a formula
    assert row["phone"] == nl_numbers(1)[0]
    code, out, _ = invoke(runner, config, "report", "e2e", "--format", "json")
    assert json.loads(out)["name"] == name  # JSON is data, kept as it is


# ------------------------------------------------------------------ db upgrade / check


def test_db_check_and_upgrade(runner: CliRunner, tmp_path: Path) -> None:
    write_campaign(tmp_path, nl_numbers(1))
    config = write_config(tmp_path, db_url=f"sqlite:///{tmp_path}/fresh.db")
    code, _, err = invoke(runner, config, "db", "check")
    assert code == 1 and f"no database at {tmp_path / 'fresh.db'}" in err
    assert not (tmp_path / "fresh.db").exists()  # a read-only command creates no file
    for command in (("status",), ("report", "e2e"), ("audit", "e2e"), ("pause", "e2e")):
        code, _, err = invoke(runner, config, *command)
        assert code == 1 and "no database at" in err, command
    assert not (tmp_path / "fresh.db").exists()
    (tmp_path / "fresh.db").touch()
    code, _, err = invoke(runner, config, "db", "check")
    assert code == 1 and "no dialer schema yet" in err
    code, out, _ = invoke(runner, config, "db", "upgrade")
    assert code == 0 and "up to date" in out
    code, out, _ = invoke(runner, config, "db", "check")
    assert code == 0 and "up to date" in out
    with Store(config.database_url) as store, store.session() as session:
        session.exec(  # type: ignore[call-overload]
            __import__("sqlalchemy").text("UPDATE alembic_version SET version_num = 'abc'")
        )
    code, _, err = invoke(runner, config, "db", "check")
    assert code == 1 and "abc" in err


# ------------------------------------------------------------------ plan


def test_plan_lists_skips_and_forecasts_without_writing(runner: CliRunner, tmp_path: Path) -> None:
    phones = nl_numbers(3)
    path = write_campaign(
        tmp_path,
        phones,
        window='[window]\ndays = ["mon-fri"]\nhours = ["09:00-17:00"]\n',
        extra='suppression_files = ["dnc.txt"]\nmax_concurrent_calls = 1\n',
    )
    (tmp_path / "dnc.txt").write_text(f"{phones[1]}\n", encoding="utf-8")
    csv_path = tmp_path / "e2e.csv"
    with csv_path.open("a", encoding="utf-8") as f:
        f.write("+61491570156,Olivia,11:00\n")  # an Australian mobile: which of its zones?
    config = write_config(tmp_path, db_url=f"sqlite:///{tmp_path}/never.db")
    args = ["plan", str(path), "--at", "2027-03-01T07:00:00Z", "--config", str(config.source)]
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    rows = {r["phone"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert rows[phones[1]]["skip"] == "dnc"
    assert rows["+61491570156"]["skip"] == "unknown_timezone"
    first, third = rows[phones[0]], rows[phones[2]]
    assert first["first_call_local"] == "2027-03-01T09:00:00+01:00"
    # one line and 90-second calls (the config's expected_call_length): the next one waits
    assert third["first_call"] == "2027-03-01T08:01:30+00:00"
    assert first["override"]["first_message"] == "Hello Person 0, a reminder for 10:00."
    assert not (tmp_path / "never.db").exists()

    table = runner.invoke(app, [*args, "--overrides"])
    assert table.exit_code == 0 and "2/4 contacts will be called" in table.stdout
    assert "Hello Person 2, a reminder for 10:02." in table.stdout

    (tmp_path / "e2e.toml").write_text('name = "x"\nasistant_id = "y"\n', encoding="utf-8")
    bad = runner.invoke(app, args)
    assert bad.exit_code == 2 and "asistant_id" in bad.stderr


@pytest.mark.parametrize(
    ("schedule", "first_local"),
    [
        # start_at a week later: nothing before that run
        ('start_at = 2027-03-08T10:00:00+01:00\ntimezone = "Europe/Amsterdam"', "2027-03-08T10:00"),
        # the next Friday 14:00 cron match
        ('cron = "0 14 * * fri"\ntimezone = "Europe/Amsterdam"', "2027-03-05T14:00"),
    ],
)
def test_plan_starts_with_the_campaigns_first_run(
    runner: CliRunner, tmp_path: Path, schedule: str, first_local: str
) -> None:
    path = write_campaign(tmp_path, nl_numbers(1), extra=schedule)
    config = write_config(tmp_path, db_url=f"sqlite:///{tmp_path}/never.db")
    args = ["plan", str(path), "--at", "2027-03-01T08:00:00Z", "--config", str(config.source)]
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    (row,) = map(json.loads, result.stdout.splitlines())
    assert row["first_call_local"].startswith(first_local), row
    table = runner.invoke(app, args)
    assert "first run at" in table.stdout


# ------------------------------------------------------------------ pause on a running engine


async def test_pause_takes_effect_on_a_running_engine(
    runner: CliRunner, tmp_path: Path, sqlite_url: str
) -> None:
    phones = nl_numbers(8)
    campaign = load(write_campaign(tmp_path, phones))
    config = write_config(tmp_path, db_url=sqlite_url, max_concurrent=2)
    simulator = Simulator(
        SimulatorConfig(api_key=KEY, time_scale=SCALE, seed=5, requests_per_minute=6000)
    )
    dialled_at_pause: set[int] | None = None
    quiet_ticks = 0

    def dialled(daemon: Daemon) -> set[int]:
        return {a.id for a in daemon.store.attempts() if a.dialing_at is not None}

    def stop_when(daemon: Daemon) -> bool:
        nonlocal dialled_at_pause, quiet_ticks
        if dialled_at_pause is None:
            if daemon.engine.stats["created"] >= 1:
                code, _, _ = invoke(runner, config, "pause", "e2e")
                assert code == 0
                # Ticks run on the loop between dispatch passes, and a pass never yields
                # between reading due attempts and claiming them (no pacer here): every pass
                # after this point sees the campaign paused.
                dialled_at_pause = dialled(daemon)
            return False
        if daemon.store.live_counts():
            return False
        # Every call of the campaign has ended: free capacity, due contacts, a paused
        # campaign. Let the dispatcher loop a while longer before concluding.
        quiet_ticks += 1
        return quiet_ticks >= 20

    daemon = await run_daemon(
        config, [campaign], simulator, fast_settings(config, SCALE), stop_when=stop_when
    )
    assert dialled_at_pause is not None and 1 <= len(dialled_at_pause) <= 2
    assert dialled(daemon) == dialled_at_pause
    assert len(simulator.created) == len(dialled_at_pause)
    with Store(sqlite_url) as store:
        states = latest_states(store, "e2e")
    assert sum(s is AttemptState.PLANNED for s in states.values()) == 8 - len(dialled_at_pause)

    code, _, _ = invoke(runner, config, "resume", "e2e")
    assert code == 0
    await run_daemon(config, [campaign], simulator, fast_settings(config, SCALE))
    with Store(sqlite_url) as store:
        assert all_final(store, "e2e")
    assert sorted(r.destination for r in simulator.created) == sorted(phones)


# ------------------------------------------------------------------ the entry point


def _env(config: Config) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DIALER_CONFIG"}
    env.update(VOICEDOCK_API_KEY=KEY, DIALER_CONFIG=str(config.source))
    return env


FAST = 'poll_interval = "0.2s"\nexpected_call_length = "1s"\nlist_interval = "1s"\n'


async def test_dialer_run_until_idle_then_status_and_report(
    tmp_path: Path, sqlite_url: str
) -> None:
    phones = nl_numbers(5)
    write_campaign(tmp_path, phones)
    simulator = Simulator(
        SimulatorConfig(api_key=KEY, time_scale=SCALE, seed=7, requests_per_minute=6000)
    )
    async with serve(simulator) as base_url:
        config = write_config(tmp_path, db_url=sqlite_url, base_url=base_url, extra=FAST)
        proc = await asyncio.create_subprocess_exec(
            str(DIALER),
            "run",
            "--until-idle",
            env=_env(config),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, stderr.decode()[-2000:]
    assert sorted(r.destination for r in simulator.created) == sorted(phones)

    async def dialer(*args: str) -> str:
        sub = await asyncio.create_subprocess_exec(
            str(DIALER),
            *args,
            env={**_env(config), "COLUMNS": "160"},
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(sub.communicate(), timeout=60)
        assert sub.returncode == 0, err.decode()
        return out.decode()

    status = await dialer("status", "e2e")
    assert "e2e (active)" in status and "settled 5/5" in status
    assert "in flight 0" in status and "nothing planned" in status
    report = list(csv.DictReader(io.StringIO(await dialer("report", "e2e"))))
    assert sorted(r["phone"] for r in report) == sorted(phones)
    assert all(r["state"] == "ended" and r["outcome"] for r in report)
    assert all(r["local_dialing_at"].endswith(("+01:00", "+02:00")) for r in report)


async def test_sigterm_stops_a_running_daemon_with_exit_0(tmp_path: Path, sqlite_url: str) -> None:
    # A window that never opens keeps the daemon waiting: it is running, not finishing.
    write_campaign(
        tmp_path,
        nl_numbers(3),
        window='[window]\ndays = ["mon-sun"]\nhours = ["00:00-24:00"]\nskip_dates = []\n'
        'min_time_before_close = "0s"\n',
        extra='start_at = "2099-01-01T00:00:00Z"\n',
    )
    simulator = Simulator(SimulatorConfig(api_key=KEY, time_scale=SCALE, seed=1))
    async with serve(simulator) as base_url:
        config = write_config(tmp_path, db_url=sqlite_url, base_url=base_url, extra=FAST)
        # The log goes to a file: a pipe nobody drains while we wait could block the daemon.
        with (tmp_path / "dialer.log").open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                str(DIALER),
                "run",
                env=_env(config),
                cwd=tmp_path,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        try:
            # Started = it imported the campaign (the daemon does that before its loops run).
            async with asyncio.timeout(60):
                while not _campaign_imported(sqlite_url):
                    assert proc.returncode is None
                    await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), timeout=10)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    log_text = (tmp_path / "dialer.log").read_text(encoding="utf-8", errors="replace")
    assert proc.returncode == 0, log_text[-2000:]
    assert "dialer.daemon.stopping" in log_text and simulator.created == []


def _campaign_imported(url: str) -> bool:
    path = Path(url.removeprefix("sqlite:///"))
    if not path.exists():
        return False
    with Store(url) as store:
        try:
            return store.campaign("e2e") is not None
        except Exception:  # the schema may be half-created while the daemon migrates
            return False


def _imported(url: str) -> int:
    """How many campaigns a database holds (0 when it has no schema yet)."""
    with Store(url) as store:
        try:
            return len(store.campaigns())
        except StoreError:  # no schema: nothing was imported
            return 0


@pytest.fixture
def own_logging() -> Iterator[None]:
    """`dialer run` in-process points structlog at CliRunner's stderr, closed afterwards."""
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("own_logging")
@pytest.mark.parametrize("problem", ["no_webhook_secret", "metrics_port_taken", "no_campaign"])
def test_run_refuses_a_config_it_cannot_serve_before_importing_anything(
    runner: CliRunner,
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    problem: str,
) -> None:
    write_campaign(tmp_path, nl_numbers(2))
    monkeypatch.setenv("VOICEDOCK_API_KEY", KEY)
    monkeypatch.delenv("VOICEDOCK_WEBHOOK_SECRET", raising=False)
    with contextlib.ExitStack() as stack:
        extra, campaigns, field = "", "e2e.toml", ""
        if problem == "no_webhook_secret":
            extra, field = "\n[webhooks]\n", "webhooks.secret_env"
        elif problem == "metrics_port_taken":
            taken = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
            port = taken.getsockname()[1]
            extra, field = f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n', "metrics.listen"
        else:
            campaigns, field = "campaigns/*.toml", "dialer.campaigns"
        config = write_config(tmp_path, db_url=sqlite_url, campaigns=campaigns, extra=extra)
        code, _, err = invoke(runner, config, "run", "--until-idle")
    assert code == 2, err
    assert field in err and "Traceback" not in err
    assert _imported(sqlite_url) == 0


def test_validate_and_plan_of_a_file_check_its_key_against_the_config(
    runner: CliRunner, tmp_path: Path, sqlite_url: str
) -> None:
    path = write_campaign(tmp_path, nl_numbers(1), extra='key = "clinic_nrth"')
    config = write_config(tmp_path, db_url=sqlite_url)
    for command in ("validate", "plan"):
        code, _, err = invoke(runner, config, command, str(path))
        assert code == 2, (command, err)
        assert "no API key 'clinic_nrth'" in err


def test_an_output_file_that_cannot_be_written_is_a_clear_error(
    runner: CliRunner, prepared: tuple[Config, Store], tmp_path: Path
) -> None:
    config, _ = prepared
    for target in (tmp_path / "no" / "such" / "out.csv", tmp_path):
        code, _, err = invoke(runner, config, "report", "e2e", "-o", str(target))
        assert code == 2, err
        assert "cannot write" in err and "Traceback" not in err


@pytest.mark.usefixtures("own_logging")
@pytest.mark.parametrize("problem", ["port_taken", "token_unset", "beyond_loopback_no_token"])
def test_run_refuses_a_status_page_it_cannot_serve_safely(
    runner: CliRunner,
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    problem: str,
) -> None:
    write_campaign(tmp_path, nl_numbers(2))
    monkeypatch.setenv("VOICEDOCK_API_KEY", KEY)
    monkeypatch.delenv("DIALER_WEB_TOKEN", raising=False)
    with contextlib.ExitStack() as stack:
        if problem == "port_taken":
            taken = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
            port = taken.getsockname()[1]
            extra, field = f'\n[web]\nlisten = "127.0.0.1:{port}"\n', "web.listen"
        elif problem == "token_unset":
            extra, field = '\n[web]\ntoken_env = "DIALER_WEB_TOKEN"\n', "web.token_env"
        else:
            extra, field = '\n[web]\nlisten = "0.0.0.0:8788"\n', "needs token_env"
        with contextlib.suppress(ConfigError):  # the last one is refused as it is read
            write_config(tmp_path, db_url=sqlite_url, extra=extra)
        result = runner.invoke(
            app, ["run", "--until-idle", "--config", str(tmp_path / "config.toml")]
        )
    assert result.exit_code == 2, result.stderr
    assert field in result.stderr and "Traceback" not in result.stderr
    assert _imported(sqlite_url) == 0
