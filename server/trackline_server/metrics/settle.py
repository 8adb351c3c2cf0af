"""How a flush settles stream batches against the writers' stored state, and how a stream
takes a writer over.

Each writer's row (``ingest_writers``) holds its high-water sequence, the hash of its key,
its owner and its epoch. A handshake (``take_over``) checks the key and owner and moves the
epoch up; a flush (``write_batches``) reads the marks and epochs of its writers, refuses the
batches of streams whose epoch is no longer the stored one (fenced), skips resends, rejects
batches for unknown or deleted runs and experiments, writes the rest (``Writes``) and moves
the marks, all in the flush's transaction.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..database import execute_many, fetch_all
from ..errors import Aborted, FailedPrecondition, PermissionDenied, TracklineError, shown
from ..models import experiments, ingest_rejections, ingest_writers, runs
from ..shield import retrieve
from . import chunks, flush_log, segments
from .segments import Segments

ACTIVE = 1
# Series with at least this many points in one flush are written as chunks at once.
DIRECT_CHUNK_POINTS = 1024
# Rejections a handshake returns, and how long they are kept.
REMEMBERED_REJECTIONS = 1000
REJECTIONS_KEPT_MS = 7 * 24 * 3600 * 1000
# A flush does its Python work in a worker thread from this many points plus series on (it
# takes about 1 us each): the event loop keeps answering (health checks, other calls).
PLAN_IN_THREAD = 20_000
# SQLSTATE classes of PostgreSQL failures that are the server's, never a batch's: connection,
# insufficient resources (disk full), operator intervention, system errors.
_SERVER_SQLSTATES = ("08", "53", "57", "58")

R = TypeVar("R")


async def _off_loop(size: int, fn: Callable[..., R], *args: Any) -> R:
    """``fn(*args)``, in a worker thread when ``size`` is at least PLAN_IN_THREAD."""
    if size < PLAN_IN_THREAD:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


def future() -> asyncio.Future[Any]:
    """A future whose failure counts as seen: when its caller went away (an aborted stream,
    a cancelled LogBatch) nobody awaits it, and asyncio would log "Future exception was never
    retrieved" for each."""
    fut = asyncio.get_running_loop().create_future()
    fut.add_done_callback(retrieve)
    return fut


def fenced() -> Aborted:
    """What a stream of a writer gets once a newer stream of the same writer took over."""
    return Aborted("WRITER_FENCED", "another stream took over this writer id; reconnect")


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
    # The epoch of the stream's handshake (``GroupCommitWriter.handshake``); 0 for writers
    # that never shook hands (in-process callers).
    epoch: int = 0
    done: asyncio.Future[Rejection | None] = field(default_factory=future)

    @property
    def points(self) -> int:
        return self.segs.points

    @property
    def nbytes(self) -> int:
        return self.segs.nbytes


@dataclass
class Writes:
    """What a flush stores for its accepted stream batches, worked out before its
    transaction: on SQLite the write lock is then held only for the statements, and a flush
    that waits for a compaction to release it has its work done meanwhile."""

    batches: int  # how many batches' points these are
    chunk_rows: list[chunks.Row]  # series with DIRECT_CHUNK_POINTS or more points
    log_points: int  # the points of the other series, in one metric log row
    log_body: bytes
    latest: list[dict[str, Any]]  # chunks.latest_rows

    @classmethod
    def of(cls, parts: list[Segments]) -> Writes:
        points = segments.concat(parts)
        # A series with many points in this flush makes a chunk of good size now; the points
        # of short series go to the log, to be compacted with later flushes' points.
        direct, short = segments.split_long(points, DIRECT_CHUNK_POINTS)
        return cls(
            len(parts),
            chunks.chunk_rows(direct),
            short.points,
            flush_log.encode(short) if short.points else b"",
            chunks.latest_rows(chunks.latest_of(points)),
        )

    @classmethod
    async def planned(cls, parts: list[Segments]) -> Writes:
        """``of``, in a worker thread when the parts are large."""
        return await _off_loop(sum(p.points + len(p.series) for p in parts), cls.of, parts)

    async def store(self, conn: AsyncConnection) -> None:
        """Writes the rows, in the caller's transaction."""
        await chunks.insert_rows(conn, self.chunk_rows)
        if self.log_points:
            await flush_log.append(conn, self.log_points, self.log_body)
        await chunks.upsert_latest_rows(conn, self.latest)


@dataclass
class WriterStats:
    flushes: int = 0
    points: int = 0
    batches: int = 0
    skipped: int = 0
    rejected: int = 0
    fenced: int = 0


@dataclass
class Handshake:
    """What a stream learns when it opens: the writer's stored high-water sequence, the epoch
    the stream now holds, and the writer's stored rejections (oldest first)."""

    high_water: int
    epoch: int
    rejections: list[tuple[int, Rejection]]


async def take_over(
    conn: AsyncConnection, writer_id: str, key_hash: str, owner: str | None
) -> Handshake:
    """Hands the writer to a new stream, in the caller's write transaction. A new writer id
    is registered to ``key_hash`` (the hex SHA-256 of the stream's writer key) and ``owner``
    (that of its bearer token when the server requires tokens, else None); a known one must
    come with the same key (else FAILED_PRECONDITION WRITER_ID_TAKEN) and owner (else
    PERMISSION_DENIED WRITER_NOT_OWNED). The writer's epoch then moves up by one: batches of
    its older streams that are still queued are refused by their flush (``write_batches``)
    instead of committing after the new stream learnt the high-water mark."""
    now = int(time.time() * 1000)
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    await conn.execute(
        dialect.insert(ingest_writers)
        .values(writer_id=writer_id, seq=0, updated_time=now, key_hash=key_hash,
                owner=owner, epoch=0)
        .on_conflict_do_nothing(index_elements=[ingest_writers.c.writer_id])
    )  # fmt: skip
    query = select(
        ingest_writers.c.seq,
        ingest_writers.c.key_hash,
        ingest_writers.c.owner,
        ingest_writers.c.epoch,
    ).where(ingest_writers.c.writer_id == writer_id)
    seq, stored_key, stored_owner, epoch = (await conn.execute(_locked(conn, query))).one()
    # A row from before keys (migration 0006) is claimed by the first key it sees.
    if stored_key is not None and not hmac.compare_digest(stored_key, key_hash):
        raise FailedPrecondition(
            "WRITER_ID_TAKEN",
            "this writer id belongs to another writer; choose a new random writer id",
            "writer_id",
        )
    if (
        owner is not None
        and stored_owner is not None
        and not hmac.compare_digest(stored_owner, owner)
    ):
        raise PermissionDenied(
            "WRITER_NOT_OWNED",
            "this writer id was created with another token; choose a new writer id",
            "writer_id",
        )
    epoch = int(epoch) + 1
    await conn.execute(
        update(ingest_writers)
        .where(ingest_writers.c.writer_id == writer_id)
        .values(key_hash=key_hash, owner=stored_owner or owner, epoch=epoch,
                updated_time=now)
    )  # fmt: skip
    rejections = await _rejections(conn, writer_id)
    return Handshake(int(seq), epoch, rejections)


async def mark(conn: AsyncConnection, writer_id: str) -> tuple[int, list[tuple[int, Rejection]]]:
    """The writer's stored high-water sequence and rejections."""
    seq = await conn.scalar(
        select(ingest_writers.c.seq).where(ingest_writers.c.writer_id == writer_id)
    )
    return int(seq or 0), await _rejections(conn, writer_id)


async def write_batches(
    conn: AsyncConnection, batches: Sequence[StreamBatch], planned: Writes, stats: WriterStats
) -> tuple[list[Rejection | TracklineError | None], bool]:
    """Settles the flush's stream batches in its transaction: each outcome is None (stored,
    or a resend of a stored batch), a Rejection (stored as refused) or an error (not stored
    and not settled: the batch's stream was fenced). Also says whether points went to the
    metric log."""
    if not batches:
        return [], False
    size = sum(len(b.segs.series) for b in batches)
    writer_ids = list(dict.fromkeys(b.writer_id for b in batches))
    query = select(ingest_writers.c.writer_id, ingest_writers.c.seq, ingest_writers.c.epoch)
    query = query.where(await _among(conn, ingest_writers.c.writer_id, writer_ids))
    # On PostgreSQL replicas serialise on a writer's row with its handshakes.
    found = await fetch_all(conn, _locked(conn, query))
    run_ids = await _off_loop(size, _distinct_runs, batches)
    stages: list[Any] = []
    if run_ids:
        join = runs.join(experiments, runs.c.experiment_id == experiments.c.experiment_id)
        stages = await fetch_all(
            conn,
            select(runs.c.run_id, runs.c.lifecycle_stage, experiments.c.lifecycle_stage)
            .select_from(join)
            .where(await _among(conn, runs.c.run_id, run_ids)),
        )
    settled = await _off_loop(size, _Settled.of, batches, found, stages, stats)
    accepted = settled.accepted
    writes = planned if len(accepted) == planned.batches else await Writes.planned(accepted)
    await writes.store(conn)
    if settled.moved:
        await _upsert_marks(conn, settled.moved)
    if settled.refused:
        await _remember(conn, settled.refused)
    return settled.outcomes, writes.log_points > 0


def _distinct_runs(batches: Sequence[StreamBatch]) -> list[str]:
    return list({s[0]: None for b in batches for s in b.segs.series})


@dataclass
class _Settled:
    """What a flush decided for its stream batches (``of``)."""

    outcomes: list[Rejection | TracklineError | None]
    accepted: list[Segments]
    refused: list[tuple[str, int, Rejection]]
    moved: dict[str, int]  # writer id -> its new high-water mark

    @classmethod
    def of(
        cls,
        batches: Sequence[StreamBatch],
        writers: list[Any],
        found_runs: list[Any],
        stats: WriterStats,
    ) -> _Settled:
        """From the stored (writer id, seq, epoch) rows of the batches' writers and the
        stored (run id, stage, experiment's stage) rows of their runs."""
        marks = {w: int(seq) for w, seq, _ in writers}
        epochs = {w: int(epoch) for w, _, epoch in writers}
        stages = {r: (int(stage), int(exp)) for r, stage, exp in found_runs}
        known = dict(marks)
        settled = cls([], [], [], {})
        for b in batches:
            if b.epoch < epochs.get(b.writer_id, 0):
                settled.outcomes.append(fenced())  # the writer's newer stream resends it
                stats.fenced += 1
                continue
            if b.seq <= marks.get(b.writer_id, 0):
                settled.outcomes.append(None)  # a resend of a committed batch
                stats.skipped += 1
                continue
            marks[b.writer_id] = b.seq
            rejection = b.refused or _check_runs(b, stages)
            settled.outcomes.append(rejection)
            if rejection is None:
                settled.accepted.append(b.segs)
                stats.batches += 1
                stats.points += b.points
            else:
                settled.refused.append((b.writer_id, b.seq, rejection))
                stats.rejected += 1
        settled.moved = {w: s for w, s in marks.items() if known.get(w) != s}
        return settled


async def _among(
    conn: AsyncConnection, column: ColumnElement[str], ids: list[str]
) -> ColumnElement[bool]:
    """``column IN ids`` as one bound parameter (an array on PostgreSQL, a JSON list on
    SQLite): any number of ids, where an IN list takes a parameter each (at most 32,767 on
    asyncpg, 32,766 on SQLite) and costs SQLAlchemy Python work per id to compile."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam("ids", ids, type_=ARRAY(String)))
    listed = await _off_loop(len(ids), json.dumps, ids)
    return column.in_(select(func.json_each(listed).table_valued("value").c.value))


def _locked(conn: AsyncConnection, query: Select[Any]) -> Select[Any]:
    """``query`` FOR UPDATE on PostgreSQL (SQLite writers are serialised anyway)."""
    return query.with_for_update() if conn.dialect.name == "postgresql" else query


async def _rejections(conn: AsyncConnection, writer_id: str) -> list[tuple[int, Rejection]]:
    """The writer's stored rejections, the newest REMEMBERED_REJECTIONS, oldest first: a
    client that reconnects learns about batches refused while it was away instead of taking
    them for stored."""
    found = await conn.execute(
        select(ingest_rejections.c.seq, ingest_rejections.c.reason, ingest_rejections.c.message)
        .where(ingest_rejections.c.writer_id == writer_id)
        .order_by(ingest_rejections.c.seq.desc())
        .limit(REMEMBERED_REJECTIONS)
    )
    return [(int(q), Rejection(r, m)) for q, r, m in found][::-1]


def not_an_items_fault(err: Exception) -> bool:
    """Whether a failed flush failed for reasons no item caused (retrying fewer items would
    fail the same way): the database unreachable, full, locked or refusing writes."""
    if isinstance(err, TracklineError | OSError | OperationalError):
        return True
    if isinstance(err, DBAPIError):
        state = getattr(err.orig, "sqlstate", None) or getattr(err.orig, "pgcode", None)
        return err.connection_invalidated or (
            isinstance(state, str) and state[:2] in _SERVER_SQLSTATES
        )
    return False


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


def _check_runs(batch: StreamBatch, stages: dict[str, tuple[int, int]]) -> Rejection | None:
    for run_id in batch.segs.run_ids:
        found = stages.get(run_id)
        if found is None:
            return Rejection("RUN_NOT_FOUND", f"no run with id {shown(run_id)}")
        stage, exp_stage = found
        if stage != ACTIVE:
            return Rejection("RUN_DELETED", f"run {shown(run_id)} is deleted; restore it first")
        if exp_stage != ACTIVE:
            return Rejection(
                "EXPERIMENT_DELETED",
                f"the experiment of run {shown(run_id)} is deleted; restore it first",
            )
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
