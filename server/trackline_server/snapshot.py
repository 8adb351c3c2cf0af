"""The units of work on the driver: the read-only one of ``@reads`` calls (``Snapshot``), a
consistent view of the store, and the writer's read-write ``Transaction``.

SQLite: a pool of the process's own ``sqlite3`` connections to the file, set ``query_only``,
each read in a DEFERRED transaction, which in WAL mode reads one snapshot for all its
statements and neither waits for the writer nor holds it up. Statements run on the event
loop's thread: a lookup by key takes microseconds in SQLite, far less than a hop to a driver
thread and back, which under load waits for a turn of the busy event loop. A statement whose
cost grows with the store (a search's filter over every run of some experiments) is run aside,
on a worker thread (``fetch(..., aside=True)``), so that the loop is never held for long. A
statement that meets a lock (only while another process recovers the WAL) does not wait on
the loop either: it is retried aside with the full busy timeout (``inline_sqlite.run``, the
rule the writes follow too).

PostgreSQL: asyncpg's connection from the engine's pool, in a REPEATABLE READ READ ONLY
transaction (one snapshot for every statement, like SQLite's), with asyncpg's own cache of
prepared statements.

A ``Transaction`` is the writer's flush of unary metric writes (``Database.transaction``): the
driver's connection in a read-write transaction, without SQLAlchemy's connection and
transaction objects around it, which cost more than the flush's statements (an empty
transaction through them took ~170 us, on the driver ~60 us, most of that the commit's hop to a
worker thread). Its statements go through ``sql.py`` (compiled ``Query``s), as a snapshot's do.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import inline_sqlite
from .inline_sqlite import existing_file

_IDLE_SQLITE_READERS = 32  # connections kept open between reads (more open when needed)
BATCH_ROWS = 256  # rows a snapshot's ``batches`` reads at a time


class Snapshot:
    """One read-only transaction. ``fetch`` runs SQL the dialect's compiler wrote (``sql.py``
    builds it) with positional values and returns the rows."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    async def fetch(self, sql: str, values: Sequence[Any], *, aside: bool = False) -> list[Any]:
        raise NotImplementedError

    def batches(self, sql: str, values: Sequence[Any]) -> AsyncGenerator[list[Any], None]:
        """The rows in batches of at most BATCH_ROWS, read as the caller asks for them: one
        that stops early (a reply full) has held no more than a batch beyond what it kept."""
        return self._all_at_once(sql, values)

    async def _all_at_once(
        self, sql: str, values: Sequence[Any]
    ) -> AsyncGenerator[list[Any], None]:
        yield await self.fetch(sql, values)


@dataclass(frozen=True)
class Transaction:
    """A read-write transaction open on ``driver``: an ``inline_sqlite.InlineConnection`` (in
    BEGIN IMMEDIATE) or an asyncpg connection (in READ COMMITTED, as SQLAlchemy's would be).
    Opened, committed and rolled back by ``Database.transaction``, never by its user."""

    dialect: Dialect
    driver: Any


class _SqliteSnapshot(Snapshot):
    def __init__(self, dialect: Dialect, conn: sqlite3.Connection, busy_timeout_s: float) -> None:
        super().__init__(dialect)
        self._conn = conn
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        self.begun = False

    async def fetch(self, sql: str, values: Sequence[Any], *, aside: bool = False) -> list[Any]:
        self._begin()
        return await inline_sqlite.run(self._conn, self._busy_timeout_ms, self._all, sql, values,
                                       aside=aside)  # fmt: skip

    async def batches(self, sql: str, values: Sequence[Any]) -> AsyncGenerator[list[Any], None]:
        self._begin()
        cursor = await inline_sqlite.run(self._conn, self._busy_timeout_ms, self._conn.execute,
                                         sql, values)  # fmt: skip
        try:
            while batch := cursor.fetchmany(BATCH_ROWS):
                yield batch
        finally:
            cursor.close()

    def _begin(self) -> None:
        if not self.begun:
            self._conn.execute("BEGIN")  # DEFERRED: the snapshot starts at the first read
            self.begun = True

    def _all(self, sql: str, values: Sequence[Any]) -> list[Any]:
        return self._conn.execute(sql, values).fetchall()


class SqliteReaders:
    """The pool of read-only connections to one SQLite file."""

    def __init__(self, path: str, dialect: Dialect, busy_timeout_s: float) -> None:
        self._path = path
        self._dialect = dialect
        self._busy_timeout_s = busy_timeout_s
        self._idle: list[sqlite3.Connection] = []
        self._generation = 0  # connections opened before ``discard`` are not reused

    def discard(self) -> None:
        """Closes the idle connections, and the others once their reads end: the store had a
        problem (``Database.problem``), and a connection opened then may hold a file that is
        not the one the server serves, or hold it read-only."""
        self._generation += 1
        self.close()

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Snapshot]:
        conn = self._idle.pop() if self._idle else self._open()
        generation = self._generation
        snap = _SqliteSnapshot(self._dialect, conn, self._busy_timeout_s)
        healthy = False
        try:
            yield snap
            healthy = True
        finally:
            if snap.begun:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    healthy = False
            if (
                healthy
                and generation == self._generation
                and len(self._idle) < _IDLE_SQLITE_READERS
            ):
                self._idle.append(conn)
            else:
                conn.close()

    def _open(self) -> sqlite3.Connection:
        # check_same_thread off: a statement run aside runs on a worker thread, while the
        # snapshot's coroutine waits for it (never two threads at once on one connection).
        conn = sqlite3.connect(
            existing_file(self._path), uri=True, timeout=0, isolation_level=None,
            check_same_thread=False,
        )  # fmt: skip
        conn.execute("PRAGMA query_only = ON")
        # LIKE is case-sensitive as on PostgreSQL (the writer's connections say the same).
        conn.execute("PRAGMA case_sensitive_like = ON")
        return conn

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


class EngineSnapshot(Snapshot):
    """A snapshot in a read transaction on one of the write engine's connections
    (inline_sqlite.py), for while the store has a problem (the file deleted, replaced or
    read-only under the server): they hold the file it served, and opening another
    connection now could open another file, or none."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(conn.dialect)
        self._conn = conn

    async def fetch(self, sql: str, values: Sequence[Any], *, aside: bool = False) -> list[Any]:
        raw = await self._conn.get_raw_connection()
        return list(await cast(Any, raw.driver_connection).execute_fetchall(sql, values))


class _PostgresSnapshot(Snapshot):
    def __init__(self, dialect: Dialect, driver: Any) -> None:
        super().__init__(dialect)
        self._driver = driver

    async def fetch(self, sql: str, values: Sequence[Any], *, aside: bool = False) -> list[Any]:
        # asyncpg decodes rows in C, off nothing: ``aside`` changes nothing here.
        return cast(list[Any], await self._driver.fetch(sql, *values))

    async def batches(self, sql: str, values: Sequence[Any]) -> AsyncGenerator[list[Any], None]:
        cursor = await self._driver.cursor(sql, *values)  # in the snapshot's transaction
        while batch := await cursor.fetch(BATCH_ROWS):
            yield batch


@asynccontextmanager
async def postgres_snapshot(engine: AsyncEngine) -> AsyncIterator[Snapshot]:
    """A REPEATABLE READ READ ONLY transaction on a pooled asyncpg connection, rolled back at
    the end. SQLAlchemy's adapter does not see it (it begins its own lazily, on a first
    statement through it, and none goes through it here)."""
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = cast(Any, raw.driver_connection)
        transaction = driver.transaction(isolation="repeatable_read", readonly=True)
        await transaction.start()
        try:
            yield _PostgresSnapshot(engine.dialect, driver)
        finally:
            try:
                await transaction.rollback()
            except Exception:
                # The pool's reset would not end a transaction its adapter never saw begin:
                # a connection that cannot roll back is thrown away instead.
                await conn.invalidate()
