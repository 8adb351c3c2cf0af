"""Alembic environment. ``trackline_server.migrate.upgrade`` hands in a connection that is already
in a transaction, as ``config.attributes["connection"]``; the developer commands of ``python -m
trackline_server.migrate`` instead open one on ``config.attributes["store_uri"]``."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from trackline_server.database import Database
from trackline_server.models import metadata

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite has almost no ALTER TABLE: batch operations copy the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    # Inside the caller's transaction this opens none: all revisions commit together.
    with context.begin_transaction():
        context.run_migrations()


async def run_on_store_uri(url: str) -> None:
    # Database installs the SQLite connection hooks (BEGIN IMMEDIATE, foreign keys) the server uses.
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(run_migrations)
    finally:
        await db.close()


def run_offline(url: str) -> None:
    """``--sql``: print the DDL instead of running it."""
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
elif context.is_offline_mode():
    run_offline(config.attributes["store_uri"])
else:
    asyncio.run(run_on_store_uri(config.attributes["store_uri"]))
