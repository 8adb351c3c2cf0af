"""An index on applied_requests.applied_time, so request ids past their retention are pruned
by a range scan instead of a scan of the whole table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_applied_requests_applied_time", "applied_requests", ["applied_time"])


def downgrade() -> None:
    op.drop_index("ix_applied_requests_applied_time", table_name="applied_requests")
