"""The status page's answer times: each page of a 1,000,000-contact campaign against the same
page of a 1,000-contact one, in the same database (issue 20: each under 200 ms).

    python -m bench --pages-only                       # SQLite, 1,000,000 contacts (~2 min)
    python -m bench --pages-only --pages-contacts 100000
    python -m bench --pages-only --pages-db postgresql+psycopg://postgres@127.0.0.1:5432/bench

The campaigns are made the way the dialer makes them (``Store.sync_campaign``, then
``Store.create_run`` plans one attempt per contact), then moved in bulk to a mix of states
a campaign under way has: about 55 % called (reached, no answer with half of them retried,
busy, voicemail), 6 % skipped or expired, 1 % on the phone, the rest waiting; the calls
spread over the last week. Each page is asked for through Starlette's TestClient (routing,
store reads, rendering: everything but the socket) ``repeat`` times after one warm-up; the
table gives the median and the slowest. The first row is a campaign page's first view after
a start, when the campaign's figures are counted (dialer.web.figures): later views of a big
campaign answer from that count while it is recounted in the background, once per refresh.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from rich.table import Table
from starlette.testclient import TestClient

from dialer.store import ContactRecord, Store
from dialer.store.tables import ATTEMPTS
from dialer.web import StatusSource, status_app

__all__ = ["PageTime", "pages_table", "run_pages"]

#: the page times the issue asks for
TARGET_MS = 200.0
SMALL = 1_000
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class PageTime:
    page: str
    small_ms: tuple[float, ...]
    large_ms: tuple[float, ...]

    @property
    def large_median(self) -> float:
        return statistics.median(self.large_ms)


def _people(n: int, first: int) -> list[ContactRecord]:
    return [
        ContactRecord(
            phone=f"+3161{first + i:07d}",
            name=f"Person {first + i}",
            timezone=None,
            variables={},
            source_line=i + 2,
        )
        for i in range(n)
    ]


def seed(store: Store, name: str, contacts: int, *, first: int) -> None:
    """A campaign of ``contacts`` under way, made the way the dialer makes one."""
    cid = store.sync_campaign(
        name=name,
        source=f"{name}.toml",
        definition_hash="bench",
        api_key_name="default",
        contacts=_people(contacts, first),
        now=NOW - timedelta(days=7),
    )
    store.create_run(cid, fire_time=NOW - timedelta(days=7), now=NOW - timedelta(days=7))
    with store.session() as session:
        _spread(session.connection(), cid)
    if store.dialect == "postgresql":  # as autovacuum would: index-only scans need it
        engine = sa.create_engine(store.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("VACUUM ANALYZE attempts"))
        finally:
            engine.dispose()


def _ids(connection: sa.Connection, campaign_id: int) -> tuple[int, int]:
    low, high = connection.execute(
        sa.select(sa.func.min(ATTEMPTS.c.id), sa.func.max(ATTEMPTS.c.id)).where(
            ATTEMPTS.c.campaign_id == campaign_id
        )
    ).one()
    return int(low), int(high)


def _spread(connection: sa.Connection, campaign_id: int) -> None:
    """Move the campaign's attempts to the mix of a campaign under way, in a few UPDATEs."""
    low, high = _ids(connection, campaign_id)
    slot = (ATTEMPTS.c.id - low) * 100 / (high - low + 1)  # 0..99 along the ids
    # the calls spread over the last week (a key's 100 a minute allow 144,000 a day)
    seconds = (ATTEMPTS.c.id * 13) % (7 * 86400)
    start = NOW - timedelta(days=7)
    if connection.dialect.name == "postgresql":
        dialled: sa.ColumnElement[datetime] = sa.literal(start) + sa.func.make_interval(
            0, 0, 0, 0, 0, 0, seconds
        )
    else:  # the store keeps SQLite's times as UTC text
        dialled = sa.func.datetime(
            start.replace(tzinfo=None).isoformat(sep=" "), sa.func.printf("+%d seconds", seconds)
        )
    later = sa.literal(NOW + timedelta(hours=2), ATTEMPTS.c.due_at.type)
    called = {"dialing_at": dialled, "started_at": dialled, "ended_at": dialled}
    mix: list[tuple[int, int, dict[str, object]]] = [
        (0, 30, {"state": "ended", "outcome": "completed", "duration_seconds": 90,
                 "summary": "The customer confirmed the appointment.", **called}),
        (30, 40, {"state": "ended", "outcome": "no_answer", **called}),
        (40, 48, {"state": "ended", "outcome": "busy", **called}),
        (48, 55, {"state": "ended", "outcome": "voicemail", **called}),
        (55, 58, {"state": "skipped", "reason": "dnc"}),
        (58, 60, {"state": "skipped", "reason": "unknown_timezone"}),
        (60, 61, {"state": "expired", "reason": "deadline"}),
        (61, 62, {"state": "in_flight", "dialing_at": dialled}),
        (62, 100, {"reason": "window", "due_at": later}),
    ]  # fmt: skip
    for first, last, values in mix:
        connection.execute(
            sa.update(ATTEMPTS)
            .where(ATTEMPTS.c.campaign_id == campaign_id, slot >= first, slot < last)
            .values(**values)
        )
    # half the no-answers have their retry planned: that retry is then the contact's newest
    columns = ["run_id", "campaign_id", "contact_id", "phone", "attempt_no", "state", "due_at",
               "reason", "created_at", "updated_at"]  # fmt: skip
    retries = sa.select(
        ATTEMPTS.c.run_id,
        ATTEMPTS.c.campaign_id,
        ATTEMPTS.c.contact_id,
        ATTEMPTS.c.phone,
        sa.literal(2),
        sa.literal("planned"),
        sa.literal(NOW + timedelta(hours=1), ATTEMPTS.c.due_at.type),
        sa.literal("retry:no_answer"),
        sa.literal(NOW, ATTEMPTS.c.created_at.type),
        sa.literal(NOW, ATTEMPTS.c.updated_at.type),
    ).where(
        ATTEMPTS.c.campaign_id == campaign_id,
        ATTEMPTS.c.outcome == "no_answer",
        ATTEMPTS.c.id % 2 == 0,
    )
    connection.execute(sa.insert(ATTEMPTS).from_select(columns, retries))


def _timed(get: Callable[[], object], repeat: int) -> tuple[float, ...]:
    get()  # warm: statements compiled, pages cached by the database
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        get()
        times.append((time.perf_counter() - started) * 1000)
    return tuple(times)


def _first(client: TestClient, url: str) -> float:
    started = time.perf_counter()
    assert client.get(url).status_code == 200, url
    return (time.perf_counter() - started) * 1000


def run_pages(
    contacts: int = 1_000_000, *, db_url: str | None = None, repeat: int = 5
) -> list[PageTime]:
    """Seed a small and a large campaign, then time each page of both."""
    with tempfile.TemporaryDirectory(prefix="dialer-pages-") as tmp:
        url = db_url or f"sqlite:///{Path(tmp) / 'pages.db'}"
        with Store(url) as store:
            store.drop_schema()
            store.create_schema()
            seed(store, "small", SMALL, first=0)
            seed(store, "large", contacts, first=SMALL)
            return _time_pages(store, {"small": (0, SMALL), "large": (SMALL, contacts)}, repeat)


def _time_pages(store: Store, campaigns: dict[str, tuple[int, int]], repeat: int) -> list[PageTime]:
    def fresh_client() -> TestClient:
        app = status_app(
            StatusSource(store=store, clock=lambda: NOW, key_limits={"default": 100}),
            token=None,
            mask_phones=False,
        )
        return TestClient(app)

    client = fresh_client()
    urls: dict[str, dict[str, str]] = {}
    for name, (first, count) in campaigns.items():
        campaign = store.campaign(name)
        assert campaign is not None
        with store.session() as session:
            low, high = _ids(session.connection(), campaign.id)
        middle = (low + high) // 2
        phone = f"%2B3161{first + count // 2:07d}"
        base = f"/campaigns/{name}"
        urls[name] = {
            "overview": "/",
            "campaign, first page": base,
            "campaign, a page half-way down": f"{base}?before={middle}",
            "filtered: called, no answer": f"{base}?state=ended&outcome=no_answer",
            "filtered: skip reason dnc": f"{base}?reason=dnc",
            "search: a whole number": f"{base}?q={phone}",
            "search: a name (one window)": f"{base}?q=person+{first + count // 3}",
            "needs a person, first page": f"{base}/needs-a-person",
            "needs a person, half-way down": f"{base}/needs-a-person?before={middle}",
        }
    results = [  # a page's first view after a start: its campaign is counted there and then
        PageTime(
            page="campaign, first view after a start",
            small_ms=tuple(_first(fresh_client(), "/campaigns/small") for _ in range(repeat)),
            large_ms=tuple(_first(fresh_client(), "/campaigns/large") for _ in range(repeat)),
        )
    ]
    for page, small in urls["small"].items():
        large = urls["large"][page]
        for url in (small, large):
            assert client.get(url).status_code == 200, url
        results.append(
            PageTime(
                page=page,
                small_ms=_timed(lambda u=small: client.get(u), repeat),  # type: ignore[misc]
                large_ms=_timed(lambda u=large: client.get(u), repeat),  # type: ignore[misc]
            )
        )
    return results


def pages_table(results: list[PageTime], contacts: int, database: str) -> Table:
    table = Table(
        title=f"Status page answer times ({database}): ms, median / slowest of each",
        title_justify="left",
    )
    table.add_column("page")
    table.add_column(f"{SMALL:,} contacts", justify="right")
    table.add_column(f"{contacts:,} contacts", justify="right")
    table.add_column(f"under {TARGET_MS:.0f} ms", justify="center")
    for row in results:
        table.add_row(
            row.page,
            f"{statistics.median(row.small_ms):.1f} / {max(row.small_ms):.1f}",
            f"{row.large_median:.1f} / {max(row.large_ms):.1f}",
            "yes" if max(row.large_ms) < TARGET_MS else "NO",
        )
    return table
