"""Artifacts: the index of each run's visible files and the open direct uploads.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01

A file's row appears once storage holds all its bytes, checked against its size and SHA-256;
an open direct upload (presigned multipart) is a row until it is completed or aborted, so
that any replica can complete it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "artifact_files",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("update_time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_artifact_files_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", "path", name=op.f("pk_artifact_files")),
    )
    op.create_table(
        "artifact_uploads",
        sa.Column("upload_id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("part_size", sa.BigInteger(), nullable=False),
        sa.Column("storage_id", sa.Text(), nullable=False),
        sa.Column("expire_time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_artifact_uploads_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("upload_id", name=op.f("pk_artifact_uploads")),
    )


def downgrade() -> None:
    op.drop_table("artifact_uploads")
    op.drop_table("artifact_files")
