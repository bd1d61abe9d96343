"""The `dialer` command line.

Exit codes: 0 ok, 2 bad input or configuration (nothing written), 1 runtime failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import make_url

from dialer import DISTRIBUTION, __version__
from dialer.campaign import FIRST_YEAR, LAST_YEAR, load_campaign, validate_paths
from dialer.campaign.catalog import (
    campaign_paths,
    check_files,
    check_keys,
    keys_in_use,
    load_all,
)
from dialer.config import Config, load_config
from dialer.errors import (
    CampaignError,
    DialerError,
    InputError,
    SchemaMismatch,
    StoreError,
)
from dialer.logs import configure_logging
from dialer.reports import audit_records, report_rows, write_json_lines, write_report
from dialer.store import CampaignState, StateChange, StateChangeRefused, Store

app = typer.Typer(
    # --install-completion / --show-completion: typer's shell completion (bash, zsh, fish)
    add_completion=True,
    no_args_is_help=True,
    help="Outbound campaign dialer for VoiceDock voice-AI assistants.",
    epilog=(
        "Environment: DIALER_CONFIG names the config file; DIALER_DATABASE_URL overrides its "
        "\\[database] url and DIALER_LOG_LEVEL (debug, info, warning, error) its \\[logging] "
        "level; "
        "the API keys come from the variables the config names (VOICEDOCK_API_KEY by default)."
    ),
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="DIALER_CONFIG",
        show_envvar=True,
        help="Config file (default: ./config.toml).",
    ),
]


def _print_version(value: bool) -> None:
    if value:
        out.print(f"{DISTRIBUTION} {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    """Outbound campaign dialer for VoiceDock voice-AI assistants."""


def _config_path(path: Path | None) -> Path:
    return path if path is not None else Path("config.toml")


def _fail_input(exc: InputError) -> typer.Exit:
    for problem in exc.problems:
        err.print(f"[red]error[/red] {escape(str(problem))}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


@app.command()
def run(
    config: ConfigOption = None,
    until_idle: Annotated[
        bool,
        typer.Option(
            "--until-idle", help="Exit once nothing is in flight and nothing is due soon."
        ),
    ] = False,
) -> None:
    """Run the daemon: fire schedules, place calls, follow them, store outcomes."""
    from dialer.daemon import open_daemon, run_until_stopped, stop_on_signals
    from dialer.progress import live_progress

    try:
        cfg = load_config(_config_path(config))
        campaigns = load_all(cfg)
        for key_name in keys_in_use(campaigns):
            cfg.api_key(key_name)  # fail before anything starts when a key is missing
        cfg.webhook_secret()  # likewise: before any campaign is imported or run fired
        cfg.web_token()
    except InputError as exc:
        raise _fail_input(exc) from None
    attached = sys.stdout.isatty()
    # On a terminal the live progress display is the daemon's face: only warnings interrupt it.
    default_level = logging.WARNING if attached else logging.INFO
    level = cfg.logging.level
    configure_logging(
        json_lines=not attached,
        level=default_level if level is None else logging.getLevelNamesMapping()[level.upper()],
    )

    async def main() -> None:
        with stop_on_signals() as stop:
            async with open_daemon(cfg, campaigns) as daemon:
                if attached:
                    with live_progress(daemon.store, out) as refresh:
                        await run_until_stopped(
                            daemon, until_idle=until_idle, stop=stop, on_tick=refresh
                        )
                else:
                    await run_until_stopped(daemon, until_idle=until_idle, stop=stop)

    try:
        asyncio.run(main())
    except InputError as exc:
        raise _fail_input(exc) from None
    except DialerError as exc:
        # one line whatever the terminal's width: it is what a script or a person reads
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None


StrictOption = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Warnings are errors (exit 2): e.g. an assistant key VoiceDock does not document.",
    ),
]


def _print_warnings(warnings: Sequence[object], *, strict: bool) -> None:
    word = "[red]error[/red]" if strict else "[yellow]warning[/yellow]"
    for warning in warnings:
        err.print(f"{word} {escape(str(warning))}", highlight=False, soft_wrap=True)


@app.command()
def validate(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Campaign files (default: the config's).")
    ] = None,
    config: ConfigOption = None,
    strict: StrictOption = False,
) -> None:
    """Check campaign files (and the config) without touching the database: `ok` for each
    good file, every problem of the others (exit 2 if any)."""
    try:
        cfg = None
        if files:
            if config is not None or Path("config.toml").exists():
                cfg = load_config(_config_path(config))
            paths = list(files)
        else:
            cfg = load_config(_config_path(config))
            paths = campaign_paths(cfg)
    except InputError as exc:
        raise _fail_input(exc) from None
    region = cfg.dialer.default_region if cfg is not None else None
    failed = False
    for check in check_files(paths, config=cfg, default_region=region):
        campaign = check.campaign
        if campaign is None:
            for problem in check.problems:
                err.print(
                    f"[red]error[/red] {escape(str(problem))}", highlight=False, soft_wrap=True
                )
            failed = True
            continue
        _print_warnings(campaign.warnings, strict=strict)
        if strict and campaign.warnings:
            failed = True
            continue
        out.print(
            f"[green]ok[/green] {campaign.source}: campaign {campaign.name!r}, "
            f"{len(campaign.contacts)} contacts, {campaign.mode}",
            highlight=False,
            soft_wrap=True,  # a path broken across lines cannot be copied
        )
    if failed:
        raise typer.Exit(code=2)


def _missing_sqlite_file(url: str) -> Path | None:
    """The path of a SQLite database file that does not exist, else None."""
    parsed = make_url(url)
    database = parsed.database
    if not parsed.drivername.startswith("sqlite") or not database:
        return None
    if database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    return None if path.exists() else path


@contextmanager
def _open_store(config: Path | None) -> Iterator[Store]:
    """The store of the config, at exactly this code's schema revision (else exit 1)."""
    try:
        cfg = load_config(_config_path(config))
    except InputError as exc:
        raise _fail_input(exc) from None
    missing = _missing_sqlite_file(cfg.database_url)
    if missing is not None:
        # Opening it would create an empty file, which then looks like a database to the next
        # command; a typo in the path must say so instead.
        message = (
            f"no database at {missing}: run `dialer db upgrade` to create it, "
            "or check [database] url"
        )
        err.print(f"[red]error[/red] {escape(message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)
    try:
        with Store(cfg.database_url) as store:
            store.check_schema()
            yield store
    except SchemaMismatch as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(code=1) from None
    except StoreError as exc:
        err.print(f"[red]error[/red] database: {escape(str(exc))}", highlight=False)
        raise typer.Exit(code=1) from None


#: campaigns reach the database only through a daemon: a new user's first `status` needs this
_HOW_TO_IMPORT = (
    "`dialer run` imports every campaign file the config's [dialer] campaigns names when it "
    "starts (`dialer run --until-idle` to import, dial what is due and exit); "
    "`dialer plan FILE` shows what it would do without writing anything"
)


def _unknown_campaign(name: str) -> typer.Exit:
    err.print(
        f"error: no campaign {name!r} in the database: {escape(_HOW_TO_IMPORT)}",
        highlight=False,
        soft_wrap=True,
    )
    return typer.Exit(code=2)


@app.command()
def status(
    campaign: Annotated[str | None, typer.Argument(help="Only this campaign.")] = None,
    config: ConfigOption = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Redraw until interrupted (Ctrl-C).")
    ] = False,
    interval: Annotated[
        float, typer.Option(help="Seconds between redraws with --watch.", min=0.1)
    ] = 2.0,
    rounds: Annotated[
        int | None, typer.Option(hidden=True, help="Stop --watch after this many redraws.")
    ] = None,
    keys: Annotated[
        bool,
        typer.Option(
            "--keys",
            help="List every reminder key: done, pending (attempt, next), closed, removed.",
        ),
    ] = False,
) -> None:
    """Per campaign: its state, attempts per state and outcome, calls in flight, next due,
    and its reminder keys by state (done, pending, closed, removed, new)."""
    from dialer.progress import key_table, status_tables

    with _open_store(config) as store:
        tables = status_tables(store, only=campaign)
        if not tables:
            if campaign:
                raise _unknown_campaign(campaign)
            err.print(
                f"no campaigns yet: {escape(_HOW_TO_IMPORT)}", highlight=False, soft_wrap=True
            )
            return
        if not watch:
            for table in tables:
                out.print(table)
            if keys:
                for record in store.campaigns():
                    if campaign is None or record.name == campaign:
                        out.print(key_table(store, record))
            return
        with Live(Group(*tables), console=out, auto_refresh=False) as live:
            done = 1
            try:
                while rounds is None or done < rounds:
                    time.sleep(interval)
                    live.update(Group(*status_tables(store, only=campaign)), refresh=True)
                    done += 1
            except KeyboardInterrupt:
                pass


def _change_state(campaign: str, state: CampaignState, config: Path | None) -> StateChange:
    with _open_store(config) as store:
        try:
            change = store.change_campaign_state(campaign, state, now=datetime.now(UTC))
        except StateChangeRefused:
            err.print(f"error: campaign {campaign!r} is cancelled; that is final", highlight=False)
            raise typer.Exit(code=2) from None
        if change is None:
            raise _unknown_campaign(campaign)
        if state is CampaignState.CANCELLED:
            out.print(
                f"campaign {campaign!r} cancelled; {change.cancelled} planned attempts cancelled"
            )
        return change


@app.command()
def pause(campaign: Annotated[str, typer.Argument()], config: ConfigOption = None) -> None:
    """Stop placing new calls for a campaign (calls in progress are followed to their end)."""
    change = _change_state(campaign, CampaignState.PAUSED, config)
    out.print(f"campaign {campaign!r} paused (was {change.previous})")


@app.command()
def resume(campaign: Annotated[str, typer.Argument()], config: ConfigOption = None) -> None:
    """Place calls for a paused or held campaign again (a hold: once its cause is fixed)."""
    change = _change_state(campaign, CampaignState.ACTIVE, config)
    out.print(f"campaign {campaign!r} active (was {change.previous})")


@app.command()
def cancel(campaign: Annotated[str, typer.Argument()], config: ConfigOption = None) -> None:
    """Stop a campaign for good: no new calls, planned attempts cancelled, calls followed."""
    _change_state(campaign, CampaignState.CANCELLED, config)


def _write_report(campaign: str, fmt: str, output: Path | None, config: Path | None) -> None:
    if fmt not in ("csv", "json"):
        err.print(f"error: --format: {fmt!r} is not supported (accepted: csv, json)")
        raise typer.Exit(code=2)
    with _open_store(config) as store:
        row = store.campaign(campaign)
        if row is None:
            raise _unknown_campaign(campaign)
        with _open_out(output) as stream:
            write_report(stream, report_rows(store, row), fmt=fmt)


OutputOption = Annotated[
    Path | None, typer.Option("--output", "-o", help="File (default: stdout).")
]


@app.command()
def report(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv or json (JSON Lines).")] = "csv",
    output: OutputOption = None,
    config: ConfigOption = None,
) -> None:
    """Every attempt of a campaign with its outcome, streamed as CSV or JSON Lines."""
    _write_report(campaign, fmt, output, config)


@app.command()
def export(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    output: OutputOption = None,
    config: ConfigOption = None,
) -> None:
    """`report --format json`: every attempt as one JSON object a line."""
    _write_report(campaign, "json", output, config)


@app.command()
def audit(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    output: OutputOption = None,
    config: ConfigOption = None,
) -> None:
    """The campaign's append-only audit log as JSON Lines: every decision and transition; for
    each dial the rules that allowed it, the request and the status VoiceDock answered."""
    with _open_store(config) as store:
        row = store.campaign(campaign)
        if row is None:
            raise _unknown_campaign(campaign)
        with _open_out(output) as stream:
            write_json_lines(stream, audit_records(store, row))


class _open_out:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: Any = None

    def __enter__(self) -> Any:
        if self.path is None:
            return sys.stdout
        try:
            self._file = self.path.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            err.print(f"error: --output: cannot write {self.path}: {exc.strerror or exc}")
            raise typer.Exit(code=2) from None
        return self._file

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()


db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Create the schema, or migrate it to this version's revision (Alembic head)."""
    try:
        cfg = load_config(_config_path(config))
    except InputError as exc:
        raise _fail_input(exc) from None
    try:
        with Store(cfg.database_url) as store:
            store.create_schema()
            store.check_schema()
    except StoreError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(code=1) from None
    out.print("schema is up to date")


@db_app.command("check")
def db_check(config: ConfigOption = None) -> None:
    """Exit 0 when the schema is exactly this version's revision, else 1 with the reason."""
    with _open_store(config):
        out.print("schema is up to date")


@app.command()
def plan(
    file: Annotated[Path, typer.Argument(help="Campaign file.")],
    config: ConfigOption = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="table, or json (JSON Lines).")
    ] = "table",
    at: Annotated[
        str | None,
        typer.Option(help="Plan as if it were this ISO 8601 instant (default: now)."),
    ] = None,
    overrides: Annotated[
        bool, typer.Option("--overrides", help="Also print every contact's rendered assistant.")
    ] = False,
    strict: StrictOption = False,
) -> None:
    """Dry run: validate a campaign, render every contact's assistant, list who is skipped
    and why, and forecast when each contact is first called. With a database that has the
    campaign, each contact is shown by its reminder key's state (new, pending, done, closed,
    removed) and only new keys are forecast. Dials nothing, writes nothing."""
    from dialer.plan import first_run, plan_campaign, stored_keys

    if fmt not in ("table", "json"):
        err.print(f"error: --format: {fmt!r} is not supported (accepted: table, json)")
        raise typer.Exit(code=2)
    try:
        now = datetime.fromisoformat(at) if at is not None else datetime.now(UTC)
    except ValueError:
        err.print(f"error: --at: {at!r} is not an ISO 8601 date-time")
        raise typer.Exit(code=2) from None
    if now.tzinfo is None:
        err.print(f"error: --at: {at!r} needs an offset (e.g. +01:00 or Z)")
        raise typer.Exit(code=2)
    if not FIRST_YEAR <= now.year <= LAST_YEAR:
        err.print(f"error: --at: {at!r} is not between the years {FIRST_YEAR} and {LAST_YEAR}")
        raise typer.Exit(code=2)
    # Every time below is shown in UTC or in a zone it names; --at 12:00+05:00 is 07:00 UTC.
    now = now.astimezone(UTC)
    try:
        with_config = config is not None or Path("config.toml").exists()
        cfg = load_config(_config_path(config)) if with_config else Config.default(Path.cwd())
        problems = validate_paths([file], default_region=cfg.dialer.default_region)
        if problems:
            raise CampaignError(problems)
        campaign = load_campaign(file, default_region=cfg.dialer.default_region)
        if with_config:
            check_keys([campaign], cfg)
    except InputError as exc:
        raise _fail_input(exc) from None
    _print_warnings(campaign.warnings, strict=strict)
    if strict and campaign.warnings:
        raise typer.Exit(code=2)
    stored = None
    if with_config and _missing_sqlite_file(cfg.database_url) is None:
        with suppress(StoreError), Store(cfg.database_url) as store:
            store.check_schema()
            stored = stored_keys(store, campaign.name)
    rows = plan_campaign(campaign, cfg, now=now, stored=stored)
    start = first_run(campaign, now=now)
    if fmt == "json":
        for row in rows:
            zone = ZoneInfo(row.zone) if row.zone else None
            sys.stdout.write(json.dumps(row.as_json(zone), ensure_ascii=False) + "\n")
        return
    title = f"Plan — {campaign.name} (as of {_utc(now)}"
    if start is None:
        title += ", no run to come"
    elif start > now:
        # a cron fires in the campaign's zone: shown there, and in UTC like every other column
        own = campaign.zone
        there = f"{start.astimezone(own):%Y-%m-%d %H:%M} {own.key}, " if own else ""
        title += f", first run at {there}{_utc(start)}"
    table = Table(title=title + ")")
    for column in ("line", "phone", "name", "zone", "first call (local)", "first call (UTC)"):
        table.add_column(column, justify="right" if column == "line" else "left")
    if stored is not None:
        table.add_column("state")
    table.add_column("skipped", style="yellow")
    for row in rows:
        local = (
            row.first_call.astimezone(ZoneInfo(row.zone))
            if row.first_call is not None and row.zone
            else None
        )
        cells = [
            str(row.line),
            row.phone,
            row.name or "-",
            row.zone or "-",
            f"{local:%a %Y-%m-%d %H:%M}" if local else "-",
            f"{row.first_call.astimezone(UTC):%Y-%m-%d %H:%M}" if row.first_call else "-",
        ]
        if stored is not None:
            cells.append(row.state + (f": {row.detail}" if row.detail else ""))
        table.add_row(*cells, row.skip or "")
    firsts = [r.first_call for r in rows if r.first_call is not None]
    table.caption = f"{len(firsts)}/{len(rows)} contacts will be called" + (
        f", the last first call at {_utc(max(firsts))}" if firsts else ""
    )
    out.print(table)
    if overrides:
        for row in rows:
            out.rule(f"line {row.line} · {row.phone} · {row.name or '-'}", align="left")
            out.print_json(data=row.override)


def _utc(when: datetime) -> str:
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


_SIMULATOR_KEY = "sim_test_key"


@app.command()
def simulate(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8765,
    time_scale: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 1.0,
    requests_per_minute: Annotated[int, typer.Option(help="Rate limit per API key.")] = 100,
    api_key: Annotated[
        str,
        typer.Option(
            envvar="VOICEDOCK_API_KEY", show_envvar=True, help="The key the simulator accepts."
        ),
    ] = _SIMULATOR_KEY,
) -> None:
    """Serve the built-in VoiceDock simulator on loopback (for trying the daemon)."""
    from dialer.simulator import SimulatorConfig, run_simulator
    from dialer.voicedock import API_PREFIX

    base_url = f"http://127.0.0.1:{port}{API_PREFIX}"
    # The key is never shown: taken from $VOICEDOCK_API_KEY it may be a real one.
    key = (
        "the daemon needs the key this shell has in $VOICEDOCK_API_KEY"
        if api_key != _SIMULATOR_KEY
        else f"before `dialer run`: export VOICEDOCK_API_KEY={_SIMULATOR_KEY}"
    )
    out.print(
        f"VoiceDock simulator on {base_url} (time x{time_scale:g}); Ctrl-C stops it.\n"
        "Put this in the config's \\[voicedock] table:\n"
        f'base_url = "{base_url}"\n'
        f"and {key}",
        highlight=False,
        soft_wrap=True,
    )
    sys.stdout.flush()  # piped, the lines would otherwise wait for the server to stop
    run_simulator(
        SimulatorConfig(
            api_key=api_key, time_scale=time_scale, requests_per_minute=requests_per_minute
        ),
        "127.0.0.1",
        port,
    )


@app.command()
def demo(
    campaign: Annotated[
        Path | None,
        typer.Option(
            "--campaign", help="Campaign file to run (default: the built-in demo campaign)."
        ),
    ] = None,
    keep: Annotated[
        Path | None, typer.Option(help="Keep the demo database in this folder.")
    ] = None,
    contacts: Annotated[
        Path | None,
        # the option's old name: it always took a campaign file, never a contacts file
        typer.Option("--contacts", hidden=True),
    ] = None,
) -> None:
    """Run a real campaign end to end against the built-in simulator on loopback."""
    from dialer.demo import run_demo

    if contacts is not None:
        err.print("warning: --contacts is now --campaign (it takes a campaign file)")
        if campaign is None:
            campaign = contacts

    configure_logging(json_lines=False, level=logging.WARNING)
    # Piped output gets a width that fits the per-contact table instead of Rich's 80 columns.
    console = out if out.is_terminal else Console(width=140)
    try:
        code = run_demo(console, campaign_path=campaign, keep=keep)
    except InputError as exc:
        raise _fail_input(exc) from None
    raise typer.Exit(code=code)


def main(argv: Sequence[str] | None = None, *, prog_name: str | None = None) -> None:
    app(args=list(argv) if argv is not None else None, prog_name=prog_name)


if __name__ == "__main__":
    main()
