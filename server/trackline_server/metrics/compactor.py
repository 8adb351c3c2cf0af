"""The compactor: moves metric log rows (one per flush, see ``flush_log.py``) into per-series
chunks, many log rows per transaction.

It runs in the background a short while after flushes (``COMPACT_DELAY``, so that one
compaction gathers many flushes and a series gets one chunk row per compaction), and on
demand before every history read (``settle``): readers see only chunks, and everything
committed before the read began has been moved by then.

Each compaction is one transaction that deletes the log rows it read and inserts their
chunks, so a crash leaves either the log rows or the chunks, never both or neither.

On PostgreSQL several replicas share one log. A compaction runs only while its replica holds
a session advisory lock (``COMPACTION_LOCK``), so one replica compacts at a time and the
others do not read and chunk the same rows for nothing; a history read on another replica
waits for that compaction to finish. Should two compactions still meet on the same rows (the
lock is advisory), the second one's DELETE waits for the first to commit, then finds fewer
rows than it read and rolls back, so every point is moved exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..database import Database
from ..models import metric_log
from . import chunks, flush_log, segments

_log = logging.getLogger("trackline.ingest")

COMPACT_DELAY = 1.0  # seconds between a flush and the compaction that moves it
MAX_COMPACT_POINTS = 1_500_000  # points per compaction transaction (memory bound)
MAX_COMPACT_ROWS = 512  # log rows per compaction transaction
POLL_INTERVAL = 5.0  # how often to look for log rows another replica left (PostgreSQL)
SETTLE_RETRY = 0.01  # seconds a read waits while another replica compacts (PostgreSQL)
# The key of the PostgreSQL advisory lock a compaction holds: any constant that other users
# of the database do not use; these are the bytes "tlcompac".
COMPACTION_LOCK = 0x746C_636F_6D70_6163


async def _read_log(conn: AsyncConnection, ids: list[int]) -> list[bytes]:
    """The bodies of the log rows ``ids``, in log order."""
    bodies = await conn.execute(
        select(metric_log.c.body).where(metric_log.c.log_id.in_(ids)).order_by(metric_log.c.log_id)
    )
    return [body for (body,) in bodies]


def _chunk_rows(bodies: list[bytes]) -> list[chunks.Row]:
    """The chunk rows of log rows' bodies. It empties ``bodies``, so that they are freed once
    their points are joined, and the joined points once chunk_rows lets go. It runs in a
    worker thread: numpy lets go of the GIL for most of it, and the event loop, which serves
    every stream and the writer, does not stall for a compaction."""
    parts = [flush_log.decode(body) for body in bodies]
    bodies.clear()
    joined = [segments.concat(parts)]
    del parts
    return chunks.chunk_rows(joined.pop())  # its only reference: see chunk_rows


class _Moved(Exception):
    """The log rows of a compaction were moved by someone else first."""


class Compactor:
    def __init__(
        self,
        db: Database,
        *,
        delay: float = COMPACT_DELAY,
        max_points: int = MAX_COMPACT_POINTS,
    ) -> None:
        self.db = db
        self.delay = delay
        self.max_points = max_points
        self.compactions = 0
        self._logged = asyncio.Event()
        self._lock = asyncio.Lock()  # one compaction at a time in this process
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._logged.set()  # rows left by the previous run are moved at once
        self._task = asyncio.create_task(self._run(), name="metric-log-compactor")

    def poke(self) -> None:
        """Tells the compactor that a flush appended to the log."""
        self._logged.set()

    async def close(self) -> None:
        """Stops the background pass; log rows left are moved at the next start or read."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def settle(self) -> None:
        """Returns once every log row committed before the call has been moved to chunks."""
        while await self._pending():
            moved, _ = await self.compact()
            if not moved:  # another replica is moving them
                await asyncio.sleep(SETTLE_RETRY)

    async def _pending(self) -> bool:
        async with self.db.read() as conn:
            return await conn.scalar(select(metric_log.c.log_id).limit(1)) is not None

    async def compact(self) -> tuple[int, bool]:
        """Moves the oldest log rows, up to ``max_points`` points and MAX_COMPACT_ROWS rows
        (at least one row), in one transaction. Returns how many rows it moved (0: the log was
        empty, or another replica moved some of the rows first) and whether more rows wait.

        The rows are read and turned into chunks before the write transaction, which then
        only deletes and inserts: on SQLite it holds the one write lock that flushes, and so
        acks, wait for."""
        async with self._lock, self._exclusive() as mine:
            if not mine:
                return 0, True
            async with self.db.read() as conn:
                ids, more = await self._pick(conn)
                if not ids:
                    return 0, False
                bodies = await _read_log(conn, ids)
            rows = await asyncio.to_thread(_chunk_rows, bodies)
            try:
                async with self.db.write() as conn:
                    if conn.dialect.name == "postgresql":  # lock in one order: no deadlocks
                        await conn.execute(
                            select(metric_log.c.log_id).where(metric_log.c.log_id.in_(ids))
                            .order_by(metric_log.c.log_id).with_for_update()
                        )  # fmt: skip
                    gone = await conn.execute(
                        delete(metric_log).where(metric_log.c.log_id.in_(ids))
                    )
                    if gone.rowcount != len(ids):
                        raise _Moved
                    await chunks.insert_rows(conn, rows)
            except _Moved:  # rolled back: another replica moved some of these rows
                return 0, True
        self.compactions += 1
        return len(ids), more

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[bool]:
        """Whether this replica may compact now: on PostgreSQL, whether it got the advisory
        lock, held on a connection of its own (in autocommit, so no transaction stays open
        meanwhile) until the block ends; on SQLite, with one server per file, always."""
        if self.db.is_sqlite:
            yield True
            return
        async with self.db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            key = {"key": COMPACTION_LOCK}
            mine = bool(await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), key))
            try:
                yield mine
            finally:
                if mine:
                    await conn.scalar(text("SELECT pg_advisory_unlock(:key)"), key)

    async def _pick(self, conn: AsyncConnection) -> tuple[list[int], bool]:
        """The ids of the oldest log rows to move, and whether more rows wait behind them."""
        query = (
            select(metric_log.c.log_id, metric_log.c.points)
            .order_by(metric_log.c.log_id)
            .limit(MAX_COMPACT_ROWS)
        )
        ids: list[int] = []
        total = 0
        found = (await conn.execute(query)).all()
        for log_id, points in found:
            if ids and total + points > self.max_points:
                break
            ids.append(log_id)
            total += points
        return ids, len(ids) < len(found) or len(found) == MAX_COMPACT_ROWS

    async def _run(self) -> None:
        poll = None if self.db.is_sqlite else POLL_INTERVAL
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._logged.wait(), poll)
            self._logged.clear()
            await asyncio.sleep(self.delay)
            try:
                while True:
                    moved, more = await self.compact()
                    if not (moved and more):  # done, or another replica compacts
                        break
                    await asyncio.sleep(0)  # a backlog: keep going
            except Exception:  # the rows stay in the log; the next pass retries them
                _log.exception("metric log compaction failed")
                await asyncio.sleep(self.delay)
