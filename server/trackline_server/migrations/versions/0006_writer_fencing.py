"""Writer identity and fencing: each stream writer's key hash, owner and epoch.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28

Existing writers keep their high-water marks, with no key hash (the first handshake with a
key claims them) and epoch 0. The columns are added in place on both backends (SQLite adds a
column with a constant default without copying the table).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ingest_writers", sa.Column("key_hash", sa.String(64), nullable=True))
    op.add_column("ingest_writers", sa.Column("owner", sa.String(64), nullable=True))
    op.add_column(
        "ingest_writers",
        sa.Column("epoch", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    with op.batch_alter_table("ingest_writers") as batch:
        batch.drop_column("epoch")
        batch.drop_column("owner")
        batch.drop_column("key_hash")
