"""attempts run state index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 13:05:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # finish_runs asks, after every outcome, whether a run still has an attempt to finish
    op.create_index("ix_attempts_run_state", "attempts", ["run_id", "state"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_attempts_run_state", table_name="attempts")
