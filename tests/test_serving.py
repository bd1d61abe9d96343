"""The daemon's HTTP listeners: uvicorn's own lines come through structlog, and a listener
leaves the daemon's signal handlers in place."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Iterator

import pytest
import structlog
from starlette.applications import Starlette

from dialer.logs import configure_logging
from dialer.serving import serve_app


@pytest.fixture
def json_logs() -> Iterator[None]:
    try:
        yield
    finally:
        structlog.reset_defaults()
        uvicorn = logging.getLogger("uvicorn")
        uvicorn.handlers.clear()
        uvicorn.setLevel(logging.NOTSET)
        uvicorn.propagate = True


async def test_our_level_holds_whatever_level_an_earlier_server_set(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The simulator's uvicorn.Config (log_level="critical") sets uvicorn.error's level for the
    whole process; configuring the dialer's logs puts its own level back in charge."""
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    configure_logging(json_lines=True, level=logging.INFO)
    logging.getLogger("uvicorn.error").warning("a warning of uvicorn's")
    (line,) = [json.loads(text) for text in capsys.readouterr().err.splitlines()]
    assert (line["event"], line["level"], line["message"]) == (
        "dialer.http.server",
        "warning",
        "a warning of uvicorn's",
    )


async def test_uvicorns_lines_are_structured_events(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # in the test: the logger writes to the sys.stderr it finds then, capsys's
    configure_logging(json_lines=True, level=logging.INFO)
    async with serve_app(Starlette(), "127.0.0.1", 0, name="test") as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")  # uvicorn warns of an invalid request
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
        await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 400")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    events = {(line["event"], line["logger"], line["level"]) for line in lines}
    assert ("dialer.http.server", "uvicorn.error", "warning") in events
    assert ("dialer.http.server", "uvicorn.error", "info") in events  # started, finished
    assert all("timestamp" in line and "message" in line for line in lines)


async def test_a_listener_leaves_the_daemons_signal_handlers_alone() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    async with serve_app(Starlette(), "127.0.0.1", 0, name="test") as port:
        _, writer = await asyncio.open_connection("127.0.0.1", port)  # it is serving
        writer.close()
        await writer.wait_closed()
        during = {sig: signal.getsignal(sig) for sig in before}
    assert during == before


async def test_a_taken_port_is_an_error_at_once() -> None:
    async with serve_app(Starlette(), "127.0.0.1", 0, name="first") as port:
        with pytest.raises(OSError, match="in use"):
            async with serve_app(Starlette(), "127.0.0.1", port, name="second"):
                pass
