"""The migrated schema equals the models' schema, and the daemon refuses a foreign revision."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from dialer import migrate
from dialer.errors import SchemaMismatch, StoreError
from dialer.store import Store


def test_migrations_produce_exactly_the_models(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            diff = compare_metadata(
                MigrationContext.configure(connection, opts={"compare_type": True}),
                SQLModel.metadata,
            )
        assert diff == []
        migrate.check(engine)
    finally:
        engine.dispose()


def test_check_refuses_missing_older_and_newer_schemas(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/m.db"  # type: ignore[str-bytes-safe]
    engine = sa.create_engine(url)
    try:
        with pytest.raises(SchemaMismatch, match="dialer db upgrade"):
            migrate.check(engine)
        with Store(url) as store:
            store.create_schema()
            store.create_schema()  # idempotent
            store.check_schema()
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff_future'"))
        with pytest.raises(SchemaMismatch, match="newer"):
            migrate.check(engine)
    finally:
        engine.dispose()


def test_daemon_start_creates_a_fresh_schema_but_refuses_an_old_one(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/d.db"  # type: ignore[str-bytes-safe]
    with Store(url) as store:
        store.open_schema()  # empty database: created
        store.open_schema()  # current: accepted
    old = f"sqlite:///{tmp_path}/old.db"  # type: ignore[str-bytes-safe]
    engine = sa.create_engine(old)
    try:
        migrate.upgrade(engine, "0001")  # a database left by an older dialer
        url = old
        with Store(url) as store, pytest.raises(SchemaMismatch, match="older"):
            store.open_schema()
        with Store(url) as store:
            store.create_schema()  # what `dialer db upgrade` does
            store.open_schema()
    finally:
        engine.dispose()


def _start_together(url: str, daemons: int) -> list[BaseException]:
    """``daemons`` stores opening the schema at the same instant; what they raised."""
    barrier = threading.Barrier(daemons)
    failures: list[BaseException] = []

    def start() -> None:
        with Store(url) as store:
            barrier.wait()
            try:
                store.open_schema()
            except StoreError as exc:
                failures.append(exc)

    threads = [threading.Thread(target=start) for _ in range(daemons)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


@pytest.mark.postgres
def test_daemons_started_together_on_an_empty_postgres_database_all_start(pg_url: str) -> None:
    """Each finds no schema and creates it: without a lock all but one failed on
    DuplicateTable (5 starts in 9 in a review)."""
    for _ in range(3):
        with Store(pg_url) as store:
            store.drop_schema()
        assert _start_together(pg_url, 4) == []


def test_upgrading_to_reminder_keys_keys_every_stored_contact_as_the_code_does(
    db_url: str,
) -> None:
    """Revision 0006 keys the contacts stored before it exactly as the loader keys them now:
    otherwise the first import after an upgrade would take every appointment on the list for
    a new one and remind everyone again."""
    from datetime import UTC, datetime

    from dialer.policy.reminders import reminder_key

    engine = sa.create_engine(db_url)
    visit = datetime(2027, 3, 2, 13, 0, tzinfo=UTC)
    rows = [  # (phone, variables, appointment)
        ("+31612340001", {"name": "A"}, None),
        ("+31612340002", {"name": "B"}, visit),
        ("+31612340003", {"name": "C", "id": "A-7"}, visit),
        ("+31612340004", {"name": "D", "id": "A-7"}, visit),  # the old schema let two share it
    ]
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
            SQLModel.metadata.drop_all(connection)
        migrate.upgrade(engine, "0005")
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO campaigns (id, name, source, definition_hash, api_key_name,"
                    " state, created_at, updated_at) VALUES (1, 'r', 'r.toml', 'h', 'default',"
                    " 'active', :t, :t)"
                ),
                {"t": visit},
            )
            for i, (phone, variables, appointment) in enumerate(rows, start=1):
                connection.execute(
                    sa.text(
                        "INSERT INTO contacts (id, campaign_id, phone, variables, appointment_at,"
                        " source_line, removed) VALUES (:id, 1, :phone, :variables, :at, :id,"
                        " false)"
                    ).bindparams(sa.bindparam("variables", type_=sa.JSON())),
                    {"id": i, "phone": phone, "variables": variables, "at": appointment},
                )
        migrate.upgrade(engine)
        with engine.connect() as connection:
            keys = connection.execute(sa.text("SELECT key FROM contacts ORDER BY id")).scalars()
            assert list(keys) == [
                reminder_key(phone=rows[0][0], contact_id=None, appointment_at=None),
                reminder_key(phone=rows[1][0], contact_id=None, appointment_at=visit),
                reminder_key(phone=rows[2][0], contact_id="A-7", appointment_at=visit),
                reminder_key(phone=rows[3][0], contact_id=None, appointment_at=visit),
            ]
        migrate.check(engine)
    finally:
        engine.dispose()
