"""Schema migrations (Alembic) and the start-up check that the schema is the expected one."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from dialer.errors import SchemaMismatch, StoreError

MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@cache  # the scripts do not change while the process runs; /readyz asks on every probe
def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "the project ships at least one migration"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


#: the advisory lock that lets one daemon at a time migrate a PostgreSQL database
_MIGRATION_LOCK = (0x44_42_55_50, 0)  # "DBUP"


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = _alembic_config()
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            # SQLite alters a table by copying it (Alembic's batch mode) and dropping the old
            # copy: with foreign keys on, dropping a table other tables' rows reference fails
            # (contacts in 0006, under every attempt). Off for the migration, checked at its
            # end instead; SQLite ignores the pragma inside a transaction, hence before one.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                if engine.dialect.name == "postgresql":
                    # Daemons started together on an empty database would each create the
                    # tables (DuplicateTable for all but one): the others wait here, then find
                    # it done.
                    connection.execute(sa.select(sa.func.pg_advisory_xact_lock(*_MIGRATION_LOCK)))
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, revision)
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise StoreError(
                            f"the migration to {revision} left {len(broken)} rows whose "
                            f"references do not hold (first: {tuple(broken[0])})"
                        )
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def revision(engine: Engine, message: str) -> None:
    """Developer helper: autogenerate a migration from the models (`python -m dialer.migrate`)."""
    cfg = _alembic_config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.revision(cfg, message=message, autogenerate=True)


def check(engine: Engine) -> None:
    """Refuse to run on a schema older or newer than this code expects."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaMismatch("the database has no dialer schema yet: run `dialer db upgrade`")
    known = {
        rev.revision for rev in ScriptDirectory.from_config(_alembic_config()).walk_revisions()
    }
    if current in known:
        raise SchemaMismatch(
            f"the database schema ({current}) is older than this dialer ({head}): "
            "run `dialer db upgrade`"
        )
    raise SchemaMismatch(
        f"the database schema ({current}) is newer than this dialer knows ({head}): "
        "upgrade the dialer before starting it on this database"
    )


if __name__ == "__main__":
    import sys

    import sqlalchemy as sa

    revision(sa.create_engine(sys.argv[1]), sys.argv[2])
