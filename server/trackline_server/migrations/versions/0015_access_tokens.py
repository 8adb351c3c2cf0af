"""Access tokens with roles and scopes, and the principal of registry changes.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02

``access_tokens`` keeps a SHA-256 per secret, never the secret. Model versions record the
token that created them (``user_id``, MLflow's field of that name) and registry events the
token of the change (``actor``); rows from before keep "".
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "access_tokens",
        sa.Column("token_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.Integer(), nullable=False),
        sa.Column("experiments", sa.Text(), server_default="[]", nullable=False),
        sa.Column("models", sa.Text(), server_default="[]", nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("expiration_time", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("revocation_time", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_by", sa.String(length=256), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_access_tokens")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_access_tokens_secret_hash")),
    )
    op.create_index(
        "ix_access_tokens_active_name",
        "access_tokens",
        ["name"],
        unique=True,
        sqlite_where=sa.text("revocation_time = 0"),
        postgresql_where=sa.text("revocation_time = 0"),
    )
    # Plain ALTER TABLE on both backends, as in 0010.
    op.add_column(
        "model_versions",
        sa.Column("user_id", sa.String(256), nullable=False, server_default=""),
    )
    op.add_column(
        "registry_events", sa.Column("actor", sa.String(256), nullable=False, server_default="")
    )


def downgrade() -> None:
    op.drop_column("registry_events", "actor")
    op.drop_column("model_versions", "user_id")
    op.drop_index("ix_access_tokens_active_name", table_name="access_tokens")
    op.drop_table("access_tokens")
