"""Engine set-up and the unit of work: one transaction per RPC, committed at the edge."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from . import inline_sqlite, migrate, store_checks
from .errors import TracklineError, Unavailable, store_failure
from .snapshot import EngineSnapshot, Snapshot, SqliteReaders, Transaction, postgres_snapshot

log = logging.getLogger("trackline.database")

BUSY_TIMEOUT_S = 30  # how long a SQLite statement waits for a lock another process holds
RESTART_WAIT_MS = 100  # how long a WAL restart waits for readers of older snapshots
WAL_RESTART_BYTES = 128 * 1024 * 1024  # the WAL is started over once it holds this much
PG_POOL_SIZE = 32  # PostgreSQL connections a server keeps open (as many more while busy)


class Database:
    """Owns the engines and opens the units of work: ``write`` (a read-write transaction),
    ``transaction`` (one on the driver, for the writer's flushes of unary metric writes),
    ``snapshot`` (the read-only one of ``@reads`` calls, on the driver: ``snapshot.py``) and
    ``read`` (a read transaction through SQLAlchemy, for the metric store's reads). On SQLite,
    writes are serialised in-process (one writer at a time is all SQLite allows), run under
    BEGIN IMMEDIATE and their statements on the event loop's thread (``inline_sqlite.py``);
    WAL + synchronous=FULL make every committed transaction survive a process kill.

    The store is watched (store_checks.py, store_watch.py): ``problem`` is why it cannot take
    writes now (STORE_LOST, STORE_READ_ONLY, STORE_UNAVAILABLE), None while it can."""

    def __init__(self, url: str, *, wal_restart_bytes: int = WAL_RESTART_BYTES) -> None:
        self.url = url
        self.wal_restart_bytes = wal_restart_bytes
        self.is_sqlite = url.startswith("sqlite")
        database = make_url(url).database if self.is_sqlite else None
        self.files = (
            store_checks.SqliteFiles(database) if database and database != ":memory:" else None
        )
        self.problem: Unavailable | None = None
        self.engine: AsyncEngine
        # On SQLite two engines over the file: writes (``engine``) through inline_sqlite.py,
        # reads that may return megabytes (``read``) and checkpoints through aiosqlite.
        self._read_engine: AsyncEngine
        if self.is_sqlite and (self.files is None or database is None):  # config.py refuses it
            raise ValueError("an in-memory SQLite database cannot be shared by connections")
        if self.is_sqlite and database is not None:
            self.engine = create_async_engine(
                url,
                async_creator=inline_sqlite.connector(database, BUSY_TIMEOUT_S, self._may_create),
            )
            self._read_engine = create_async_engine(
                url,
                async_creator=inline_sqlite.aiosqlite_connector(
                    database, BUSY_TIMEOUT_S, self._may_create
                ),
            )
        else:
            # Connections beyond pool_size are closed when returned, and opening one took
            # ~100 ms under load: GetRun's p99 at 16 concurrent calls was 170 ms with the
            # default 5 (+10). PG_POOL_SIZE covers a busy server's concurrent calls.
            self.engine = self._read_engine = create_async_engine(
                url, pool_size=PG_POOL_SIZE, max_overflow=PG_POOL_SIZE
            )
        self._write_lock = asyncio.Lock()
        self._checkpoints: asyncio.Task[None] | None = None
        self._page_size: int | None = None
        self._readers: SqliteReaders | None = None
        self._direct: inline_sqlite.InlineConnection | None = None  # ``transaction``'s
        self._database = database
        if self.is_sqlite and database is not None:
            self._readers = SqliteReaders(database, self.engine.dialect, BUSY_TIMEOUT_S)
        if self.is_sqlite:
            for engine in {self.engine, self._read_engine}:
                event.listen(
                    engine.sync_engine,
                    "connect",
                    functools.partial(_sqlite_pragmas, wal_limit=wal_restart_bytes),
                )
                event.listen(engine.sync_engine, "begin", _sqlite_begin)

    def _may_create(self) -> bool:
        """Whether a new SQLite connection may create the file: until ``create_schema`` took
        the one at the path as the server's."""
        return self.files is None or not self.files.recorded

    async def create_schema(self) -> None:
        """Creates or upgrades the schema to the newest migration; on SQLite the file it
        leaves at the path is the one the server holds from then on."""
        await migrate.upgrade(self.engine)
        if self.files is not None:
            self.files.record()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A read-write transaction; commits when the block exits without raising. Refused
        while the store has a ``problem``. On SQLite the file is checked after the commit and
        before the caller goes on: a commit that went to a deleted or replaced file raises
        STORE_LOST, so it is never acknowledged. A driver's store failure (disk full,
        read-only, unreachable) is raised as UNAVAILABLE with its reason."""
        if self.problem is not None:
            raise Unavailable(self.problem.reason, self.problem.message)
        with _store_errors():
            if self.is_sqlite:
                async with self._write_lock:
                    async with self.engine.begin() as conn:
                        yield conn
                    self._check_file_after_commit()
            else:
                async with self.engine.begin() as conn:
                    yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """What ``write`` gives, on the driver directly: a read-write transaction whose
        statements go through ``sql.py`` only, for the writer's flushes of unary metric
        writes (``snapshot.Transaction``). Commits when the block exits without raising, and
        is refused, checked and mapped as ``write`` is. On SQLite it holds a connection of its
        own, under the same write lock as ``write``'s."""
        if self.problem is not None:
            raise Unavailable(self.problem.reason, self.problem.message)
        with _store_errors():
            if self.is_sqlite:
                async with self._write_lock:
                    driver = self._direct or await self._open_direct()
                    await driver.execute("BEGIN IMMEDIATE")
                    tx = Transaction(self.engine.dialect, driver)
                    abandon = functools.partial(self._roll_back_direct, driver)
                    async with _committing(tx, driver.commit, abandon):
                        yield tx
                    self._check_file_after_commit()
            else:
                async with self.engine.connect() as conn:
                    driver = await driver_connection(conn)
                    transaction = driver.transaction()
                    await transaction.start()

                    async def roll_back() -> None:
                        try:
                            await transaction.rollback()
                        except Exception:  # as in ``postgres_snapshot``: not reused
                            await conn.invalidate()

                    tx = Transaction(self.engine.dialect, driver)
                    async with _committing(tx, transaction.commit, roll_back):
                        yield tx

    async def _open_direct(self) -> inline_sqlite.InlineConnection:
        assert self._database is not None
        connect = inline_sqlite.connector(self._database, BUSY_TIMEOUT_S, self._may_create)
        driver = await connect()
        _sqlite_pragmas(driver.sqlite, None, wal_limit=self.wal_restart_bytes)
        self._direct = driver
        return driver

    async def _roll_back_direct(self, driver: inline_sqlite.InlineConnection) -> None:
        """Ends a ``transaction`` that did not commit; a connection that cannot roll back is
        closed (the next one opens anew)."""
        try:
            await driver.rollback()
        except Exception:
            log.warning("a failed write's rollback failed; reopening", exc_info=True)
            self._close_direct()

    def _close_direct(self) -> None:
        if self._direct is not None:
            self._direct.stop()
            self._direct = None

    def _check_file_after_commit(self) -> None:
        """Raises STORE_LOST when the SQLite file the server holds was deleted or replaced:
        a commit into it must not be acknowledged."""
        if self.files is not None and (lost := self.files.lost()) is not None:
            self.problem = lost
            self._discard_connections()
            raise lost

    def _discard_connections(self) -> None:
        """After the store got a problem: the connections opened to the file by path are
        closed, since the path may now name another file, or one that is read-only (the
        engines' connections are kept: they hold the file that was served)."""
        if self._readers is not None:
            self._readers.discard()
        self._close_direct()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (rolled back at exit). On SQLite it begins DEFERRED: in WAL
        mode it reads a snapshot and neither waits for the writer nor holds it up. Reads go on
        while the store has a ``problem``, as far as the database answers them."""
        with _store_errors():
            async with self._read_engine.connect() as conn:
                if self.is_sqlite:
                    await conn.execution_options(**{_READ_ONLY: True})
                yield conn

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Snapshot]:
        """A read-only transaction on the driver directly (``snapshot.py``): the unit of work
        of ``@reads`` methods, whose queries run through ``sql.rows``. Like ``read``, it
        neither waits for the writer nor holds it up, and goes on while the store has a
        ``problem``: on SQLite then on the engine's connections, opened while it had none."""
        with _store_errors():
            if self._readers is not None and self.problem is None:
                async with self._readers.snapshot() as snap:
                    yield snap
            elif self._readers is not None:
                # The file is lost or read-only: on the writer's connections, opened while it
                # was well (the store refuses writes meanwhile, so they are free).
                async with self.engine.connect() as conn:
                    await conn.execution_options(**{_READ_ONLY: True})
                    async with conn.begin():  # read-only: nothing to commit
                        yield EngineSnapshot(conn)
            else:
                async with postgres_snapshot(self.engine) as snap:
                    yield snap

    async def check_store(self) -> Unavailable | None:
        """Looks at the store now and sets ``problem``: a SQLite file deleted or replaced (for
        good: only a restart opens the path again), read-only (clears once writable again), a
        PostgreSQL server read-only or not answering (clears once it does)."""
        if self.problem is not None and self.problem.reason == "STORE_LOST":
            return self.problem
        if self.files is not None:
            problem = self.files.lost() or self.files.holds_deleted() or self.files.read_only()
        else:
            problem = await store_checks.probe_postgres(self.engine)
        if problem is not None:
            self._discard_connections()
        self.problem = problem
        return problem

    def start_checkpoints(self, interval: float = 1.0) -> None:
        """Checkpoints the SQLite WAL every ``interval`` seconds until ``close``."""
        if self.is_sqlite:
            self._checkpoints = asyncio.create_task(self._checkpoint_loop(interval))

    async def _checkpoint_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self.problem is not None:  # it would fail, once a second, until fixed
                continue
            try:
                await self.checkpoint()
            except Exception:  # a busy database: the next round catches up
                log.warning("WAL checkpoint failed", exc_info=True)

    async def checkpoint(self) -> None:
        """Copies committed WAL pages into the SQLite database file, and starts the WAL over
        once it holds ``wal_restart_bytes``; nothing on PostgreSQL.

        A PASSIVE checkpoint, beside the writer, does the copying. It can never catch up with
        a writer that commits all the time, and SQLite starts a WAL over only once every
        frame in it has been copied: under steady ingestion the WAL grew without end (740 MB
        in 30 s), and every page lookup searches the WAL's index, so throughput fell as it
        grew. A RESTART checkpoint starts it over, but holds this process's write lock while
        it copies what the last flushes added, syncs the database file and waits (at most
        RESTART_WAIT_MS; the next round retries) for readers of older snapshots: 120-200 ms
        in which no flush commits. So it runs only when the WAL has grown that large."""
        if not self.is_sqlite:
            return
        async with self._read_engine.connect() as conn:
            # On the driver's connection: through SQLAlchemy the pragma would run inside the
            # BEGIN of the "begin" hook, and a checkpoint cannot.
            driver = await driver_connection(conn)
            _, frames, _ = await _first_row(driver, "PRAGMA wal_checkpoint(PASSIVE)")
            if self._page_size is None:  # fixed once the database exists
                (self._page_size,) = await _first_row(driver, "PRAGMA page_size")
            if frames * (self._page_size + 24) < self.wal_restart_bytes:
                return
            async with self._write_lock:
                await driver.execute(f"PRAGMA busy_timeout = {RESTART_WAIT_MS}")
                try:
                    await driver.execute("PRAGMA wal_checkpoint(RESTART)")
                finally:
                    await driver.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
        if self._readers is not None:
            self._readers.close()
        self._close_direct()
        await self.engine.dispose()
        if self._read_engine is not self.engine:
            await self._read_engine.dispose()


@asynccontextmanager
async def _committing(
    tx: Transaction,
    commit: Callable[[], Awaitable[None]],
    roll_back: Callable[[], Awaitable[None]],
) -> AsyncIterator[Transaction]:
    """``tx`` for the block: committed when it exits without raising, rolled back when it
    raises or when the commit does."""
    committed = False
    try:
        yield tx
        await commit()
        committed = True
    finally:
        if not committed:
            await roll_back()


async def _first_row(driver: Any, sql: str) -> tuple[Any, ...]:
    """The first row of ``sql`` run on an aiosqlite connection."""
    async with driver.execute(sql) as cursor:
        return tuple(await cursor.fetchone())


async def driver_connection(conn: AsyncConnection) -> Any:
    """The driver's own connection under ``conn`` (inline_sqlite's, aiosqlite's or
    asyncpg's), in the same transaction. Read from the connection SQLAlchemy holds when it
    holds one (``get_raw_connection`` passes through a greenlet, ~10 us, for what is an
    attribute here); asked for otherwise."""
    sync = conn.sync_connection
    if sync is not None and not sync.closed and not sync.invalidated:
        return sync.connection.driver_connection
    raw = await conn.get_raw_connection()
    return raw.driver_connection


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, *, wal_limit: int) -> None:
    # The driver's own transaction handling is turned off; the "begin" hook emits BEGIN.
    # (inline_sqlite.py's connections are opened so.)
    if dbapi_conn.isolation_level is not None:
        dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    # Commits do not checkpoint (copying the WAL into the database file would stall the
    # committing writer); ``checkpoint`` does it from another connection's thread instead.
    cur.execute("PRAGMA wal_autocheckpoint=0")
    # A WAL that starts over is cut back to this size, so a burst does not keep its disk.
    cur.execute(f"PRAGMA journal_size_limit={wal_limit}")
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


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """Raises a driver's failure that says the store cannot serve (``errors.store_failure``)
    as that error, logged once with its id; everything else as it is."""
    try:
        yield
    except TracklineError:
        raise
    except Exception as exc:
        err = store_failure(exc, "a store transaction")
        if err is None:
            raise
        raise err from exc
