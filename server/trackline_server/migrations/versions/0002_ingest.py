"""Streamed ingestion: ranked chunks in protobuf wire form, and writers' high-water marks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Chunks written by 0001 kept three little-endian packed columns; they are converted in place,
in batches, into the ``points`` blob (a RankedSeries with fields 4, 5, 6). All existing points
get rank 0.
"""

from __future__ import annotations

import array
import sys
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from trackline.v1 import ingest_pb2

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 500


def _unpack(blob: bytes, code: str) -> list[Any]:
    """Reads a 0001-format column (packed little-endian int64 'q' or float64 'd')."""
    arr = array.array(code)
    arr.frombytes(blob)
    if sys.byteorder != "little":
        arr.byteswap()
    return arr.tolist()


def upgrade() -> None:
    op.create_table(
        "ingest_writers",
        sa.Column("writer_id", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("writer_id", name=op.f("pk_ingest_writers")),
    )
    with op.batch_alter_table("metric_chunks") as batch:
        batch.add_column(sa.Column("rank", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("points", sa.LargeBinary(), nullable=True))

    bind = op.get_bind()
    chunks = sa.table(
        "metric_chunks",
        sa.column("chunk_id", sa.Integer),
        sa.column("steps", sa.LargeBinary),
        sa.column("timestamps", sa.LargeBinary),
        sa.column("values", sa.LargeBinary),
        sa.column("points", sa.LargeBinary),
    )
    last = -1
    while True:
        rows = bind.execute(
            sa.select(chunks.c.chunk_id, chunks.c.steps, chunks.c.timestamps, chunks.c["values"])
            .where(chunks.c.chunk_id > last)
            .order_by(chunks.c.chunk_id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        for chunk_id, steps, stamps, values in rows:
            msg = ingest_pb2.RankedSeries(
                steps=_unpack(steps, "q"),
                timestamps=_unpack(stamps, "q"),
                values=_unpack(values, "d"),
            )
            bind.execute(
                sa.update(chunks)
                .where(chunks.c.chunk_id == chunk_id)
                .values(points=msg.SerializeToString())
            )
        last = rows[-1][0]

    with op.batch_alter_table("metric_chunks") as batch:
        batch.alter_column("points", existing_type=sa.LargeBinary(), nullable=False)
        batch.drop_column("steps")
        batch.drop_column("timestamps")
        batch.drop_column("values")


def downgrade() -> None:
    with op.batch_alter_table("metric_chunks") as batch:
        batch.add_column(sa.Column("steps", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("timestamps", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("values", sa.LargeBinary(), nullable=True))
    bind = op.get_bind()
    chunks = sa.table(
        "metric_chunks",
        sa.column("chunk_id", sa.Integer),
        sa.column("steps", sa.LargeBinary),
        sa.column("timestamps", sa.LargeBinary),
        sa.column("values", sa.LargeBinary),
        sa.column("points", sa.LargeBinary),
    )
    for chunk_id, points in bind.execute(sa.select(chunks.c.chunk_id, chunks.c.points)).all():
        msg = ingest_pb2.RankedSeries.FromString(points)
        bind.execute(
            sa.update(chunks)
            .where(chunks.c.chunk_id == chunk_id)
            .values(
                steps=array.array("q", msg.steps).tobytes(),
                timestamps=array.array("q", msg.timestamps).tobytes(),
                values=array.array("d", msg.values).tobytes(),
            )
        )
    with op.batch_alter_table("metric_chunks") as batch:
        for name in ("steps", "timestamps", "values"):
            batch.alter_column(name, existing_type=sa.LargeBinary(), nullable=False)
        batch.drop_column("points")
        batch.drop_column("rank")
    op.drop_table("ingest_writers")
