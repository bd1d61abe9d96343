"""Taking the ground away from a dialer, for the tests that ride outages out: PostgreSQL behind
a loopback proxy, SQLite locked by another process or full, and the lines a daemon logged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dialer.simulator import LoopbackProxy
from tests.conftest import PG_ADMIN_DSN

T = TypeVar("T")


class ProxyThread:
    """A LoopbackProxy on a thread of its own: the dialer's store is synchronous, so a proxy on
    the test's event loop could not forward while a statement waits on it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)
        self._thread.start()
        self.proxy = LoopbackProxy(target)
        self._run(self.proxy.start())

    @property
    def port(self) -> int:
        return self.proxy.port

    def refuse(self) -> None:
        """The server gone: connections refused, the open ones cut."""
        self._run(self.proxy.refuse())

    def accept(self) -> None:
        self._run(self.proxy.accept())

    def cut(self) -> int:
        """Every open connection dropped; how many."""
        return self._run(self._cut())

    def close(self) -> None:
        self._run(self.proxy.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _cut(self) -> int:
        return self.proxy.cut()

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=30)


@contextlib.contextmanager
def pg_behind_proxy(pg_url: str) -> Iterator[tuple[str, ProxyThread]]:
    """The test database's URL through a proxy the test can take away, and the proxy."""
    url = make_url(pg_url)
    proxy = ProxyThread((url.host or "127.0.0.1", url.port or 5432))
    try:
        yield url.set(port=proxy.port).render_as_string(hide_password=False), proxy
    finally:
        proxy.close()


def terminate_backends(pg_url: str) -> int:
    """pg_terminate_backend for every other connection to the test database; how many."""
    database = make_url(pg_url).database
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return sum(1 for (done,) in rows if done)


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    assert database is not None
    return Path(database).resolve()


@dataclass
class SizeLimit:
    """``PRAGMA max_page_count`` on every connection a pool hands out to one SQLite file (the
    pragma is per connection): ``full()`` lets the file grow no more, ``free()`` lifts it."""

    path: Path
    pages: int | None = None

    def full(self) -> int:
        with sqlite3.connect(self.path) as probe:
            self.pages = int(probe.execute("PRAGMA page_count").fetchone()[0])
        return self.pages

    def free(self) -> None:
        self.pages = None

    def checkout(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if not isinstance(dbapi_connection, sqlite3.Connection):
            return
        files = {Path(row[2]).resolve() for row in dbapi_connection.execute("PRAGMA database_list")}
        if self.path in files:
            # below the file's size the pragma keeps the size: "full" whatever grew meanwhile
            limit = self.pages if self.pages is not None else 1_073_741_823
            dbapi_connection.execute(f"PRAGMA max_page_count = {limit}")


@contextlib.contextmanager
def size_limited(url: str) -> Iterator[SizeLimit]:
    """A SizeLimit on the SQLite file of ``url`` for every pool of this process."""
    limit = SizeLimit(sqlite_path(url))
    sa.event.listen(sa.pool.Pool, "checkout", limit.checkout)
    try:
        yield limit
    finally:
        sa.event.remove(sa.pool.Pool, "checkout", limit.checkout)


LOCKER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
print("released", flush=True)
"""


@contextlib.asynccontextmanager
async def locked_by_another_process(path: Path, seconds: float) -> AsyncIterator[asyncio.Task[int]]:
    """Another process takes the SQLite file's write lock (as a backup or the CLI would) and
    holds it ``seconds``; yields once the lock is held, with the task awaiting its release."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LOCKER, str(path), str(seconds), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    assert (await process.stdout.readline()).strip() == b"locked"

    async def released() -> int:
        assert process.stdout is not None
        await process.stdout.readline()
        return await process.wait()

    task = asyncio.create_task(released())
    try:
        yield task
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.gather(task, return_exceptions=True)


def log_lines(path: Path) -> list[dict[str, Any]]:
    """A daemon's JSON log lines (what `dialer run` writes when not on a terminal)."""
    lines = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(line)
            if isinstance(record, dict):
                lines.append(record)
    return lines
