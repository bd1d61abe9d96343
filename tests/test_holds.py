"""Hold, don't burn: a create refused for what every contact would meet holds the campaign
after a few, never fails the list; `run --until-idle` stops when only a person can help; a
refused key stops `dialer run` at start. Judged from the simulator's record of requests."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import structlog

from dialer.attempts import AttemptState
from dialer.errors import NeedsAPerson
from dialer.simulator import Simulator, SimulatorConfig, serve
from dialer.store import CampaignHold, CampaignState, ContactRecord, Store
from tests.e2e import (
    ASSISTANT,
    DIALER,
    KEY,
    fast_settings,
    load,
    nl_numbers,
    run_daemon,
    write_campaign,
    write_config,
)

SCALE = 200.0
FAST = 'poll_interval = "0.2s"\nexpected_call_length = "1s"\nlist_interval = "1s"\n'
KNOWN_ASSISTANT = "0a1b2c3d-0000-4000-8000-00000000a551"


async def _dialer(config: Path, *args: str, key: str = KEY) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        DIALER,
        *args,
        "--config",
        str(config),
        env={**os.environ, "VOICEDOCK_API_KEY": key, "COLUMNS": "200"},
        cwd=config.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=180)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _refused_creates(sim: Simulator) -> int:
    return sum(1 for r in sim.request_log if r.method == "POST" and 400 <= r.status < 500)


@pytest.mark.parametrize("mistake", ["override_422", "assistant_404"])
async def test_a_mistake_holds_the_campaign_and_burns_no_contact(
    tmp_path: Path, sqlite_url: str, mistake: str
) -> None:
    phones = nl_numbers(200)
    campaign = write_campaign(tmp_path, phones)
    good = campaign.read_text(encoding="utf-8")
    if mistake == "override_422":
        bad = good.replace("first_message =", "frist_message =")
        said = "Unknown field in assistant_override: frist_message"
        fixed = good
        sim_config = SimulatorConfig(
            api_key=KEY,
            time_scale=SCALE,
            seed=5,
            requests_per_minute=6000,
            override_fields=("first_message", "metadata"),
        )
    else:
        bad = good
        said = "Assistant not found"
        fixed = good.replace(ASSISTANT, KNOWN_ASSISTANT)
        sim_config = SimulatorConfig(
            api_key=KEY,
            time_scale=SCALE,
            seed=5,
            requests_per_minute=6000,
            assistant_ids=(KNOWN_ASSISTANT,),
        )
    campaign.write_text(bad, encoding="utf-8")
    sim = Simulator(sim_config)
    async with serve(sim) as base_url:
        config = write_config(
            tmp_path, db_url=sqlite_url, base_url=base_url, extra=FAST, max_concurrent=40
        )
        assert config.source is not None
        started = time.monotonic()
        code, _, err = await _dialer(config.source, "run", "--until-idle")
        held_after_s = time.monotonic() - started
        last = err.strip().splitlines()[-1]
        assert code == 1, err[-2000:]
        assert last.startswith("error campaign 'e2e' is held: VoiceDock said: "), last
        assert said in last and "dialer resume e2e" in last
        refused = _refused_creates(sim)
        assert 1 <= refused <= 3 and sim.created == []

        with Store(sqlite_url) as store:
            record = store.campaign("e2e")
            assert record is not None and record.state is CampaignState.HELD
            assert record.hold is not None and said in record.hold.reason
            assert record.hold.phone in phones and record.hold.line is not None
            attempts = store.attempts(campaign_id=record.id)
            assert len(attempts) == 200
            assert {a.state for a in attempts} == {AttemptState.PLANNED}  # 0 failed
            assert {a.attempt_no for a in attempts} == {1}  # no attempt used up

        code, out, _ = await _dialer(config.source, "status", "e2e")
        assert code == 0 and "e2e (held)" in out and said in out

        campaign.write_text(fixed, encoding="utf-8")
        code, out, _ = await _dialer(config.source, "resume", "e2e")
        assert code == 0 and "active (was held)" in out
        started = time.monotonic()
        code, _, err = await _dialer(config.source, "run", "--until-idle")
        called_in_s = time.monotonic() - started
        assert code == 0, err[-2000:]
    called = sorted(r.destination for r in sim.created)
    assert called == sorted(phones)  # every contact, each once
    assert _refused_creates(sim) == refused
    print(  # the figures the report quotes (pytest -s)
        f"{mistake}: creates refused {refused}, contacts failed 0, held after "
        f"{held_after_s:.1f} s; after the fix and resume {len(called)} called in "
        f"{called_in_s:.1f} s"
    )


async def test_an_edited_file_releases_a_held_campaign(tmp_path: Path, sqlite_url: str) -> None:
    """No `dialer resume`: the daemon that imports the corrected file releases the hold."""
    phones = nl_numbers(5)
    campaign = write_campaign(tmp_path, phones)
    good = campaign.read_text(encoding="utf-8")
    campaign.write_text(good.replace(ASSISTANT, "no-such-assistant"), encoding="utf-8")
    sim = Simulator(
        SimulatorConfig(
            api_key=KEY, time_scale=SCALE, requests_per_minute=6000, assistant_ids=(ASSISTANT,)
        )
    )
    config = write_config(tmp_path, db_url=sqlite_url, extra=FAST)
    settings = fast_settings(config, SCALE)
    with pytest.raises(NeedsAPerson, match="is held: VoiceDock said: 404: Not Found"):
        await run_daemon(config, [load(campaign)], sim, settings)
    assert _refused_creates(sim) == 3 and sim.created == []

    campaign.write_text(good, encoding="utf-8")
    daemon = await run_daemon(config, [load(campaign)], sim, settings)
    record = daemon.store.campaign("e2e")
    assert record is not None and record.state is CampaignState.ACTIVE and record.hold is None
    assert sorted(r.destination for r in sim.created) == sorted(phones)
    kinds = [e.kind for e in daemon.store.events() if e.kind.startswith("campaign.")]
    assert kinds == ["campaign.created", "campaign.held", "campaign.updated", "campaign.released"]


class _RefuseOneDestination(httpx.AsyncBaseTransport):
    """VoiceDock refusing one number as not dialable (400 naming the destination); the
    simulator answers everything else."""

    def __init__(self, sim: Simulator, refused: str) -> None:
        self._inner = httpx.ASGITransport(app=sim.app)
        self._refused = refused

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and self._refused.encode() in request.content:
            return httpx.Response(
                400,
                json={
                    "error": {
                        "code": "invalid_request",
                        "message": "destination is not a dialable number",
                        "param": "destination",
                    }
                },
            )
        return await self._inner.handle_async_request(request)


async def test_an_invalid_destination_fails_that_contact_alone(
    tmp_path: Path, sqlite_url: str
) -> None:
    phones = nl_numbers(6)
    campaign = load(write_campaign(tmp_path, phones))
    sim = Simulator(SimulatorConfig(api_key=KEY, time_scale=SCALE, requests_per_minute=6000))
    config = write_config(tmp_path, db_url=sqlite_url, extra=FAST)
    daemon = await run_daemon(
        config,
        [campaign],
        sim,
        fast_settings(config, SCALE),
        transport=_RefuseOneDestination(sim, phones[2]),
    )
    record = daemon.store.campaign("e2e")
    assert record is not None and record.state is CampaignState.ACTIVE
    states = {a.phone: (a.state, a.outcome) for a in daemon.store.attempts()}
    assert states.pop(phones[2]) == (AttemptState.FAILED, "failed_permanent")
    assert {state for state, _ in states.values()} == {AttemptState.ENDED}
    assert sorted(r.destination for r in sim.created) == sorted(set(phones) - {phones[2]})


async def test_until_idle_stops_when_only_credits_would_help(
    tmp_path: Path, sqlite_url: str
) -> None:
    phones = nl_numbers(4)
    campaign = load(write_campaign(tmp_path, phones))
    sim = Simulator(
        SimulatorConfig(
            api_key=KEY, time_scale=SCALE, requests_per_minute=6000, credit_budget_calls=0
        )
    )
    config = write_config(tmp_path, db_url=sqlite_url, extra=FAST)
    with pytest.raises(NeedsAPerson, match="waits for API key 'default', which VoiceDock refuses"):
        await run_daemon(config, [campaign], sim, fast_settings(config, SCALE), bound_s=30)
    assert sim.created == []


async def test_a_long_running_daemon_says_the_hold_again(tmp_path: Path, sqlite_url: str) -> None:
    campaign = write_campaign(tmp_path, nl_numbers(4))
    campaign.write_text(
        campaign.read_text(encoding="utf-8").replace("first_message =", "frist_message ="),
        encoding="utf-8",
    )
    sim = Simulator(
        SimulatorConfig(
            api_key=KEY,
            time_scale=SCALE,
            requests_per_minute=6000,
            override_fields=("first_message", "metadata"),
        )
    )
    config = write_config(tmp_path, db_url=sqlite_url, extra=FAST)
    settings = fast_settings(config, SCALE, hold_log_every=timedelta(seconds=0.3))
    started = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        await run_daemon(
            config,
            [load(campaign)],
            sim,
            settings,
            stop_when=lambda _: time.monotonic() - started > 2.0,
        )
    said = [e for e in logs if e["event"] == "dialer.campaign.held"]
    assert len([e for e in said if e.get("reminder")]) >= 3  # still running, still saying it
    assert all("frist_message" in (e.get("reason") or e.get("error")) for e in said)
    assert _refused_creates(sim) == 3


async def test_dialer_run_refuses_a_wrong_key_at_start(tmp_path: Path, sqlite_url: str) -> None:
    write_campaign(tmp_path, nl_numbers(3))
    sim = Simulator(SimulatorConfig(api_key=KEY, time_scale=SCALE))
    async with serve(sim) as base_url:
        config = write_config(tmp_path, db_url=sqlite_url, base_url=base_url, extra=FAST)
        assert config.source is not None
        wrong = "fl_live_not_this_one_0123456789"
        code, _, err = await _dialer(config.source, "run", "--until-idle", key=wrong)
    assert code == 2, err[-2000:]
    assert "VoiceDock refused the API key in $VOICEDOCK_API_KEY (401" in err
    assert wrong not in err
    assert [(r.method, r.path, r.status) for r in sim.request_log] == [
        ("GET", "/api/v1/calls", 401)
    ]
    with Store(sqlite_url) as store:
        assert store.campaigns() == []  # nothing imported


async def test_an_unreachable_voicedock_at_start_is_not_fatal(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The key check gets no answer: the daemon starts all the same (and rides it out)."""
    phones = nl_numbers(2)
    campaign = load(write_campaign(tmp_path, phones))
    sim = Simulator(SimulatorConfig(api_key=KEY, time_scale=SCALE, requests_per_minute=6000))
    inner = httpx.ASGITransport(app=sim.app)
    refused_once: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if not refused_once:
            refused_once.append(request.url.path)
            raise httpx.ConnectError("connection refused", request=request)
        return await inner.handle_async_request(request)

    config = write_config(tmp_path, db_url=sqlite_url, extra=FAST)
    daemon = await run_daemon(
        config,
        [campaign],
        sim,
        fast_settings(config, SCALE),
        transport=httpx.MockTransport(handler),
    )
    assert refused_once == ["/api/v1/calls"]
    assert sorted(r.destination for r in sim.created) == sorted(phones)
    assert daemon.store.campaign("e2e") is not None


def test_the_store_holds_and_releases_a_campaign(db_url: str) -> None:
    """On SQLite and PostgreSQL: only an active campaign is held; its refused attempts are
    brought forward; resume, a pause or an edited definition each end the hold."""
    now = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
    contacts = [
        ContactRecord(phone=p, name=None, timezone=None, variables={}) for p in nl_numbers(4)
    ]

    def sync(store: Store, definition_hash: str) -> int:
        return store.sync_campaign(
            name="e2e",
            source="e2e.toml",
            definition_hash=definition_hash,
            api_key_name="default",
            contacts=contacts,
            now=now,
        )

    with Store(db_url) as store:
        store.create_schema()
        campaign_id = sync(store, "h1")
        assert store.create_run(campaign_id, fire_time=now, now=now) is not None
        refused = store.attempts(campaign_id=campaign_id)[:3]
        for attempt in refused:
            assert store.begin_dialing(attempt.id, owner="t", body={}, now=now)
            store.release_unplaced(
                attempt.id, due_at=now + timedelta(minutes=1), reason="refused:campaign", now=now
            )
        held_at = now + timedelta(seconds=5)
        assert store.hold_campaign(
            campaign_id,
            reason="404: Not Found: Assistant not found",
            phone=refused[0].phone,
            line=2,
            now=held_at,
            attempt_ids=[a.id for a in refused],
        )
        assert not store.hold_campaign(campaign_id, reason="again", phone=None, line=None, now=now)
        record = store.campaign("e2e")
        assert record is not None and record.state is CampaignState.HELD
        assert record.hold == CampaignHold(
            reason="404: Not Found: Assistant not found",
            phone=refused[0].phone,
            line=2,
            since=held_at,
        )
        assert store.due_attempts(now=now + timedelta(days=1), limit=10) == []  # no daemon dials
        assert {store.attempt(a.id).due_at for a in refused} == {held_at}  # due at release
        assert [a.attempt_no for a in store.attempts(campaign_id=campaign_id)] == [1, 1, 1, 1]

        change = store.change_campaign_state("e2e", CampaignState.ACTIVE, now=now)
        assert change is not None and change.previous is CampaignState.HELD
        record = store.campaign("e2e")
        assert record is not None and record.hold is None and record.state is CampaignState.ACTIVE
        assert len(store.due_attempts(now=held_at, limit=10)) == 4

        assert store.hold_campaign(campaign_id, reason="x", phone=None, line=None, now=now)
        sync(store, "h1")  # the same definition: still held
        assert store.campaign("e2e").state is CampaignState.HELD  # type: ignore[union-attr]
        sync(store, "h2")  # an edited file: released
        record = store.campaign("e2e")
        assert record is not None and record.state is CampaignState.ACTIVE and record.hold is None

        assert store.hold_campaign(campaign_id, reason="x", phone=None, line=None, now=now)
        store.change_campaign_state("e2e", CampaignState.PAUSED, now=now)
        record = store.campaign("e2e")
        assert record is not None and record.state is CampaignState.PAUSED and record.hold is None
        assert not store.hold_campaign(campaign_id, reason="x", phone=None, line=None, now=now)
        kinds = [e.kind for e in store.events() if e.kind.startswith("campaign.")]
        assert kinds == [
            "campaign.created",
            "campaign.held",
            "campaign.active",
            "campaign.held",
            "campaign.updated",
            "campaign.released",
            "campaign.held",
            "campaign.paused",
        ]
