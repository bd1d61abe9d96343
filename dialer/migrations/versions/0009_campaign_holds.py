"""campaign holds: a held campaign keeps since when, VoiceDock's message and the first contact

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 18:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Column types frozen as the models' types emit them (see 0008): a migration must not change
# when the models do. The state column is free text: "held" needs no change of its own.

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("held_at", sa.DateTime(timezone=True)),
    ("hold_reason", sa.String(length=2000)),
    ("hold_phone", sa.String(length=32)),
    ("hold_line", sa.Integer()),
)


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        for name, type_ in _COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    # A held campaign goes back to active: older code knows no "held" (it would not dial it,
    # and nothing would say why).
    op.execute("UPDATE campaigns SET state = 'active' WHERE state = 'held'")
    with op.batch_alter_table("campaigns") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
