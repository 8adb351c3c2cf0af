"""Engine set-up and the unit of work: one transaction per RPC, committed at the edge."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from . import migrate

log = logging.getLogger("trackline.database")


class Database:
    """Owns the engine. On SQLite, writes are serialised in-process (one writer at a time is
    all SQLite allows) and run under BEGIN IMMEDIATE; WAL + synchronous=FULL make every
    committed transaction survive a process kill."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self._write_lock = asyncio.Lock()
        self._checkpoints: asyncio.Task[None] | None = None
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)

    async def create_schema(self) -> None:
        """Creates or upgrades the schema to the newest migration."""
        await migrate.upgrade(self.engine)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A read-write transaction; commits when the block exits without raising."""
        if self.is_sqlite:
            async with self._write_lock, self.engine.begin() as conn:
                yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    def start_checkpoints(self, interval: float = 1.0) -> None:
        """Checkpoints the SQLite WAL every ``interval`` seconds until ``close``."""
        if self.is_sqlite:
            self._checkpoints = asyncio.create_task(self._checkpoint_loop(interval))

    async def _checkpoint_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.checkpoint()
            except Exception:  # a busy database: the next round catches up
                log.warning("WAL checkpoint failed", exc_info=True)

    async def checkpoint(self) -> None:
        """Copies committed WAL pages into the SQLite database file without blocking writers
        (a PASSIVE checkpoint, on a connection of its own); nothing on PostgreSQL."""
        if self.is_sqlite:
            async with self.engine.connect() as conn:
                # On the driver's connection: through SQLAlchemy the pragma would run inside
                # the BEGIN IMMEDIATE of the "begin" hook, and a checkpoint cannot.
                raw = await conn.get_raw_connection()
                driver: Any = raw.driver_connection
                await driver.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The driver's own transaction handling is turned off; the "begin" hook emits BEGIN.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    # Commits do not checkpoint (copying the WAL into the database file would stall the
    # committing writer); ``checkpoint`` does it from another connection's thread instead.
    cur.execute("PRAGMA wal_autocheckpoint=0")
    cur.execute("PRAGMA foreign_keys=ON")
    # LIKE is case-sensitive as on PostgreSQL; ILIKE is the case-insensitive form.
    cur.execute("PRAGMA case_sensitive_like=ON")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
