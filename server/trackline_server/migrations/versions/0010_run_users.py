"""Runs record who started them (``runs.user_id``, MLflow's run attribute of that name).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

Runs created before keep an empty user. The column is filterable (``attributes.user_id``) and
sortable like the other run attributes; searches by user scan the runs of the experiments
searched, as filters on the other unindexed attributes do.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE on both backends (SQLite has had ADD and DROP COLUMN since 3.35): a batch
# migration would copy the runs table, which its children's foreign keys forbid dropping.
def upgrade() -> None:
    op.add_column("runs", sa.Column("user_id", sa.String(256), nullable=False, server_default=""))


def downgrade() -> None:
    op.drop_column("runs", "user_id")
