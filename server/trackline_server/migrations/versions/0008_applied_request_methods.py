"""Request ids for every retryable create, not only LogBatch: applied_requests gains the
method that applied the id, and its run_id becomes ``resource``, the id of what the request
wrote (the run of a LogBatch) or created (a CreateRun's run, a CreateExperiment's experiment).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

Existing rows are LogBatch ids. SQLite copies the table (batch mode) to widen the column.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("applied_requests") as batch:
        batch.alter_column(
            "run_id",
            new_column_name="resource",
            existing_type=sa.String(32),
            type_=sa.String(500),
            existing_nullable=False,
        )
        batch.add_column(
            sa.Column("method", sa.String(64), nullable=False, server_default="LogBatch")
        )


def downgrade() -> None:
    op.execute("DELETE FROM applied_requests WHERE method <> 'LogBatch'")
    with op.batch_alter_table("applied_requests") as batch:
        batch.drop_column("method")
        batch.alter_column(
            "resource",
            new_column_name="run_id",
            existing_type=sa.String(500),
            type_=sa.String(32),
            existing_nullable=False,
        )
