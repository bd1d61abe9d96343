"""The simulator's VoiceDock contract, in process with a controlled clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from dialer.simulator import Simulator, SimulatorConfig

KEY = "sim_test_key"
NOW = [0.0]


def client(sim: Simulator, key: str = KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app),
        base_url="http://sim/api/v1",
        headers={"Authorization": f"Bearer {key}"},
    )


def make(**overrides: object) -> Simulator:
    NOW[0] = 0.0
    values: dict[str, object] = {"api_key": KEY, "seed": 1}
    values.update(overrides)
    return Simulator(SimulatorConfig(**values), clock=lambda: NOW[0])  # type: ignore[arg-type]


BODY = {"destination": "+31612345678", "assistant_id": "a1"}


@pytest.mark.parametrize(
    ("outcome", "status", "error", "end_reason"),
    [
        ("answered", "ended", None, "customer-ended-call"),
        ("voicemail", "ended", None, "voicemail"),
        ("no_answer", "failed", "no-answer", "customer-did-not-answer"),
        ("busy", "failed", "busy", "customer-busy"),
        ("invalid_number", "failed", "invalid-number", "invalid-destination"),
        ("declined", "failed", "call-rejected", "customer-declined"),
        ("failed_transient", "failed", "sip-503-service-unavailable", "pipeline-error"),
    ],
)
async def test_lifecycle_per_outcome(
    outcome: str, status: str, error: str | None, end_reason: str
) -> None:
    sim = make(destination_outcomes={BODY["destination"]: outcome})
    async with client(sim) as http:
        created = await http.post("/calls/outbound", json=BODY)
        assert created.status_code == 201 and created.json()["status"] == "dialing"
        call_id = created.json()["call_id"]
        first = (await http.get(f"/calls/{call_id}")).json()
        assert first["status"] in ("connecting", status)
        sim.advance(3600)
        final = (await http.get(f"/calls/{call_id}")).json()
    assert (final["status"], final["error"], final["end_reason"]) == (status, error, end_reason)
    assert final["caller_phone"] == BODY["destination"]
    assert [r.destination for r in sim.created] == [BODY["destination"]]


async def test_auth_validation_credits_and_not_found() -> None:
    sim = make(credit_budget_calls=1)
    async with client(sim, key="wrong") as bad:
        refused = await bad.post("/calls/outbound", json=BODY)
    assert refused.status_code == 401 and refused.json()["error"] == "Unauthorized"
    async with client(sim) as http:
        missing = await http.post("/calls/outbound", json={"assistant_id": "a"})
        assert missing.status_code == 400
        assert missing.json()["error"]["code"] == "missing_field"
        both = await http.post("/calls/outbound", json={**BODY, "assistant": {}})
        assert both.status_code == 400
        assert (await http.post("/calls/outbound", json=BODY)).status_code == 201
        broke = await http.post("/calls/outbound", json=BODY)
        assert broke.status_code == 402
        assert broke.json()["error"]["code"] == "insufficient_credits"
        assert (await http.get("/calls/nope")).status_code == 404
    assert len(sim.created) == 1


async def test_rate_limit_headers_429_and_recovery() -> None:
    sim = make(requests_per_minute=3)
    async with client(sim) as http:
        answers = [await http.get("/calls") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[0].headers["X-RateLimit-Limit"] == "3"
        assert answers[2].headers["X-RateLimit-Remaining"] == "0"
        assert int(answers[3].headers["Retry-After"]) >= 1
        assert answers[3].json()["error"]["code"] == "rate_limit_exceeded"
        NOW[0] += 61
        assert (await http.get("/calls")).status_code == 200


@pytest.mark.parametrize(("time_scale", "reset"), [(1.0, "1702479661"), (10.0, "1702479606.1")])
async def test_the_reset_is_a_whole_second_of_simulated_time(time_scale: float, reset: str) -> None:
    """VoiceDock's X-RateLimit-Reset is a unix time in whole seconds. With the limit scaled it
    is in whole simulated seconds: a real second, rounded up, would hold a client ten
    simulated seconds too long at x10."""
    NOW[0] = 0.0
    wall0 = datetime.fromtimestamp(1702479600.0, UTC)
    sim = Simulator(
        SimulatorConfig(api_key=KEY, time_scale=time_scale, scale_rate_limit=True),
        clock=lambda: NOW[0],
        wall_clock=lambda: wall0 + timedelta(seconds=NOW[0]),
    )
    async with client(sim) as http:
        NOW[0] = 0.03  # the window's oldest request: it leaves it 60 / time_scale s later
        answer = await http.get("/calls")
    assert answer.headers["X-RateLimit-Reset"].rstrip("0") == reset


async def test_list_pages_newest_first_with_filters() -> None:
    sim = make(requests_per_minute=1000)
    async with client(sim) as http:
        for i in range(5):
            await http.post("/calls/outbound", json={**BODY, "destination": f"+3161234567{i}"})
        page = (await http.get("/calls", params={"limit": 2, "offset": 1})).json()
        assert page["pagination"] == {"total": 5, "limit": 2, "offset": 1}
        assert [c["caller_phone"] for c in page["calls"]] == ["+31612345673", "+31612345672"]
        assert (await http.get("/calls", params={"limit": 1001})).status_code == 400
        later = (await http.get("/calls", params={"start_date": "2100-01-01T00:00:00Z"})).json()
        assert later["calls"] == []
    assert sim.peak_requests_in_window(60) == 8  # 5 creates + 3 lists


def test_serve_refuses_anything_but_loopback() -> None:
    import asyncio

    from dialer.simulator import serve

    async def attempt() -> None:
        async with serve(make(), host="0.0.0.0"):  # noqa: S104 - the address we must refuse
            pass

    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(attempt())


async def test_off_the_network_connections_are_refused_until_it_is_back() -> None:
    from dialer.simulator import serve

    sim = Simulator(SimulatorConfig(api_key=KEY, seed=1))
    headers = {"Authorization": f"Bearer {KEY}"}
    async with serve(sim, network=True) as base_url:
        async with httpx.AsyncClient(base_url=base_url, headers=headers) as kept:
            assert (await kept.get("/calls")).status_code == 200  # a kept-alive connection
            await sim.refuse_connections()
            with pytest.raises(httpx.TransportError):  # cut, and no new one to be had
                await kept.get("/calls")
        async with httpx.AsyncClient(base_url=base_url, headers=headers) as fresh:
            with pytest.raises(httpx.ConnectError):  # refused: nothing of it was sent
                await fresh.post("/calls/outbound", json=BODY)
            await sim.accept_connections()
            assert (await fresh.post("/calls/outbound", json=BODY)).status_code == 201
    assert [r.destination for r in sim.created] == [BODY["destination"]]


async def test_refusing_needs_the_proxy_in_front() -> None:
    with pytest.raises(RuntimeError, match="network=True"):
        await make().refuse_connections()


async def test_answers_come_late_by_simulated_seconds() -> None:
    import asyncio

    sim = make(time_scale=100.0)
    sim.answer_after(30)  # 0.3 s of real time at 100x
    loop = asyncio.get_running_loop()
    async with client(sim) as http:
        sent = loop.time()
        created = await http.post("/calls/outbound", json=BODY)
        assert created.status_code == 201
        assert loop.time() - sent >= 0.3
        sim.answer_after(0)
        sent = loop.time()
        await http.get("/calls")
        assert loop.time() - sent < 0.3
