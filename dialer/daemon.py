"""Wiring: config -> store, request budget, client, engine, schedules and signals.

The one place that owns the lifecycle of a running daemon, used by `dialer run`, `dialer demo`
and the end-to-end tests alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio.from_thread
import httpx
import structlog
from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from starlette.types import ASGIApp

from dialer.campaign import Campaign
from dialer.config import DEFAULT_KEY, Config, KeyLimits
from dialer.engine import Clock, Engine, EngineSettings, utc_now
from dialer.errors import ConfigError, Problem, ProviderError, Unauthorized
from dialer.metrics import DialerMetrics, operations_app
from dialer.policy.polling import PollPlan
from dialer.ratelimit import RequestBudget, SharedBudget, budget_rate, spaced_burst
from dialer.serving import serve_app
from dialer.store import Store
from dialer.store.database import DAEMON_LOCK_WAIT_S
from dialer.usage import RequestCounts
from dialer.voicedock import VoiceDockClient
from dialer.web import DaemonFacts, KeyHold, StatusSource, status_app
from dialer.webhooks import webhook_app

log = structlog.get_logger("dialer.daemon")


def worker_id() -> str:
    """A name for this process that other daemons and the audit log can tell apart.

    Host and pid say where to look; the random part keeps two daemons apart that share both
    (containers are all pid 1, often with one hostname), and a restart from its predecessor."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def engine_settings(
    config: Config, *, poll: PollPlan | None = None, **overrides: object
) -> EngineSettings:
    """Map the config file onto the engine's knobs."""
    d = config.dialer
    values: dict[str, object] = dict(
        worker_id=worker_id(),
        max_concurrent_calls=d.max_concurrent_calls,
        poll=poll
        or PollPlan(
            first_look=d.poll_interval,
            ringing=d.poll_interval,
            minimum=min(d.poll_interval, PollPlan().minimum),
            expected_talk=d.expected_call_length,
            list_interval=d.list_interval,
            list_interval_min=d.list_interval_min,
            lists_per_end=d.lists_per_end,
            list_threshold=d.list_threshold,
        ),
        stuck_after=d.stuck_after,
        create_timeout=config.voicedock.create_timeout,
        reconcile_margin=d.reconcile_margin,
        reconcile_settle=d.reconcile_settle,
        outcome_rules=config.outcome_rules(),
        suppressed=config.suppressed_numbers(),
        suppression_files=config.suppression_files_read(),
        default_region=config.dialer.default_region,
        frequency_cap=config.frequency_cap(),
        hold_after_rejections=d.hold_after_rejections,
    )
    if config.webhooks is not None:
        values["report_grace"] = config.webhooks.report_grace
        if poll is None:
            plan = values["poll"]
            assert isinstance(plan, PollPlan)
            values["poll"] = with_webhooks(plan, config.webhooks.fallback_interval)
    values.update(overrides)
    return EngineSettings(**values)  # type: ignore[arg-type]


def with_webhooks(plan: PollPlan, fallback_interval: timedelta) -> PollPlan:
    """Webhooks report ends; polls only catch the ones that never arrive, so they thin out:
    a list every ``fallback_interval`` (a lost webhook holds its line that long at most),
    never sooner: the spare budget buys nothing when the ends come by themselves."""
    interval = max(plan.list_interval, fallback_interval)
    return dataclasses.replace(
        plan,
        expected_talk=plan.expected_talk * 2,
        list_interval=interval,
        list_interval_min=interval,
    )


@dataclass
class Daemon:
    config: Config
    store: Store
    #: API key name -> its client (one budget each)
    clients: Mapping[str, VoiceDockClient]
    engine: Engine
    scheduler: AsyncIOScheduler
    #: the Prometheus series, when ``[metrics]`` is configured
    metrics: DialerMetrics | None = None


@asynccontextmanager
async def open_daemon(
    config: Config,
    campaigns: Sequence[Campaign],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = utc_now,
    settings: EngineSettings | None = None,
    api_key: str | None = None,
    webhook_secret: str | None = None,
    web_token: str | None = None,
    budget_time_scale: float = 1.0,
) -> AsyncIterator[Daemon]:
    """Open the store, one client per API key in use and the engine; import campaigns; start
    the schedules. ``api_key`` stands in for the default key's environment variable (demo,
    tests); the other keys always come from theirs. ``budget_time_scale``: the keys' limits
    count minutes of a simulator that many times faster (the bench; SQLite's in-process
    budget only)."""
    store = Store(config.database_url, lock_wait_s=DAEMON_LOCK_WAIT_S)
    try:
        store.open_schema()
        async with contextlib.AsyncExitStack() as stack:
            clients: dict[str, VoiceDockClient] = {}
            # Only the keys our campaigns use need to be set (plus a default key handed in).
            in_use = {c.api_key_name for c in campaigns}
            if api_key is not None:
                in_use.add(DEFAULT_KEY)
            for key_name in sorted(in_use):
                limits = config.voicedock.key(key_name)
                secret = (
                    api_key
                    if key_name == DEFAULT_KEY and api_key is not None
                    else config.api_key(key_name)
                )
                budget = _budget(limits, store, budget_time_scale)
                log.info(
                    "dialer.daemon.key",
                    key=key_name,
                    budget=type(budget).__name__,
                    requests_per_minute=budget.rate_per_minute,
                )
                clients[key_name] = await stack.enter_async_context(
                    VoiceDockClient(
                        base_url=config.voicedock.base_url,
                        api_key=secret,
                        budget=budget,
                        transport=transport,
                        connect_timeout_s=config.voicedock.connect_timeout.total_seconds(),
                        read_timeout_s=config.voicedock.read_timeout.total_seconds(),
                        create_timeout_s=config.voicedock.create_timeout.total_seconds(),
                    )
                )
            engine = Engine(
                store=store,
                clients=clients,
                campaigns=campaigns,
                settings=settings or engine_settings(config),
                clock=clock,
            )
            # counted from here: the key checks' requests are the daemon's too
            counts = RequestCounts(store, clients, clock=clock, worker_id=engine.settings.worker_id)
            for key_name, client in clients.items():
                await _check_key(config, key_name, client)
            log.info(
                "dialer.daemon.started",
                worker=engine.settings.worker_id,  # as attempts.owner and the workers table
                database=store.dialect,
                keys=sorted(clients),
            )
            # The listeners first: a port already taken is a config error before any
            # campaign is imported or any run fired, not a traceback after.
            async with (
                _webhook_receiver(config, engine, webhook_secret),
                _metrics_endpoint(config, engine) as metrics,
                _status_page(config, engine, counts, web_token),
                counts.kept(),
            ):
                engine.sync_campaigns()
                # a cron fire missed while no daemon ran: caught up once, or said (status)
                engine.catch_up()
                scheduler = _schedule(engine, store, campaigns)
                engine.upcoming_fire = lambda: _earliest_fire(scheduler)
                engine.on_campaign_replaced = lambda old, new: _reschedule(
                    scheduler, store, old, new
                )
                scheduler.start()
                try:
                    yield Daemon(
                        config=config,
                        store=store,
                        clients=clients,
                        engine=engine,
                        scheduler=scheduler,
                        metrics=metrics,
                    )
                finally:
                    scheduler.shutdown(wait=False)
    finally:
        store.close()


async def _check_key(config: Config, key_name: str, client: VoiceDockClient) -> None:
    """One cheap authenticated request (``GET /calls?limit=1``, through the key's budget):
    a key VoiceDock refuses is a ConfigError naming its environment variable (never the key)
    before anything is imported, not a hold at the first call. Any other failure is the
    loops' to ride out (VoiceDock unreachable: probed until it answers; 402: held)."""
    limits = config.voicedock.key(key_name)
    try:
        await client.probe()
    except Unauthorized as exc:
        field = (
            "voicedock.api_key_env"
            if key_name == DEFAULT_KEY
            else f"voicedock.keys.{key_name}.api_key_env"
        )
        raise ConfigError(
            [
                Problem(
                    file=config.source_file,
                    field=field,
                    message=f"VoiceDock refused the API key in ${limits.api_key_env} "
                    f"({exc.status_code}: {exc.said or 'unauthorized'}): put a valid key "
                    f"of this organization in {limits.api_key_env}",
                )
            ]
        ) from None
    except ProviderError as exc:
        log.warning(
            "dialer.daemon.key_unchecked",
            key=key_name,
            error=str(exc),
            hint="the daemon starts and tries again as it dials",
        )
    else:
        log.info("dialer.daemon.key_checked", key=key_name)


def _listen_error(config: Config, section: str, listen: str) -> ConfigError:
    return ConfigError(
        [
            Problem(
                file=config.source_file,
                field=f"{section}.listen",
                message=f"cannot listen on {listen}: the port is taken or the address is not "
                "this host's",
                accepted='a free "host:port" of this host',
            )
        ]
    )


@asynccontextmanager
async def _listener(
    config: Config, section: str, listen: str, app: ASGIApp, host: str, port: int
) -> AsyncIterator[int]:
    """Serve ``app`` for the daemon's lifetime; a port that cannot be bound is a ConfigError
    naming ``[section] listen``, raised before any campaign is imported."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            bound = await stack.enter_async_context(serve_app(app, host, port, name=section))
        except OSError:
            raise _listen_error(config, section, listen) from None
        yield bound


@asynccontextmanager
async def _webhook_receiver(
    config: Config, engine: Engine, secret: str | None
) -> AsyncIterator[None]:
    """Serve the signed-webhook receiver when `[webhooks]` is configured (an accelerator only)."""
    if config.webhooks is None:
        yield
        return
    if secret is None:
        secret = config.webhook_secret()
        assert secret is not None
    app = webhook_app(secret, engine.on_webhook)
    hooks = config.webhooks
    async with _listener(config, "webhooks", hooks.listen, app, hooks.host, hooks.port):
        yield


@asynccontextmanager
async def _status_page(
    config: Config, engine: Engine, counts: RequestCounts, token: str | None
) -> AsyncIterator[None]:
    """Serve the status page (dialer.web) when ``[web]`` is configured."""
    web = config.web
    if web is None:
        yield
        return
    if token is None:
        token = config.web_token()
    source = StatusSource(
        store=engine.store,
        clock=engine.clock,
        worker_ttl=engine.settings.worker_ttl,
        key_limits={key: config.voicedock.key(key).requests_per_minute for key in engine.clients},
        # the engine's own facts are read on its event loop, not the page's thread
        facts=lambda: anyio.from_thread.run_sync(_daemon_facts, engine, counts),
    )
    app = status_app(source, token=token, mask_phones=web.mask_phones, refresh=web.refresh)
    async with _listener(config, "web", web.listen, app, web.host, web.port):
        log.info(
            "dialer.web.serving",
            listen=web.listen,
            login=token is not None,
            mask_phones=web.mask_phones,
        )
        yield


def _daemon_facts(engine: Engine, counts: RequestCounts) -> DaemonFacts:
    return DaemonFacts(
        worker_id=engine.settings.worker_id,
        key_holds=[
            KeyHold(key=hold.key, status=hold.status, since=hold.since) for hold in engine.key_holds
        ],
        clock_skew=engine.clock_skew,
        unwritten_requests=counts.unwritten(),
    )


@asynccontextmanager
async def _metrics_endpoint(config: Config, engine: Engine) -> AsyncIterator[DialerMetrics | None]:
    """Serve /metrics, /healthz and /readyz when ``[metrics]`` is configured; the series are
    read when a scrape asks."""
    if config.metrics is None:
        yield None
        return
    metrics = DialerMetrics(engine)
    app = operations_app(metrics, engine)
    where = config.metrics
    async with _listener(config, "metrics", where.listen, app, where.host, where.port) as port:
        log.info("dialer.metrics.serving", listen=f"{where.host}:{port}")
        yield metrics


def _budget(key: KeyLimits, store: Store, time_scale: float = 1.0) -> RequestBudget:
    """On PostgreSQL several daemons may share the key: its budget lives in the database."""
    rpm, margin = key.requests_per_minute, key.budget_margin
    if store.dialect == "postgresql":
        if time_scale != 1.0:
            raise ValueError("a time-scaled budget is the in-process one (SQLite) only")
        return SharedBudget(rpm, margin=margin, slots=store, key_name=key.name)
    if time_scale != 1.0:
        # X-RateLimit-Reset comes in whole (real) seconds, a simulated minute at x60: holding
        # until it would stall a budget that keeps its own window exact in simulated time;
        # and a few real milliseconds of latency are simulated seconds: slots are spaced
        burst = spaced_burst(rpm, budget_rate(rpm, margin))
        return RequestBudget(rpm, margin=margin, time_scale=time_scale, reserve=0, burst=burst)
    return RequestBudget(rpm, margin=margin)


def _earliest_fire(scheduler: AsyncIOScheduler) -> datetime | None:
    times = [job.next_run_time for job in scheduler.get_jobs() if job.next_run_time is not None]
    return min(times) if times else None


def _trigger(campaign: Campaign, store: Store) -> BaseTrigger:
    if campaign.start_at is not None or campaign.cron is not None:
        return campaign.trigger()
    # "Start when the daemon first sees it" must mean ONE run, not one per restart: the fire
    # time is the moment the campaign was first imported, which the store remembers.
    row = store.campaign(campaign.name)
    assert row is not None, "campaigns are synced before they are scheduled"
    return DateTrigger(run_date=row.created_at)


def _reschedule(scheduler: AsyncIOScheduler, store: Store, old: Campaign, new: Campaign) -> None:
    """An edited campaign file with another schedule: its job follows (the run key, the
    fire time, still makes a fire that already has its run a no-op)."""
    if (old.start_at, old.cron, old.timezone) == (new.start_at, new.cron, new.timezone):
        return
    _add_job(scheduler, new, store)
    log.info("dialer.campaign.rescheduled", campaign=new.name, cron=new.cron)


def _schedule(engine: Engine, store: Store, campaigns: Sequence[Campaign]) -> AsyncIOScheduler:
    """APScheduler only fires; the run it creates is keyed on (campaign, scheduled fire time)."""
    scheduler = AsyncIOScheduler(timezone=UTC)

    def on_submitted(event: JobSubmissionEvent) -> None:
        for fire_time in event.scheduled_run_times:
            engine.fire(event.job_id, fire_time)

    scheduler.add_listener(on_submitted, EVENT_JOB_SUBMITTED)
    for campaign in campaigns:
        _add_job(scheduler, campaign, store)
    return scheduler


def _add_job(scheduler: AsyncIOScheduler, campaign: Campaign, store: Store) -> None:
    scheduler.add_job(
        _noop,
        trigger=_trigger(campaign, store),
        id=campaign.name,
        name=campaign.name,
        # However late the daemon starts, a one-off start fires; a cron fire missed while the
        # daemon ran (its loop held) fires late, coalesced; one missed while no daemon ran is
        # Engine.catch_up's. The run key makes a re-fire after a restart a no-op.
        misfire_grace_time=None,
        coalesce=True,
        max_instances=1,
        replace_existing=True,
    )


def _noop() -> None:
    """The job body: all work happens in the submission listener, which knows the fire time."""


@contextlib.contextmanager
def stop_on_signals() -> Iterator[asyncio.Event]:
    """An event SIGTERM and SIGINT set; install it before opening the daemon.

    Installed first, a signal that arrives while the daemon is still importing campaigns is a
    clean stop too, not the default handler's abrupt death.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, _stopper(stop, sig))
            installed.append(sig)
    try:
        yield stop
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def run_until_stopped(
    daemon: Daemon,
    *,
    until_idle: bool,
    stop: asyncio.Event,
    on_tick: Callable[[], None] | None = None,
) -> None:
    """Run the engine until `stop` is set (or, with `until_idle`, nothing is left to do)."""
    # Give APScheduler's first due fires a turn before deciding anything is idle.
    await asyncio.sleep(0)
    await daemon.engine.run(stop, until_idle=until_idle, on_tick=on_tick)


def _stopper(stop: asyncio.Event, sig: signal.Signals) -> Callable[[], None]:
    def handler() -> None:
        log.info("dialer.daemon.stopping", signal=sig.name)
        stop.set()

    return handler
