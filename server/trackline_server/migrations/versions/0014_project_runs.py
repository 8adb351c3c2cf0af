"""Project runs: the durable queue of ProjectService, the labels runs require, their logs.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01

A run's ``seq`` orders the queue; workers lease the oldest QUEUED run whose labels they hold
(``ix_project_runs_state_seq``), and the lease checker finds expired leases by state too.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "project_runs",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_run_id", sa.String(length=32), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("version", sa.String(length=500), nullable=False),
        sa.Column("entry_point", sa.String(length=500), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("experiment_id", sa.String(length=64), nullable=False),
        sa.Column("experiment_name", sa.String(length=500), nullable=False),
        sa.Column("run_name", sa.String(length=500), nullable=False),
        sa.Column("env_manager", sa.String(length=32), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("worker_id", sa.String(length=256), server_default="", nullable=False),
        sa.Column("lease_id", sa.String(length=32), server_default="", nullable=False),
        sa.Column("lease_expiry_time", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("lease_ms", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cancel_requested", sa.Integer(), server_default="0", nullable=False),
        sa.Column("tracking_run_id", sa.String(length=32), server_default="", nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("status_message", sa.Text(), server_default="", nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("start_time", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("end_time", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("log_line_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_project_runs")),
        sa.UniqueConstraint("project_run_id", name=op.f("uq_project_runs_project_run_id")),
    )
    op.create_index("ix_project_runs_state_seq", "project_runs", ["state", "seq"])
    op.create_index("ix_project_runs_experiment_id_seq", "project_runs", ["experiment_id", "seq"])
    op.create_table(
        "project_run_labels",
        sa.Column("run_seq", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_seq"],
            ["project_runs.seq"],
            name=op.f("fk_project_run_labels_run_seq_project_runs"),
        ),
        sa.PrimaryKeyConstraint("run_seq", "label", name=op.f("pk_project_run_labels")),
    )
    op.create_table(
        "project_run_logs",
        sa.Column("run_seq", sa.Integer(), nullable=False),
        sa.Column("line", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_seq"],
            ["project_runs.seq"],
            name=op.f("fk_project_run_logs_run_seq_project_runs"),
        ),
        sa.PrimaryKeyConstraint("run_seq", "line", name=op.f("pk_project_run_logs")),
    )


def downgrade() -> None:
    op.drop_table("project_run_logs")
    op.drop_table("project_run_labels")
    op.drop_index("ix_project_runs_experiment_id_seq", table_name="project_runs")
    op.drop_index("ix_project_runs_state_seq", table_name="project_runs")
    op.drop_table("project_runs")
