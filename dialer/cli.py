"""The `dialer` command line.

Exit codes: 0 ok, 2 bad input or configuration (nothing written), 1 runtime failure.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer
from rich.console import Console
from rich.markup import escape

from dialer.campaign import Campaign, load_campaign, validate_paths
from dialer.config import Config, load_config
from dialer.errors import CampaignError, DialerError, InputError, Problem
from dialer.store import Store

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Outbound campaign dialer for VoiceDock voice-AI assistants.",
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


def configure_logging(*, json_lines: bool, level: int = logging.INFO) -> None:
    """JSON lines when not on a terminal (daemons, CI); readable lines on a terminal."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def _config_path(path: Path | None) -> Path:
    return path if path is not None else Path("config.toml")


def _fail_input(exc: InputError) -> typer.Exit:
    for problem in exc.problems:
        err.print(f"[red]error[/red] {escape(str(problem))}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


def load_all(config: Config) -> list[Campaign]:
    """Every campaign the config names; every problem of every file reported in one error."""
    paths = config.campaign_paths()
    problems: list[Problem] = []
    campaigns: list[Campaign] = []
    for path in paths:
        try:
            campaigns.append(load_campaign(path, default_region=config.dialer.default_region))
        except CampaignError as exc:
            problems.extend(exc.problems)
    if problems:
        raise CampaignError(problems)
    names = [c.name for c in campaigns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CampaignError(
            [
                Problem(
                    file=str(c.source),
                    field="name",
                    message=f"campaign name {c.name!r} is used by more than one file",
                )
                for c in campaigns
                if c.name in dupes
            ]
        )
    return campaigns


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
    from dialer.daemon import open_daemon, run_until_stopped
    from dialer.progress import live_progress

    try:
        cfg = load_config(_config_path(config))
        campaigns = load_all(cfg)
        cfg.api_key()  # fail before anything starts when the key is missing
    except InputError as exc:
        raise _fail_input(exc) from None
    attached = sys.stdout.isatty()
    configure_logging(json_lines=not attached, level=logging.WARNING if attached else logging.INFO)

    async def main() -> None:
        async with open_daemon(cfg, campaigns) as daemon:
            if attached:
                with live_progress(daemon.store, out) as refresh:
                    await run_until_stopped(daemon, until_idle=until_idle, on_tick=refresh)
            else:
                await run_until_stopped(daemon, until_idle=until_idle)

    try:
        asyncio.run(main())
    except InputError as exc:
        raise _fail_input(exc) from None
    except DialerError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(code=1) from None


@app.command()
def validate(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Campaign files (default: the config's).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Check campaign files (and the config) without touching the database."""
    try:
        if files:
            region = None
            if config is not None or Path("config.toml").exists():
                region = load_config(_config_path(config)).dialer.default_region
            problems = validate_paths(list(files), default_region=region)
            if problems:
                raise CampaignError(problems)
            campaigns = [load_campaign(p, default_region=region) for p in files]
        else:
            campaigns = load_all(load_config(_config_path(config)))
    except InputError as exc:
        raise _fail_input(exc) from None
    for campaign in campaigns:
        for warning in getattr(campaign, "warnings", ()):
            err.print(f"[yellow]warning[/yellow] {escape(str(warning))}", highlight=False)
        out.print(
            f"[green]ok[/green] {campaign.source}: campaign {campaign.name!r}, "
            f"{len(campaign.contacts)} contacts",
            highlight=False,
        )


@app.command()
def status(
    campaign: Annotated[str | None, typer.Argument(help="Only this campaign.")] = None,
    config: ConfigOption = None,
) -> None:
    """Counts per state and outcome, per campaign."""
    from dialer.progress import status_tables

    try:
        cfg = load_config(_config_path(config))
    except InputError as exc:
        raise _fail_input(exc) from None
    with Store(cfg.database_url) as store:
        store.create_schema()
        tables = status_tables(store, only=campaign)
        if not tables:
            err.print(
                f"no campaign {campaign!r} in the database" if campaign else "no campaigns yet"
            )
            raise typer.Exit(code=2 if campaign else 0)
        for table in tables:
            out.print(table)


REPORT_FIELDS = [
    "campaign",
    "phone",
    "name",
    "attempt_no",
    "state",
    "outcome",
    "reason",
    "call_id",
    "call_status",
    "end_reason",
    "error",
    "dialing_at",
    "started_at",
    "ended_at",
    "duration_seconds",
    "summary",
    "sentiment",
    "due_at",
]


def report_rows(store: Store, campaign_name: str) -> Iterator[dict[str, Any]]:
    row = store.campaign(campaign_name)
    if row is None or row.id is None:
        raise InputError(
            [Problem(file="database", field="campaign", message=f"no campaign {campaign_name!r}")]
        )
    for attempt, contact in store.iter_attempt_rows(row.id):
        analysis = attempt.analysis_result or {}
        yield {
            "campaign": campaign_name,
            "phone": contact.phone,
            "name": contact.name,
            "attempt_no": attempt.attempt_no,
            "state": attempt.state,
            "outcome": attempt.outcome,
            "reason": attempt.reason,
            "call_id": attempt.call_id,
            "call_status": attempt.call_status,
            "end_reason": attempt.end_reason,
            "error": attempt.error,
            "dialing_at": _iso(attempt.dialing_at),
            "started_at": _iso(attempt.started_at),
            "ended_at": _iso(attempt.ended_at),
            "duration_seconds": attempt.duration_seconds,
            "summary": attempt.summary,
            "sentiment": analysis.get("sentiment") if isinstance(analysis, dict) else None,
            "due_at": _iso(attempt.due_at),
        }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@app.command()
def report(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv or json (JSON Lines).")] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default: stdout).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Every attempt of a campaign with its outcome, streamed as CSV or JSON Lines."""
    if fmt not in ("csv", "json"):
        err.print(f"error: --format: {fmt!r} is not supported (accepted: csv, json)")
        raise typer.Exit(code=2)
    try:
        cfg = load_config(_config_path(config))
        with Store(cfg.database_url) as store, _open_out(output) as stream:
            rows = report_rows(store, campaign)
            if fmt == "csv":
                writer = csv.DictWriter(stream, fieldnames=REPORT_FIELDS)
                writer.writeheader()
                for record in rows:
                    writer.writerow(record)
            else:
                for record in rows:
                    stream.write(json.dumps(record, ensure_ascii=False) + "\n")
    except InputError as exc:
        raise _fail_input(exc) from None


class _open_out:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: Any = None

    def __enter__(self) -> Any:
        if self.path is None:
            return sys.stdout
        self._file = self.path.open("w", encoding="utf-8", newline="")
        return self._file

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()


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
    ] = "sim_test_key",
) -> None:
    """Serve the built-in VoiceDock simulator on loopback (for trying the daemon)."""
    from dialer.simulator import SimulatorConfig, run_simulator

    run_simulator(
        SimulatorConfig(
            api_key=api_key, time_scale=time_scale, requests_per_minute=requests_per_minute
        ),
        "127.0.0.1",
        port,
    )


@app.command()
def demo(
    contacts: Annotated[
        Path | None, typer.Option(help="Campaign file to run (default: campaigns/demo.toml).")
    ] = None,
    keep: Annotated[
        Path | None, typer.Option(help="Keep the demo database in this folder.")
    ] = None,
) -> None:
    """Run a real campaign end to end against the built-in simulator on loopback."""
    from dialer.demo import run_demo

    configure_logging(json_lines=False, level=logging.WARNING)
    # Piped output gets a width that fits the per-contact table instead of Rich's 80 columns.
    console = out if out.is_terminal else Console(width=140)
    try:
        code = run_demo(console, campaign_path=contacts, keep=keep)
    except InputError as exc:
        raise _fail_input(exc) from None
    raise typer.Exit(code=code)


def main(argv: Sequence[str] | None = None) -> None:
    app(args=list(argv) if argv is not None else None)


if __name__ == "__main__":
    main()
