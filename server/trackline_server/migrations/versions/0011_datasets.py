"""Datasets and the inputs of runs (MLflow's log_input).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01

A dataset is stored once per (experiment, name, digest); a run's input names one, with the
context it was used in ("training", "eval", ...; "" for none) and tags of its own. Indexes serve
search: runs by an input's dataset name or digest, or by its context.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("source_type", sa.String(length=64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("schema", sa.Text(), nullable=True),
        sa.Column("profile", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.experiment_id"],
            name=op.f("fk_datasets_experiment_id_experiments"),
        ),
        sa.PrimaryKeyConstraint("dataset_id", name=op.f("pk_datasets")),
        sa.UniqueConstraint(
            "experiment_id", "name", "digest", name=op.f("uq_datasets_experiment_id_name_digest")
        ),
    )
    op.create_index("ix_datasets_name", "datasets", ["name"])
    op.create_index("ix_datasets_digest", "datasets", ["digest"])
    op.create_table(
        "run_inputs",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("context", sa.String(length=500), nullable=False, server_default=""),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_run_inputs_run_id_runs")
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.dataset_id"],
            name=op.f("fk_run_inputs_dataset_id_datasets"),
        ),
        sa.PrimaryKeyConstraint("run_id", "dataset_id", name=op.f("pk_run_inputs")),
    )
    op.create_index("ix_run_inputs_dataset", "run_inputs", ["dataset_id", "run_id"])
    op.create_index("ix_run_inputs_context", "run_inputs", ["context", "run_id"])
    op.create_table(
        "run_input_tags",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=500), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id", "dataset_id"],
            ["run_inputs.run_id", "run_inputs.dataset_id"],
            name=op.f("fk_run_input_tags_run_id_run_inputs"),
        ),
        sa.PrimaryKeyConstraint("run_id", "dataset_id", "key", name=op.f("pk_run_input_tags")),
    )


def downgrade() -> None:
    op.drop_table("run_input_tags")
    op.drop_index("ix_run_inputs_context", table_name="run_inputs")
    op.drop_index("ix_run_inputs_dataset", table_name="run_inputs")
    op.drop_table("run_inputs")
    op.drop_index("ix_datasets_digest", table_name="datasets")
    op.drop_index("ix_datasets_name", table_name="datasets")
    op.drop_table("datasets")
