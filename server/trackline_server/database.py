"""Engine set-up and the unit of work: one transaction per RPC, committed at the edge."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from sqlalchemy import Executable, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

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
        """A read-only transaction (rolled back at exit). On SQLite it begins DEFERRED: in WAL
        mode it reads a snapshot and neither waits for the writer nor holds it up."""
        async with self.engine.connect() as conn:
            if self.is_sqlite:
                await conn.execution_options(**{_READ_ONLY: True})
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


# Hot statements on SQLite go to the driver in one call each. Through SQLAlchemy's aiosqlite
# adapter a statement costs three or four hops to the driver's thread and back (cursor,
# execute, fetch, close), and each hop waits for a turn of the event loop, which under
# streaming load is busy with gRPC reads: the group-commit writer, whose flushes run one
# after another, spent more time waiting for those turns than the database spent working.


async def fetch_all(conn: AsyncConnection, stmt: Executable) -> list[Any]:
    """The rows of a SELECT, as tuples, in the caller's transaction. Column values come back
    as the driver returns them (no SQLAlchemy result types): for integer and text columns."""
    if conn.dialect.name != "sqlite":
        return list((await conn.execute(stmt)).tuples())
    compiled = _compile(conn, stmt, compile_kwargs={"render_postcompile": True})
    params = [compiled.params[name] for name in compiled.positiontup or ()]
    return list(await (await _driver(conn)).execute_fetchall(compiled.string, params))


async def execute_many(
    conn: AsyncConnection, stmt: Executable, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Runs a statement once per row (dicts with the same keys), in the caller's
    transaction. Values go to the driver as they are (no SQLAlchemy bind processing): for
    integer, float, text and bytes columns."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        await conn.execute(stmt, list(rows))
        return
    compiled = _compile(conn, stmt, column_keys=list(rows[0]))
    names = list(compiled.positiontup or ())
    params = [[row[name] for name in names] for row in rows]
    driver = await _driver(conn)
    if len(params) == 1:
        await driver.execute(compiled.string, params[0])
    else:
        await driver.executemany(compiled.string, params)


def _compile(conn: AsyncConnection, stmt: Executable, **kwargs: Any) -> SQLCompiler:
    """``stmt`` as SQLite's SQL with positional parameters."""
    compiled = cast(ClauseElement, stmt).compile(dialect=conn.dialect, **kwargs)
    return cast(SQLCompiler, compiled)


async def _driver(conn: AsyncConnection) -> Any:
    raw = await conn.get_raw_connection()
    return raw.driver_connection


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


_READ_ONLY = "trackline_read_only"


def _sqlite_begin(conn: Any) -> None:
    # Every transaction but a ``Database.read`` takes the write lock up front: a DEFERRED one
    # that wrote later could fail with SQLITE_BUSY instead of waiting its turn.
    # Straight to the driver connection: one hop to its thread instead of three.
    dbapi = conn.connection.dbapi_connection
    dbapi.execute("BEGIN" if conn.get_execution_options().get(_READ_ONLY) else "BEGIN IMMEDIATE")
