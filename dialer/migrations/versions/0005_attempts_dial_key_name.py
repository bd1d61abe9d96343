"""attempts dial key name

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 12:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Column types are the plain SQLAlchemy types whose DDL the models' types emitted when this
# revision was written (sqlmodel's AutoString: VARCHAR; the store's UTCDateTime: a DateTime
# with time zone), frozen here: a migration must not change when the models do.

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The API key a dial was sent with: its GETs and reconciliation's list must use that key's
    # organisation even after the campaign file names another key.
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("dial_key_name", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("dial_key_name")
