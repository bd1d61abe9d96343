"""reminder keys: contacts keyed by their reminder key; a campaign's repeat mode and goal

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 15:30:00.000000
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

# Plain SQLAlchemy column types, frozen here: a migration must not change when the models do.

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: names SQLite's unnamed unique constraints get while a batch rebuilds the table
_SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}
#: PostgreSQL's own name for the unnamed UNIQUE (campaign_id, phone) of revision 0001
_PG_PHONE_UNIQUE = "contacts_campaign_id_phone_key"
#: and the name PostgreSQL gives the models' unnamed UNIQUE (campaign_id, key)
_PG_KEY_UNIQUE = "contacts_campaign_id_key_key"


def upgrade() -> None:
    # A contact is one reminder of a list exported again and again: its key (an id from the
    # user's system, or the phone, with the appointment when there is one) is what tells this
    # export's row from yesterday's. One number may now hold several reminders.
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("key", sa.String(length=300), nullable=True))
    _backfill_keys()
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("contacts", naming_convention=_SQLITE_NAMES) as batch:
            batch.alter_column("key", existing_type=sa.String(length=300), nullable=False)
            batch.drop_constraint("uq_contacts_campaign_id_phone", type_="unique")
            batch.create_unique_constraint("uq_contacts_campaign_id_key", ["campaign_id", "key"])
    else:
        op.alter_column("contacts", "key", existing_type=sa.String(length=300), nullable=False)
        op.drop_constraint(_PG_PHONE_UNIQUE, "contacts", type_="unique")
        op.create_unique_constraint(
            "contacts_campaign_id_key_key", "contacts", ["campaign_id", "key"]
        )
    # The mode a campaign file that says nothing has from now on (its import writes it anyway).
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(
            sa.Column("repeat", sa.String(length=16), nullable=False, server_default="once")
        )
        batch.add_column(
            sa.Column("done_when", sa.JSON(), nullable=False, server_default='["completed"]')
        )


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("done_when")
        batch.drop_column("repeat")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("contacts", naming_convention=_SQLITE_NAMES) as batch:
            batch.drop_constraint("uq_contacts_campaign_id_key", type_="unique")
            batch.create_unique_constraint(
                "uq_contacts_campaign_id_phone", ["campaign_id", "phone"]
            )
            batch.drop_column("key")
    else:
        op.drop_constraint(_PG_KEY_UNIQUE, "contacts", type_="unique")
        op.create_unique_constraint(_PG_PHONE_UNIQUE, "contacts", ["campaign_id", "phone"])
        op.drop_column("contacts", "key")


def _backfill_keys() -> None:
    """Each stored contact's key as the code of this revision computes it (written out here,
    frozen): otherwise the first import after the upgrade would take every contact of an
    appointment list for a new one, and remind everyone again."""
    contacts = sa.table(
        "contacts",
        sa.column("id", sa.Integer()),
        sa.column("campaign_id", sa.Integer()),
        sa.column("phone", sa.String()),
        sa.column("variables", sa.JSON()),
        sa.column("appointment_at", sa.DateTime(timezone=True)),
        sa.column("key", sa.String()),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            contacts.c.id,
            contacts.c.campaign_id,
            contacts.c.phone,
            contacts.c.variables,
            contacts.c.appointment_at,
        ).order_by(contacts.c.id)
    ).all()
    taken: set[tuple[int, str]] = set()
    updates: list[dict[str, Any]] = []
    for row in rows:
        key = _key(row.phone, row.variables, row.appointment_at, with_id=True)
        if (row.campaign_id, key) in taken:
            # two rows with one id and two numbers (the old schema allowed it): the number,
            # unique per campaign then, tells them apart
            key = _key(row.phone, row.variables, row.appointment_at, with_id=False)
        taken.add((row.campaign_id, key))
        updates.append({"contact_id": row.id, "new_key": key})
    statement = (
        sa.update(contacts)
        .where(contacts.c.id == sa.bindparam("contact_id"))
        .values(key=sa.bindparam("new_key"))
    )
    for start in range(0, len(updates), 5000):
        bind.execute(statement, updates[start : start + 5000])


def _key(phone: str, variables: Any, appointment_at: datetime | None, *, with_id: bool) -> str:
    contact_id = variables.get("id") if with_id and isinstance(variables, dict) else None
    identity = f"id:{contact_id}" if contact_id else phone
    if appointment_at is None:
        return identity
    if appointment_at.tzinfo is None:  # SQLite keeps UTC without its offset
        appointment_at = appointment_at.replace(tzinfo=UTC)
    return f"{identity}@{appointment_at.astimezone(UTC).isoformat()}"
