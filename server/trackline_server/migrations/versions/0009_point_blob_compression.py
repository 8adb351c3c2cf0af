"""PostgreSQL compresses metric chunks and log records with lz4, not pglz.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

A chunk's columns are packed 8-byte integers and floats (codec.py), which PostgreSQL's
default TOAST compression, pglz, squeezes slowly: dense streamed ingest was held to ~1.0M
points/s by it. lz4 (PostgreSQL 14+, built with it, as the Debian and official packages
are) compressed the same data to ~1.7 bytes a point at 11M points/s on the same machine;
storing the blobs uncompressed (STORAGE EXTERNAL, the fallback where lz4 is missing) reached
~5M, limited by writing 24 bytes a point. Only values written from now on are affected; on
SQLite this migration does nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (("metric_chunks", "points"), ("metric_chunks", "summary"), ("metric_log", "body"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in _COLUMNS:
        # Dynamic SQL, so that a server without lz4 (or older than 14, without the syntax)
        # fails at run time, where the handler catches it.
        op.execute(f"""
            DO $$ BEGIN
                EXECUTE 'ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4';
            EXCEPTION WHEN OTHERS THEN
                EXECUTE 'ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE EXTERNAL';
            END $$
        """)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in _COLUMNS:
        op.execute(f"""
            DO $$ BEGIN
                EXECUTE 'ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION default';
            EXCEPTION WHEN OTHERS THEN
                NULL;
            END $$
        """)
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE EXTENDED")
