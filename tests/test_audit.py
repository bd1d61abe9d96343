"""The audit log: for each dial the rules that allowed it, the request and VoiceDock's answer."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from dialer.cli import app
from dialer.simulator import Faults, Simulator, SimulatorConfig
from dialer.store import Store
from tests.e2e import KEY, fast_settings, load, nl_numbers, run_daemon, write_campaign, write_config

SCALE = 200.0


async def test_every_dial_is_explained_and_answered_in_the_audit_export(
    tmp_path: Path, db_url: str
) -> None:
    phones = nl_numbers(12)
    campaign = load(write_campaign(tmp_path, phones))
    config = write_config(
        tmp_path, db_url=db_url, extra="max_calls_per_contact = { count = 7, days = 7 }\n"
    )
    # Half the creates place the call but answer 502: the audit must show that answer too.
    faults = Faults(ambiguous_create=0.5, ambiguous_kinds=("error",))
    sim = Simulator(
        SimulatorConfig(
            api_key=KEY, time_scale=SCALE, seed=21, requests_per_minute=6000, faults=faults
        )
    )
    await run_daemon(config, [campaign], sim, fast_settings(config, SCALE))

    out = tmp_path / "audit.jsonl"
    result = CliRunner().invoke(
        app, ["audit", "e2e", "--output", str(out), "--config", str(config.source)]
    )
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)  # append order
    by_attempt: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event["attempt_id"] is not None:
            by_attempt[event["attempt_id"]].append(event)

    dials = [e for e in events if e["kind"] == "attempt.dialing"]
    assert {e["request"]["destination"] for e in dials} == set(phones)
    for dial in dials:
        assert dial["rule"] == "window"
        assert dial["window"].startswith("mon,tue,wed,thu,fri,sat,sun 00:00-24:00")
        assert dial["zone"] == "Europe/Amsterdam"
        assert datetime.fromisoformat(dial["local_time"]).utcoffset() is not None
        assert dial["attempt_no"] == 1 and dial["max_attempts"] == 1
        assert dial["cap"] == {"calls": 0, "count": 7, "days": 7}
        assert dial["request"]["method"] == "POST" and dial["request"]["path"] == "/calls/outbound"
        assert len(dial["request"]["body_sha256"]) == 64
        # What came of that request: VoiceDock's status, or the reconciliation that followed.
        after = [e["kind"] for e in by_attempt[dial["attempt_id"]]]
        assert after[after.index("attempt.dialing") + 1] in ("attempt.created", "attempt.ambiguous")
    answered = {
        e["kind"]: e["response_status"]
        for e in events
        if e["kind"] in ("attempt.created", "attempt.ambiguous")
    }
    assert answered == {"attempt.created": 201, "attempt.ambiguous": 502}
    assert any(e["kind"] == "attempt.adopted" for e in events)  # the 502'd calls were found

    # The digest ties the audit line to the request body kept on the attempt row.
    with Store(config.database_url) as store:
        row = store.campaign("e2e")
        assert row is not None and row.id is not None
        bodies = {a.id: a.request_body for a, _ in store.iter_attempt_records(row.id)}
    for dial in dials:
        body = json.dumps(bodies[dial["attempt_id"]], sort_keys=True).encode()
        assert hashlib.sha256(body).hexdigest() == dial["request"]["body_sha256"]


def test_audit_of_an_unknown_campaign_exits_2(tmp_path: Path, sqlite_url: str) -> None:
    write_campaign(tmp_path, nl_numbers(1))
    config = write_config(tmp_path, db_url=sqlite_url)
    with Store(sqlite_url) as store:
        store.create_schema()
    result = CliRunner().invoke(app, ["audit", "nope", "--config", str(config.source)])
    assert result.exit_code == 2
    assert "nope" in result.stderr
