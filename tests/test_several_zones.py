"""A number that may be in several zones is called only when its window is open in all of them.

An Australian mobile in a Sydney clinic's campaign may be in Perth (three hours behind in
March) or on the Cocos Islands: 09:30 in Sydney is 06:30 in Perth. The engine, the simulator
and the store run under one fake time; what was called when is read from the simulator.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from dialer.attempts import AttemptState
from dialer.policy.timezones import candidate_zones
from tests.clock import FakeClock
from tests.engine_world import simulator, world

AU_MOBILE = "+61412345678"
SYDNEY = ZoneInfo("Australia/Sydney")
#: Monday 1 March 2027, 09:30 in Sydney (AEDT, UTC+11): 06:30 in Perth, 05:00 on Cocos
T0 = datetime(2027, 3, 1, 9, 30, tzinfo=SYDNEY).astimezone(UTC)
DAYTIME = '[window]\ndays = ["mon-sun"]\nhours = ["09:00-20:00"]\nmin_time_before_close = "0s"\n'


def open_in_every_zone(at: datetime) -> bool:
    return all(9 <= at.astimezone(ZoneInfo(z)).hour < 20 for z in candidate_zones(AU_MOBILE))


@pytest.mark.parametrize(
    ("zone", "unknown_timezone"),
    [
        ("Australia/Sydney", "skip"),
        # an alias of Sydney, and Australian zones phonenumbers does not list for mobiles:
        # the number may still be in Perth, under either policy
        ("Australia/Canberra", "skip"),
        ("Australia/Melbourne", "campaign"),
        ("Australia/Hobart", "skip"),
    ],
)
async def test_an_australian_mobile_waits_until_it_is_daytime_in_each_of_its_zones(
    tmp_path: Path, zone: str, unknown_timezone: str
) -> None:
    clock = FakeClock(T0)
    sim = simulator(clock)
    async with world(
        tmp_path,
        httpx.ASGITransport(app=sim.app),
        clock,
        window=DAYTIME,
        phones=[AU_MOBILE],
        extra=f'timezone = "{zone}"\nunknown_timezone = "{unknown_timezone}"',
    ) as w:
        engine = await w.engine("a")
        assert engine.fire("e2e", T0) is not None
        assert await engine.dispatch_once() == 0  # open in Sydney, not in Perth or Cocos
        deferred = w.attempt()
        assert deferred.state is AttemptState.PLANNED and deferred.reason == "window"
        (event,) = w.store.events(kind="attempt.deferred")
        assert event.data["until"] == deferred.due_at.isoformat()
        # 09:00 on Cocos (UTC+6:30) is the last of the zones to open: 13:30 in Sydney
        assert deferred.due_at == datetime(2027, 3, 1, 13, 30, tzinfo=SYDNEY)
        assert open_in_every_zone(deferred.due_at)
        assert not open_in_every_zone(deferred.due_at - timedelta(minutes=1))

        clock.now = deferred.due_at
        assert await engine.dispatch_once() == 1
        await engine.drain()
        (created,) = sim.created
        assert created.created_at == deferred.due_at
        (dialing,) = w.store.events(kind="attempt.dialing")
        assert dialing.data["zone"] == zone
        assert "Australia/Perth" in dialing.data["also_open_in"]
