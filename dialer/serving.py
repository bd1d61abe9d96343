"""The daemon's HTTP listeners (the webhook receiver, the metrics and health endpoints): ASGI
apps served by uvicorn on the daemon's own event loop.

    async with serve_app(app, "127.0.0.1", 9464) as port:   # OSError: the port is taken
        ...

The socket is bound before the context is entered, so a taken port is an error at once (the
daemon reports it as a config error) rather than uvicorn's exit of the whole process later.
uvicorn logs through the standard library; dialer.logs routes those lines into structlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager

import uvicorn
from starlette.types import ASGIApp

__all__ = ["serve_app"]

#: how long a listener may take to finish its open requests at shutdown
SHUTDOWN_GRACE_S = 5.0


class _Listener(uvicorn.Server):
    """A uvicorn server that leaves the process's signals alone: the daemon owns SIGTERM and
    SIGINT (dialer.daemon.stop_on_signals). uvicorn's own handlers would replace the daemon's
    for as long as it serves, and close the listener before the engine drains its calls."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@asynccontextmanager
async def serve_app(app: ASGIApp, host: str, port: int, *, name: str) -> AsyncIterator[int]:
    """Serve ``app`` on ``host:port`` (port 0: any free one) until the context exits; yields
    the port. Raises OSError when the address cannot be bound."""
    sock = socket.create_server(
        (host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET
    )
    server = _Listener(
        uvicorn.Config(
            app,
            lifespan="off",
            # one line per request would flood the log (webhooks: several per call)
            access_log=False,
            # no logging set-up of uvicorn's own: dialer.logs routes its loggers to structlog
            log_config=None,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]), name=name)
    try:
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, timeout=SHUTDOWN_GRACE_S)
        sock.close()
