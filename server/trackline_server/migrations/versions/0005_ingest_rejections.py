"""Refused stream batches, remembered for the writer's next handshake.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ingest_rejections",
        sa.Column("writer_id", sa.String(128), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ingest_rejections")
