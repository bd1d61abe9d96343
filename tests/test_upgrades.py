"""`dialer db upgrade` from every earlier schema revision, with rows in every table.

For each revision R (0001 ... head), on SQLite and on PostgreSQL: migrate an empty database
revision by revision up to R, inserting after each revision N the rows of ``SEEDS[N]`` (so
every table that exists at R holds rows), then upgrade to head as `dialer db upgrade` does and
check that every row is there with its values, that the dialer reads and writes them, and that
the migrated schema equals the models' schema.

A new revision needs only its entry in ``SEEDS``: rows for the tables it adds, or for the
columns it adds to older tables, written with the columns that revision has (``{}`` when it
adds no table and no column worth a row).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from dialer import migrate
from dialer.attempts import AttemptState
from dialer.store import Store

T = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
Rows = dict[str, list[dict[str, Any]]]

#: the rows inserted right after upgrading to each revision, by table
SEEDS: dict[str, Rows] = {
    "0001": {
        "campaigns": [
            {
                "id": 1,
                "name": "reminders",
                "source": "/etc/dialer/campaigns/reminders.toml",
                "definition_hash": "9f2c",
                "api_key_name": "default",
                "state": "active",
                "created_at": T,
                "updated_at": T,
            }
        ],
        "contacts": [
            {
                "id": 1,
                "campaign_id": 1,
                "phone": "+31612345601",
                "name": "Sanne de Vries",
                "timezone": "Europe/Amsterdam",
                "variables": {"slot": "10:00", "dentist": "Dr. Bakker"},
                "call_at": None,
                "appointment_at": T + timedelta(days=1),
                "deadline": T + timedelta(days=1),
                "source_line": 2,
                "removed": False,
            },
            {
                "id": 2,
                "campaign_id": 1,
                "phone": "+442079460102",
                "name": None,
                "timezone": None,
                "variables": {},
                "call_at": T + timedelta(hours=2),
                "appointment_at": None,
                "deadline": None,
                "source_line": 3,
                "removed": True,
            },
        ],
        "runs": [
            {
                "id": 1,
                "campaign_id": 1,
                "fire_time": T,
                "created_at": T,
                "finished_at": None,
            }
        ],
        "attempts": [
            {
                "id": 1,
                "run_id": 1,
                "campaign_id": 1,
                "contact_id": 1,
                "phone": "+31612345601",
                "attempt_no": 1,
                "state": "ended",
                "due_at": T,
                "reason": None,
                "owner": "vm:100",
                "dialing_at": T + timedelta(seconds=1),
                "request_body": {"destination": "+31612345601", "assistant_id": "a1"},
                "call_id": "call-1",
                "next_poll_at": None,
                "polls": 3,
                "outcome": "completed",
                "call_status": "ended",
                "error": None,
                "end_reason": "customer-ended-call",
                "started_at": T + timedelta(seconds=5),
                "ended_at": T + timedelta(seconds=95),
                "duration_seconds": 90,
                "summary": "Confirmed.",
                "analysis_result": {"sentiment": 8},
                "messages": [{"role": "assistant", "message": "Hello Sanne"}],
                "raw": {"id": "call-1", "status": "ended"},
                "created_at": T,
                "updated_at": T + timedelta(seconds=95),
            },
            {
                "id": 2,
                "run_id": 1,
                "campaign_id": 1,
                "contact_id": 2,
                "phone": "+442079460102",
                "attempt_no": 1,
                "state": "planned",
                "due_at": T + timedelta(hours=2),
                "reason": "window",
                "owner": None,
                "dialing_at": None,
                "request_body": None,
                "call_id": None,
                "next_poll_at": None,
                "polls": 0,
                "outcome": None,
                "call_status": None,
                "error": None,
                "end_reason": None,
                "started_at": None,
                "ended_at": None,
                "duration_seconds": None,
                "summary": None,
                "analysis_result": None,
                "messages": None,
                "raw": None,
                "created_at": T,
                "updated_at": T,
            },
        ],
        "events": [
            {
                "id": 1,
                "at": T,
                "campaign_id": 1,
                "attempt_id": None,
                "kind": "campaign.created",
                "data": {"source": "/etc/dialer/campaigns/reminders.toml"},
            },
            {
                "id": 2,
                "at": T + timedelta(seconds=95),
                "campaign_id": 1,
                "attempt_id": 1,
                "kind": "attempt.ended",
                "data": {"outcome": "completed", "state": "ended"},
            },
        ],
    },
    "0002": {
        "workers": [
            {"id": "vm:100:1a2b3c4d", "started_at": T, "heartbeat_at": T + timedelta(minutes=5)}
        ]
    },
    "0003": {"budgets": [{"key_name": "default", "tat": T + timedelta(seconds=30)}]},
    "0004": {},  # an index only
    "0005": {
        # attempts.dial_key_name: a call in flight, dialled with a key the campaign since left
        "attempts": [
            {
                "id": 3,
                "run_id": 1,
                "campaign_id": 1,
                "contact_id": 2,
                "phone": "+442079460102",
                "attempt_no": 2,
                "state": "in_flight",
                "due_at": T + timedelta(hours=3),
                "owner": "vm:100:1a2b3c4d",
                "dialing_at": T + timedelta(hours=3),
                "dial_key_name": "clinic_north",
                "call_id": "call-3",
                "next_poll_at": T + timedelta(hours=3, seconds=10),
                "polls": 0,
                "created_at": T + timedelta(hours=3),
                "updated_at": T + timedelta(hours=3),
            }
        ]
    },
    "0006": {
        # a campaign of its own mode and goal; two reminders to one number, told apart by key
        "campaigns": [
            {
                "id": 2,
                "name": "daily",
                "source": "/etc/dialer/campaigns/daily.toml",
                "definition_hash": "7e1d",
                "api_key_name": "default",
                "state": "paused",
                "repeat": "every_run",
                "done_when": ["completed", "voicemail"],
                "created_at": T + timedelta(days=2),
                "updated_at": T + timedelta(days=2),
            }
        ],
        "contacts": [
            {
                "id": 3 + n,
                "campaign_id": 2,
                "key": f"id:{patient}",
                "phone": "+31612345609",
                "name": f"Patient {patient}",
                "timezone": None,
                "variables": {"id": patient},
                "call_at": None,
                "appointment_at": None,
                "deadline": None,
                "source_line": 2 + n,
                "removed": False,
            }
            for n, patient in enumerate(("A7", "B8"))
        ],
    },
    "0008": {
        # two daemons' requests with one key, and one's with another key (a minute each: the
        # rows are told apart by their first column)
        "request_counts": [
            {
                "minute": T + timedelta(days=2, minutes=m),
                "key_name": key,
                "worker_id": worker,
                "requests": requests,
                "rate_limited": limited,
            }
            for m, key, worker, requests, limited in (
                (0, "default", "vm:100:1a2b3c4d", 42, 1),
                (1, "default", "vm:200:5e6f7a8b", 17, 0),
                (2, "clinic_north", "vm:100:1a2b3c4d", 3, 0),
            )
        ],
    },
    "0009": {
        # a campaign held by VoiceDock's refusals: its reason and first contact kept
        "campaigns": [
            {
                "id": 3,
                "name": "surveys",
                "source": "/etc/dialer/campaigns/surveys.toml",
                "definition_hash": "4b5a",
                "api_key_name": "default",
                "state": "held",
                "repeat": "once",
                "done_when": ["completed"],
                "created_at": T + timedelta(days=3),
                "updated_at": T + timedelta(days=3, minutes=2),
                "held_at": T + timedelta(days=3, minutes=2),
                "hold_reason": "422: Unknown field in assistant_override: frist_message",
                "hold_phone": "+31612345609",
                "hold_line": 7,
            }
        ],
    },
}


def _revisions() -> list[str]:
    config = AlembicConfig()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    return [script.revision for script in ScriptDirectory.from_config(config).walk_revisions()][
        ::-1
    ]


REVISIONS = _revisions()


def test_every_revision_has_its_seed_rows() -> None:
    missing = [revision for revision in REVISIONS if revision not in SEEDS]
    assert not missing, f"add SEEDS[{missing[0]!r}]: the rows to insert at that revision"
    assert set(SEEDS) <= set(REVISIONS)


def _stored(value: Any, dialect: str) -> Any:
    """A value as the store writes it: SQLite keeps UTC instants without an offset."""
    if isinstance(value, datetime) and dialect == "sqlite":
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _read(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def _seed(connection: sa.Connection, rows: Rows) -> None:
    metadata = sa.MetaData()
    dialect = connection.dialect.name
    for table_name, table_rows in rows.items():
        table = sa.Table(table_name, metadata, autoload_with=connection)
        connection.execute(
            table.insert(),
            [{k: _stored(v, dialect) for k, v in row.items()} for row in table_rows],
        )
        if dialect == "postgresql" and "id" in table.c and table.c.id.autoincrement:
            # as if the rows had been written by the dialer: the next id follows them
            connection.execute(
                sa.text(
                    f"SELECT setval(pg_get_serial_sequence('{table_name}', 'id'), "  # noqa: S608
                    f"(SELECT max(id) FROM {table_name}))"
                )
            )


def _seeded_until(revision: str) -> Rows:
    rows: Rows = {}
    for seeded in REVISIONS[: REVISIONS.index(revision) + 1]:
        for table, table_rows in SEEDS[seeded].items():
            rows.setdefault(table, []).extend(table_rows)
    return rows


@pytest.fixture
def empty_url(db_url: str) -> str:
    """A database of either backend with no table at all."""
    with Store(db_url) as store:
        store.drop_schema()
    return db_url


@pytest.mark.parametrize("start", REVISIONS)
def test_upgrade_from_every_revision_keeps_every_row(empty_url: str, start: str) -> None:
    engine = sa.create_engine(empty_url)
    try:
        for revision in REVISIONS[: REVISIONS.index(start) + 1]:
            migrate.upgrade(engine, revision)
            with engine.begin() as connection:
                _seed(connection, SEEDS[revision])
        seeded = _seeded_until(start)
        tables_then = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
        assert tables_then == set(seeded), f"tables without seed rows at {start}"

        with Store(empty_url) as store:
            store.create_schema()  # what `dialer db upgrade` does
            store.open_schema()  # and a daemon then starts on it

        with engine.connect() as connection:
            assert migrate.current_revision(engine) == REVISIONS[-1]
            diff = compare_metadata(
                MigrationContext.configure(connection, opts={"compare_type": True}),
                SQLModel.metadata,
            )
            assert diff == []
            metadata = sa.MetaData()
            for table_name, rows in seeded.items():
                table = sa.Table(table_name, metadata, autoload_with=connection)
                key = next(iter(table.primary_key.columns)).name
                found = {  # keyed as read back (a UTC instant, for request_counts' minute)
                    _read(row[key]): {k: _read(v) for k, v in row.items()}
                    for row in connection.execute(sa.select(table)).mappings()
                }
                assert len(found) == len(rows), table_name
                for row in rows:
                    kept = found[_read(row[key])]
                    assert {k: kept[k] for k in row} == {k: _read(v) for k, v in row.items()}
        _the_dialer_uses_them(empty_url, start)
    finally:
        engine.dispose()


def _the_dialer_uses_them(url: str, start: str) -> None:
    """The upgraded rows through the store's own reads and writes."""
    with Store(url) as store:
        campaign = store.campaign("reminders")
        assert campaign is not None and campaign.api_key_name == "default"
        if REVISIONS.index(start) < REVISIONS.index("0006"):
            # keys as the loader computes them (so an import after the upgrade finds its
            # contacts, and reminds nobody twice); the campaign in the default mode
            assert {c.id: c.key for c in store.contacts(campaign.id)} == {
                1: "+31612345601@2026-11-21T09:00:00+00:00",
                2: "+442079460102",
            }
            assert (campaign.repeat, campaign.done_when) == ("once", frozenset({"completed"}))
        else:
            daily = store.campaign("daily")
            assert daily is not None and daily.repeat == "every_run"
            assert [c.key for c in store.contacts(daily.id)] == ["id:A7", "id:B8"]
        if REVISIONS.index(start) >= REVISIONS.index("0009"):
            held = store.campaign("surveys")
            assert held is not None and held.hold is not None
            assert held.hold_reason == (
                "VoiceDock said: 422: Unknown field in assistant_override: frist_message "
                "(first: line 7, +31612345609)"
            )
        ended = store.attempt(1)
        assert (ended.state, ended.outcome, ended.contact.name) == (
            AttemptState.ENDED,
            "completed",
            "Sanne de Vries",
        )
        assert ended.contact.variables["dentist"] == "Dr. Bakker"
        if REVISIONS.index(start) >= REVISIONS.index("0005"):
            assert store.attempt(3).api_key_name == "clinic_north"
        else:  # rows older than the column: the campaign's key, as before
            assert ended.api_key_name == "default"
        kinds = [event.kind for event in store.iter_events(campaign.id)]
        assert kinds[:2] == ["campaign.created", "attempt.ended"]
        store.heartbeat("vm:200:5e6f7a8b", now=T + timedelta(days=1))
        store.add_event(at=T + timedelta(days=1), kind="campaign.upgraded", campaign_id=1)
        assert [event.kind for event in store.iter_events(campaign.id)][-1] == "campaign.upgraded"
