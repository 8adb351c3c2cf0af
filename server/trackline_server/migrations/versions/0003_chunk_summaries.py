"""Chunk summaries: a nullable ``summary`` blob per metric chunk (see metrics/summary.py).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

Existing chunks keep NULL and are read from their points, as before. On SQLite the table is
rebuilt so that ``summary`` comes before ``points``: a column stored after a large blob is
reached only through the blob's overflow pages, which would make reading summaries as slow
as reading the points. The rebuild copies every row once (SQLite's own INSERT ... SELECT, at
about disk speed). PostgreSQL keeps large values out of line, so there the column is simply
added.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    column = sa.Column("summary", sa.LargeBinary(), nullable=True)
    if op.get_bind().dialect.name != "sqlite":
        op.add_column("metric_chunks", column)
        return
    with op.batch_alter_table("metric_chunks", recreate="always") as batch:
        batch.add_column(column, insert_before="points")


def downgrade() -> None:
    with op.batch_alter_table("metric_chunks") as batch:
        batch.drop_column("summary")
