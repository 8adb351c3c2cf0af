"""The driver of SQLite writes: aiosqlite's interface, with statements run on the event loop.

Through aiosqlite every call hops to the connection's thread and back, and each hop waits for
a turn of the event loop, which is busy with gRPC under load: a SQLAlchemy statement takes
four (cursor, execute, fetch, close), a one-point LogBatch's flush nine, and at 16 concurrent
calls those hops, not SQLite, were most of a flush (a hop there took 0.3-3 ms; a statement of
a flush takes microseconds in SQLite). ``InlineConnection`` gives SQLAlchemy's aiosqlite
dialect (through the engine's ``async_creator``) the same interface over a plain ``sqlite3``
connection, and runs a statement on the loop's thread unless it could hold the loop:

- COMMIT, which syncs the WAL to disk (``synchronous=FULL``), runs on a worker thread;
- so do statements that carry many rows or large values (a compaction's chunks);
- a statement that meets a lock held by another process (busy) is not waited for on the loop:
  the connection's busy timeout is 0, and the statement is retried on a worker thread with the
  full timeout.

The connection is used by one coroutine at a time (the engine's pool hands it out), so the
loop's thread and a worker thread never use it at once. Reads of the metric store, which can
return megabytes, use aiosqlite's own connections (``Database.read``), and so do checkpoints.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import aiosqlite

T = TypeVar("T")

_ASIDE_ROWS = 64  # an executemany of more rows runs on a worker thread
_ASIDE_BYTES = 256 * 1024  # so does a statement whose text and bytes values are this large


def existing_file(path: str, create: bool = False) -> str:
    """The URI that opens the SQLite file at ``path`` only if it exists (unless ``create``):
    a connection opened after the file was deleted under the server must fail, not create an
    empty database (and serve it)."""
    return f"file:{quote(os.path.abspath(path))}?mode={'rwc' if create else 'rw'}"


def connector(
    path: str, busy_timeout_s: float, create: Callable[[], bool]
) -> Callable[[], Awaitable[InlineConnection]]:
    """The engine's ``async_creator`` for the SQLite file at ``path``, created when absent
    only while ``create()`` says so (before the server took the file as its own)."""

    async def connect() -> InlineConnection:
        conn = sqlite3.connect(
            existing_file(path, create()), uri=True, timeout=0, isolation_level=None,
            check_same_thread=False,
        )  # fmt: skip
        return InlineConnection(conn, busy_timeout_s)

    return connect


def aiosqlite_connector(
    path: str, busy_timeout_s: float, create: Callable[[], bool]
) -> Callable[[], Awaitable[Any]]:
    """The ``async_creator`` of an aiosqlite engine for the file at ``path`` (as
    ``connector``)."""

    async def connect() -> Any:
        conn = aiosqlite.connect(existing_file(path, create()), uri=True, timeout=busy_timeout_s)
        conn._thread.daemon = True  # as SQLAlchemy's dialect does: exit does not wait for it
        return await conn

    return connect


async def run(
    conn: sqlite3.Connection,
    busy_timeout_ms: int,
    fn: Callable[..., T],
    *args: Any,
    aside: bool = False,
) -> T:
    """``fn(*args)``, a call on ``conn`` (opened with a busy timeout of 0), on this thread; on
    a worker thread when ``aside``, or when it meets a lock another process holds: there it
    waits for the lock up to ``busy_timeout_ms``. The one rule for every statement the server
    runs on the event loop's thread (these writes, ``snapshot.py``'s reads)."""
    if not aside:
        try:
            return fn(*args)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
    return await asyncio.to_thread(_waiting, conn, busy_timeout_ms, fn, *args)


def _waiting(conn: sqlite3.Connection, busy_timeout_ms: int, fn: Callable[..., T], *args: Any) -> T:
    conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    try:
        return fn(*args)
    finally:
        conn.execute("PRAGMA busy_timeout = 0")


class _Result:
    """What aiosqlite's ``execute`` returns: awaitable, and an async context manager that
    closes the cursor."""

    def __init__(self, coro: Coroutine[Any, Any, InlineCursor]) -> None:
        self._coro = coro
        self._cursor: InlineCursor | None = None

    def __await__(self) -> Generator[Any, None, InlineCursor]:
        return self._coro.__await__()

    async def __aenter__(self) -> InlineCursor:
        self._cursor = await self._coro
        return self._cursor

    async def __aexit__(self, *exc: object) -> None:
        if self._cursor is not None:
            await self._cursor.close()


class InlineCursor:
    def __init__(self, owner: InlineConnection, cursor: sqlite3.Cursor) -> None:
        self._owner = owner
        self._cursor = cursor

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> InlineCursor:
        args = () if parameters is None else parameters
        aside = len(sql) + _size(args) > _ASIDE_BYTES
        await self._owner.run(self._cursor.execute, sql, args, aside=aside)
        return self

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> InlineCursor:
        listed = rows if isinstance(rows, list) else list(rows)
        aside = len(listed) > _ASIDE_ROWS or sum(map(_size, listed)) > _ASIDE_BYTES
        await self._owner.run(self._cursor.executemany, sql, listed, aside=aside)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class InlineConnection:
    """aiosqlite's ``Connection`` interface, as SQLAlchemy's dialect and ``database.py`` use
    it, over a ``sqlite3`` connection in autocommit mode (the engine's "begin" hook emits
    BEGIN)."""

    def __init__(self, conn: sqlite3.Connection, busy_timeout_s: float) -> None:
        self._conn = conn
        self._busy_timeout_ms = int(busy_timeout_s * 1000)

    @property
    def sqlite(self) -> sqlite3.Connection:
        """The ``sqlite3`` connection under it (for its pragmas)."""
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    async def run(self, fn: Callable[..., T], *args: Any, aside: bool = False) -> T:
        return await run(self._conn, self._busy_timeout_ms, fn, *args, aside=aside)

    def cursor(self) -> Awaitable[InlineCursor]:
        return self._new_cursor()

    async def _new_cursor(self) -> InlineCursor:
        return InlineCursor(self, self._conn.cursor())

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> _Result:
        return _Result(self._execute(sql, parameters))

    async def _execute(self, sql: str, parameters: Sequence[Any] | None) -> InlineCursor:
        return await InlineCursor(self, self._conn.cursor()).execute(sql, parameters)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> InlineCursor:
        return await InlineCursor(self, self._conn.cursor()).executemany(sql, rows)

    async def execute_fetchall(
        self, sql: str, parameters: Sequence[Any] | None = None
    ) -> list[Any]:
        cursor = await self._execute(sql, parameters)
        try:
            return await cursor.fetchall()
        finally:
            await cursor.close()

    async def commit(self) -> None:
        # Syncs the WAL: off the loop. It holds the write lock already, so it never waits.
        if self._conn.in_transaction:
            await asyncio.to_thread(self._conn.commit)

    async def rollback(self) -> None:
        if self._conn.in_transaction:
            await self.run(self._conn.rollback)

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)

    async def close(self) -> None:
        self._conn.close()

    def stop(self) -> None:
        """What SQLAlchemy calls to terminate a connection it gave up on."""
        self._conn.close()


def _size(values: Sequence[Any] | Any) -> int:
    """The length of the text and bytes values among a statement's parameters."""
    if not isinstance(values, Sequence) or isinstance(values, str | bytes):
        return 0
    return sum(len(v) for v in values if isinstance(v, bytes | str))
