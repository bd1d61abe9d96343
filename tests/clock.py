"""One simulated instant for every clock of a test world: the engine's clock, the simulator's
clocks and the request budget's clock, wall clock and sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta


class FakeClock:
    """Time that moves only when told to.

    ``autojump``: the budget's dispatcher is the only sleeper, so jumping over its wait keeps
    time consistent. Without it a sleeper waits until ``advance`` passes its deadline, so a test
    can act while a request is held (a 429's pause, say).
    """

    def __init__(self, start: datetime, *, autojump: bool = True) -> None:
        self.start = start
        self.now = start
        self.autojump = autojump
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return (self.now - self.start).total_seconds()

    def unix(self) -> float:
        return self.now.timestamp()

    async def sleep(self, seconds: float) -> None:
        if self.autojump:
            await asyncio.sleep(0)  # whoever was just granted a slot runs at the grant time
            self.now += timedelta(seconds=max(seconds, 0.0))
            return
        future = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + timedelta(seconds=seconds), future))
        await future

    def advance(self, delta: timedelta) -> None:
        self.now += delta
        for deadline, future in list(self._sleepers):
            if deadline <= self.now or future.done():
                self._sleepers.remove((deadline, future))
                if not future.done():
                    future.set_result(None)


async def eventually(condition: Callable[[], bool], *, within_s: float = 5.0) -> None:
    """Let the event loop run (real time: loops tick) until ``condition`` holds; a state to
    reach, with a bound that only a broken condition meets."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {within_s} s")
        await asyncio.sleep(0.005)
