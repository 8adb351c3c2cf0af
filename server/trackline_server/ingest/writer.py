"""The group-commit writer: one task per server process turns every pending write (stream
batches and unary LogBatch calls alike) into one transaction per flush.

A flush starts when the first item arrives and gathers for ``linger`` seconds, or less when
``flush_points`` points wait, and takes at most that many points. Its transaction reads the
high-water sequence of every writer involved, skips batches at or below it (resends),
rejects batches for unknown or deleted runs, writes the rest, moves the high-water marks,
and runs each unary job in a savepoint so one bad call cannot undo the others. Stream points
go to chunks or, for short series, to the metric log as one row per flush (``flush_log.py``;
the compactor moves them into chunks later), and each series' latest value moves forward in
the same transaction, so search sees a point as soon as it is acked. Only after
COMMIT are the waiters resolved.

The queue is bounded in points and bytes. Streams wait for room (``put_batch``), which stops
them reading and pushes back through HTTP/2 flow control; unary calls are refused at once
(``put_job`` raises ResourceExhausted with a retry delay).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import limits
from ..database import Database, execute_many, fetch_all
from ..errors import ResourceExhausted, Unavailable
from ..models import ingest_rejections, ingest_writers, runs
from . import chunks, flush_log, segments
from .segments import Segments

log = logging.getLogger("trackline.ingest")

T = TypeVar("T")
ACTIVE = 1
# Series with at least this many points in one flush are written as chunks at once.
DIRECT_CHUNK_POINTS = 1024
# Rejections a handshake returns, and how long they are kept.
REMEMBERED_REJECTIONS = 1000
REJECTIONS_KEPT_MS = 7 * 24 * 3600 * 1000


@dataclass
class Rejection:
    reason: str
    message: str


@dataclass
class StreamBatch:
    """A numbered batch of one writer, its points already checked; or, with ``refused``, a
    batch refused on arrival, queued only so that its refusal is stored with the writer's
    high-water mark."""

    writer_id: str
    seq: int
    segs: Segments
    refused: Rejection | None = None
    done: asyncio.Future[Rejection | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def points(self) -> int:
        return self.segs.points

    @property
    def nbytes(self) -> int:
        return self.segs.nbytes


@dataclass
class Job(Generic[T]):
    """A unit of work of a unary call, run inside the flush's transaction."""

    fn: Callable[[AsyncConnection], Awaitable[T]]
    points: int
    nbytes: int
    done: asyncio.Future[T] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


Item = StreamBatch | Job[Any]


@dataclass
class _Writes:
    """What a flush stores for its accepted stream batches, worked out before its
    transaction: on SQLite the write lock is then held only for the statements, and a flush
    that waits for a compaction to release it has its work done meanwhile."""

    batches: int  # how many batches' points these are
    chunk_rows: list[chunks.Row]  # series with DIRECT_CHUNK_POINTS or more points
    log_points: int  # the points of the other series, in one metric log row
    log_body: bytes
    latest: chunks.Latest

    @classmethod
    def of(cls, parts: list[Segments]) -> _Writes:
        points = segments.concat(parts)
        # A series with many points in this flush makes a chunk of good size now; the points
        # of short series go to the log, to be compacted with later flushes' points.
        direct, short = segments.split_long(points, DIRECT_CHUNK_POINTS)
        return cls(
            len(parts),
            chunks.chunk_rows(direct),
            short.points,
            flush_log.encode(short) if short.points else b"",
            chunks.latest_of(points),
        )

    async def store(self, conn: AsyncConnection) -> None:
        """Writes the rows, in the caller's transaction."""
        await chunks.insert_rows(conn, self.chunk_rows)
        if self.log_points:
            await flush_log.append(conn, self.log_points, self.log_body)
        await chunks.upsert_latest(conn, self.latest)


@dataclass
class WriterStats:
    flushes: int = 0
    points: int = 0
    batches: int = 0
    skipped: int = 0
    rejected: int = 0


class GroupCommitWriter:
    def __init__(
        self,
        db: Database,
        *,
        max_points: int = limits.INGEST_MAX_POINTS,
        max_bytes: int = limits.INGEST_MAX_BYTES,
        linger: float = limits.INGEST_LINGER_MS / 1000,
        flush_points: int = 400_000,
        on_logged: Callable[[], None] | None = None,
    ) -> None:
        """``on_logged`` is called after each flush that appended points to the metric log
        (the compactor's cue)."""
        self.db = db
        self.on_logged = on_logged
        self.max_points = max_points
        self.max_bytes = max_bytes
        self.linger = linger
        self.flush_points = flush_points
        self.stats = WriterStats()
        self._items: list[Item] = []
        self._queued_points = 0
        self._queued_bytes = 0
        self._arrived = asyncio.Event()  # set when an item is queued or closing begins
        self._room = asyncio.Condition()  # notified when a flush empties the queue
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_flush_items = 0
        self._logged = False  # a committed flush appended to the metric log
        # writer id -> seq of its oldest batch in a flush that failed. Its later batches,
        # already sent on the same stream, must not commit: the stored mark would pass the
        # failed one, and a reconnecting client would take it for stored. A handshake
        # (``high_water``) lifts this: the client then resends from the stored mark.
        self._failed: dict[str, int] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-commit-writer")

    async def close(self) -> None:
        """Stops taking new items, commits everything queued, then returns."""
        self._closing = True
        self._arrived.set()
        async with self._room:
            self._room.notify_all()
        if self._task is not None:
            await self._task

    async def high_water(self, writer_id: str) -> tuple[int, list[tuple[int, Rejection]]]:
        """The writer's stored high-water sequence, and its stored rejections (the newest
        REMEMBERED_REJECTIONS, oldest first): a client that reconnects learns about batches
        refused while it was away instead of taking them for stored."""
        self._failed.pop(writer_id, None)
        async with self.db.read() as conn:
            seq = await conn.scalar(
                select(ingest_writers.c.seq).where(ingest_writers.c.writer_id == writer_id)
            )
            found = await conn.execute(
                select(ingest_rejections.c.seq, ingest_rejections.c.reason,
                       ingest_rejections.c.message)
                .where(ingest_rejections.c.writer_id == writer_id)
                .order_by(ingest_rejections.c.seq.desc())
                .limit(REMEMBERED_REJECTIONS)
            )  # fmt: skip
            rejections = [(int(q), Rejection(r, m)) for q, r, m in found]
        return int(seq or 0), rejections[::-1]

    async def put_batch(self, batch: StreamBatch) -> None:
        """Queues a stream batch, waiting while the queue is full."""
        if not self._has_room(batch):
            async with self._room:
                await self._room.wait_for(lambda: self._closing or self._has_room(batch))
        self._enqueue(batch)

    def put_job(self, job: Job[T]) -> asyncio.Future[T]:
        """Queues a unary job, or raises ResourceExhausted when the queue is full."""
        if not self._has_room(job):
            raise ResourceExhausted(
                "INGEST_QUEUE_FULL",
                "the server's ingest queue is full; retry after the suggested delay",
                retry_after=0.5,
            )
        self._enqueue(job)
        return job.done

    def _has_room(self, item: Item) -> bool:
        # An item larger than the whole bound is let in alone, or it could never enter.
        if not self._items:
            return True
        return (
            self._queued_points + item.points <= self.max_points
            and self._queued_bytes + item.nbytes <= self.max_bytes
        )

    def _enqueue(self, item: Item) -> None:
        if self._closing:
            raise Unavailable("SHUTTING_DOWN", "the server is shutting down; retry elsewhere")
        self._items.append(item)
        self._queued_points += item.points
        self._queued_bytes += item.nbytes
        self._arrived.set()

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            if not self._items:
                if self._closing:
                    return
                continue
            # Linger so that concurrent writers share the transaction; a lone unary call (one
            # item now and in the previous flush) is not made to wait for company. Streams
            # always linger: they keep sending, and their batches gain from sharing.
            lonely = (
                len(self._items) == 1
                and isinstance(self._items[0], Job)
                and self._last_flush_items <= 1
            )
            deadline = time.monotonic() + (0.0 if lonely else self.linger)
            while self._queued_points < self.flush_points and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    break
                self._arrived.clear()
            items = self._take()
            self._last_flush_items = len(items)
            async with self._room:
                self._room.notify_all()
            await self._flush(items)
            if self._closing and not self._items:
                return
            if self._items:
                self._arrived.set()

    def _take(self) -> list[Item]:
        """Removes the oldest queued items, up to ``flush_points`` points (at least one item):
        what one transaction holds is bounded too, in memory and in time to commit."""
        n = points = nbytes = 0
        for item in self._items:
            if n and points + item.points > self.flush_points:
                break
            n += 1
            points += item.points
            nbytes += item.nbytes
        items, self._items = self._items[:n], self._items[n:]
        self._queued_points -= points
        self._queued_bytes -= nbytes
        return items

    async def _flush(self, items: list[Item]) -> None:
        if self._failed:
            items = self._drop_after_failures(items)
        batches = [i for i in items if isinstance(i, StreamBatch)]
        jobs = [i for i in items if isinstance(i, Job)]
        job_results: list[tuple[bool, Any]] = []
        try:
            # Assumes every batch not refused on arrival is accepted: the transaction redoes
            # the work in the rare flush where one is a resend or its run is gone.
            planned = _Writes.of([b.segs for b in batches if b.refused is None])
            async with self.db.write() as conn:
                outcomes = await self._write_batches(conn, batches, planned)
                for job in jobs:
                    try:
                        async with conn.begin_nested():
                            job_results.append((True, await job.fn(conn)))
                    except Exception as err:  # rolled back to the savepoint; others go on
                        job_results.append((False, err))
        except Exception as err:  # the transaction did not commit: nothing is acked
            log.exception("ingest flush of %d items failed", len(items))
            failure = (  # the store's own reason (STORE_LOST, ...) as it is
                err
                if isinstance(err, Unavailable)
                else Unavailable("WRITE_FAILED", f"the write did not commit: {err}")
            )
            for item in items:
                if not item.done.done():
                    item.done.set_exception(failure)
            for b in batches:
                self._failed[b.writer_id] = min(b.seq, self._failed.get(b.writer_id, b.seq))
            return
        self.stats.flushes += 1
        if self._logged and self.on_logged is not None:
            self._logged = False
            self.on_logged()
        for batch, outcome in zip(batches, outcomes, strict=True):
            if not batch.done.done():
                batch.done.set_result(outcome)
        for job, (ok, value) in zip(jobs, job_results, strict=True):
            if job.done.done():
                continue
            if ok:
                job.done.set_result(value)
            else:
                job.done.set_exception(value)

    def _drop_after_failures(self, items: list[Item]) -> list[Item]:
        """Fails the batches that follow a failed one of their writer (see ``_failed``)."""
        kept: list[Item] = []
        for item in items:
            if isinstance(item, StreamBatch) and item.seq > (
                failed := self._failed.get(item.writer_id, item.seq)
            ):
                item.done.set_exception(Unavailable(
                    "WRITE_FAILED",
                    f"batch {failed} of this stream did not commit, so the ones after it are"
                    " not stored either; reconnect and resend",
                ))  # fmt: skip
            else:
                kept.append(item)
        return kept

    async def _write_batches(
        self, conn: AsyncConnection, batches: Sequence[StreamBatch], planned: _Writes
    ) -> list[Rejection | None]:
        if not batches:
            return []
        writer_ids = {b.writer_id for b in batches}
        query = select(ingest_writers.c.writer_id, ingest_writers.c.seq).where(
            ingest_writers.c.writer_id.in_(writer_ids)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()  # replicas serialise on a writer's mark
        marks: dict[str, int] = {w: int(s) for w, s in await fetch_all(conn, query)}
        known = dict(marks)
        run_ids = {s[0] for b in batches for s in b.segs.series}
        stages = dict(
            await fetch_all(
                conn,
                select(runs.c.run_id, runs.c.lifecycle_stage).where(runs.c.run_id.in_(run_ids)),
            )
        )
        outcomes: list[Rejection | None] = []
        accepted: list[Segments] = []
        refused: list[tuple[str, int, Rejection]] = []
        for b in batches:
            if b.seq <= marks.get(b.writer_id, 0):
                outcomes.append(None)  # a resend of a committed batch
                self.stats.skipped += 1
                continue
            marks[b.writer_id] = b.seq
            rejection = b.refused or _check_runs(b, stages)
            outcomes.append(rejection)
            if rejection is None:
                accepted.append(b.segs)
                self.stats.batches += 1
                self.stats.points += b.points
            else:
                refused.append((b.writer_id, b.seq, rejection))
                self.stats.rejected += 1
        writes = planned if len(accepted) == planned.batches else _Writes.of(accepted)
        await writes.store(conn)
        self._logged = self._logged or writes.log_points > 0
        moved = {w: s for w, s in marks.items() if known.get(w) != s}
        if moved:
            await _upsert_marks(conn, moved)
        if refused:
            await _remember(conn, refused)
        return outcomes


async def _remember(conn: AsyncConnection, refused: list[tuple[str, int, Rejection]]) -> None:
    """Stores rejections with the flush, and forgets those older than REJECTIONS_KEPT_MS."""
    now = int(time.time() * 1000)
    await conn.execute(
        insert(ingest_rejections),
        [
            {"writer_id": w, "seq": q, "reason": r.reason, "message": r.message[:4096],
             "created_time": now}
            for w, q, r in refused
        ],
    )  # fmt: skip
    await conn.execute(
        delete(ingest_rejections).where(ingest_rejections.c.created_time < now - REJECTIONS_KEPT_MS)
    )


def _check_runs(batch: StreamBatch, stages: dict[str, int]) -> Rejection | None:
    for run_id in batch.segs.run_ids:
        stage = stages.get(run_id)
        if stage is None:
            return Rejection("RUN_NOT_FOUND", f"no run with id {run_id!r}")
        if stage != ACTIVE:
            return Rejection("RUN_DELETED", f"run {run_id!r} is deleted; restore it first")
    return None


async def _upsert_marks(conn: AsyncConnection, marks: dict[str, int]) -> None:
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(ingest_writers)
    stmt = stmt.on_conflict_do_update(
        index_elements=[ingest_writers.c.writer_id],
        set_={"seq": stmt.excluded.seq, "updated_time": stmt.excluded.updated_time},
        where=stmt.excluded.seq > ingest_writers.c.seq,
    )
    now = int(time.time() * 1000)
    await execute_many(
        conn, stmt, [{"writer_id": w, "seq": s, "updated_time": now} for w, s in marks.items()]
    )
