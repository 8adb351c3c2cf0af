"""The Model Registry: registered models, versions, tags, aliases and the event log.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01

A model's versions are numbered from its ``next_version`` (taken under the model row's lock,
so concurrent creates never repeat nor skip a number); every change is a row of
registry_events whose id comes from registry_counters' 'events' row, created here at 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registered_models",
        sa.Column("model_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_updated_time", sa.BigInteger(), nullable=False),
        sa.Column("next_version", sa.BigInteger(), server_default="1", nullable=False),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_registered_models")),
        sa.UniqueConstraint("name", name=op.f("uq_registered_models_name")),
    )
    op.create_table(
        "registry_counters",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_registry_counters")),
    )
    op.execute("INSERT INTO registry_counters (name, value) VALUES ('events', 0)")
    op.create_table(
        "registry_events",
        sa.Column("event_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("alias", sa.String(length=256), server_default="", nullable=False),
        sa.Column("key", sa.String(length=500), server_default="", nullable=False),
        sa.Column("stage", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status", sa.Integer(), server_default="0", nullable=False),
        sa.Column("previous_name", sa.String(length=500), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_registry_events")),
    )
    op.create_index("ix_registry_events_time", "registry_events", ["time"])
    op.create_table(
        "model_versions",
        sa.Column("version_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_updated_time", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=64), server_default="", nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("status_message", sa.Text(), server_default="", nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.model_id"],
            name=op.f("fk_model_versions_model_id_registered_models"),
        ),
        sa.PrimaryKeyConstraint("version_id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("model_id", "version", name=op.f("uq_model_versions_model_id_version")),
    )
    op.create_index("ix_model_versions_name_version", "model_versions", ["name", "version"])
    op.create_index("ix_model_versions_run_id", "model_versions", ["run_id"])
    op.create_table(
        "registered_model_tags",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=500), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.model_id"],
            name=op.f("fk_registered_model_tags_model_id_registered_models"),
        ),
        sa.PrimaryKeyConstraint("model_id", "key", name=op.f("pk_registered_model_tags")),
    )
    op.create_table(
        "model_aliases",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(length=256), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.model_id"],
            name=op.f("fk_model_aliases_model_id_registered_models"),
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.version_id"],
            name=op.f("fk_model_aliases_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("model_id", "alias", name=op.f("pk_model_aliases")),
    )
    op.create_index("ix_model_aliases_version_id", "model_aliases", ["version_id"])
    op.create_table(
        "model_version_tags",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=500), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.version_id"],
            name=op.f("fk_model_version_tags_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("version_id", "key", name=op.f("pk_model_version_tags")),
    )


def downgrade() -> None:
    op.drop_table("model_version_tags")
    op.drop_index("ix_model_aliases_version_id", table_name="model_aliases")
    op.drop_table("model_aliases")
    op.drop_table("registered_model_tags")
    op.drop_index("ix_model_versions_run_id", table_name="model_versions")
    op.drop_index("ix_model_versions_name_version", table_name="model_versions")
    op.drop_table("model_versions")
    op.drop_index("ix_registry_events_time", table_name="registry_events")
    op.drop_table("registry_events")
    op.drop_table("registry_counters")
    op.drop_table("registered_models")
