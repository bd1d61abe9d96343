"""status page: request counts per minute, the campaign indexes of its pages

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-02 15:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Column types are the plain SQLAlchemy types whose DDL the models' types emit (sqlmodel's
# AutoString with a max_length: VARCHAR(n); the store's UTCDateTime: a DateTime with time
# zone), frozen here: a migration must not change when the models do.

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None

#: (name, columns) of the attempts indexes the status page's reads seek in
_ATTEMPT_INDEXES = (
    ("ix_attempts_campaign_outcome", ["campaign_id", "state", "outcome", "id"]),
    ("ix_attempts_campaign_state", ["campaign_id", "state", "id", "reason"]),
    ("ix_attempts_campaign_due", ["campaign_id", "state", "due_at"]),
    ("ix_attempts_campaign_dialing", ["campaign_id", "dialing_at"]),
)


def upgrade() -> None:
    # Requests per API key, minute and daemon: each daemon adds its own once a minute, so the
    # page any daemon serves shows the whole deployment's use of each key's budget.
    op.create_table(
        "request_counts",
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_name", sa.String(length=200), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("rate_limited", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("minute", "key_name", "worker_id"),
    )
    for name, columns in _ATTEMPT_INDEXES:
        op.create_index(name, "attempts", columns, unique=False)


def downgrade() -> None:
    for name, _ in reversed(_ATTEMPT_INDEXES):
        op.drop_index(name, table_name="attempts")
    op.drop_table("request_counts")
