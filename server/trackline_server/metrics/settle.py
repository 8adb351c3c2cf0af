"""How a flush settles what it holds: which stream batches are stored, and the rows their
points and those of the flush's unary jobs become.

``settle`` reads the stored marks and epochs of the flush's writers (``marks.py``), asks the
writer's ``RunCheck`` which of the batches' runs may not be written, and decides each batch:
refused (its stream was fenced: an older epoch), skipped (a resend, at or below the mark),
rejected (refused on arrival, or its run cannot be written), or accepted. ``Writes`` is what
the accepted points become: chunk rows for series long enough, one metric log row for the
rest, and each series' latest value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import Aborted, TracklineError
from ..shield import retrieve
from ..sql import Writer
from . import chunks, flush_log, marks, segments
from .marks import Rejection
from .segments import Segments

# Which of the given run ids may not be written, each with its rejection (RUN_NOT_FOUND,
# RUN_DELETED, EXPERIMENT_DELETED), in the flush's transaction. Tracking owns runs, so it
# provides the check (tracking/writable.py) and the writer is given one.
# Which of some runs may not take points, each with the error that says why.
RunCheck = Callable[[Writer, Sequence[str]], Awaitable[Mapping[str, TracklineError]]]

# Series with at least this many points in one flush are written as chunks at once.
DIRECT_CHUNK_POINTS = 1024
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
class WriterStats:
    flushes: int = 0
    points: int = 0
    batches: int = 0
    skipped: int = 0
    rejected: int = 0
    fenced: int = 0

    def add(self, other: WriterStats) -> None:
        """Adds a flush's counts (all but ``flushes``)."""
        for name in ("points", "batches", "skipped", "rejected", "fenced"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Writes:
    """The rows the points of a flush become, worked out before its transaction where it can
    be: on SQLite the write lock is then held only for the statements, and a flush that waits
    for a compaction to release it has its work done meanwhile."""

    parts: int  # how many writes' points these are
    chunk_rows: list[chunks.Row]  # series with DIRECT_CHUNK_POINTS or more points
    log_points: int  # the points of the other series, in one metric log row
    log_body: bytes
    latest: list[dict[str, Any]]  # chunks.latest_rows

    @classmethod
    def of(cls, parts: list[Segments]) -> Writes:
        """The rows of ``parts``, in order: where two points tie for a series' latest value,
        the later part's wins."""
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

    async def store(self, conn: Writer) -> None:
        """Writes the rows, in the caller's transaction."""
        await chunks.insert_rows(conn, self.chunk_rows)
        if self.log_points:
            await flush_log.append(conn, self.log_points, self.log_body)
        await chunks.upsert_latest_rows(conn, self.latest)


@dataclass
class Settled:
    """What a flush decided for its stream batches (``settle``)."""

    # Per batch: None (accepted, or a resend of a stored batch), a Rejection (stored as
    # refused) or an error (neither stored nor settled: its stream was fenced).
    outcomes: list[Rejection | TracklineError | None]
    accepted: list[Segments]
    refused: list[tuple[str, int, Rejection]]
    moved: dict[str, int]  # writer id -> its new high-water mark

    @classmethod
    def none(cls) -> Settled:
        """That of a flush without stream batches."""
        return cls([], [], [], {})

    @classmethod
    def of(
        cls,
        batches: Sequence[StreamBatch],
        writers: list[Any],
        unwritable: Mapping[str, TracklineError],
        stats: WriterStats,
    ) -> Settled:
        """From the stored (writer id, seq, epoch) rows of the batches' writers and the
        rejections of the runs that may not be written."""
        stored = {w: int(seq) for w, seq, _ in writers}
        epochs = {w: int(epoch) for w, _, epoch in writers}
        high_water = dict(stored)
        settled = cls([], [], [], {})
        for b in batches:
            if b.epoch < epochs.get(b.writer_id, 0):
                settled.outcomes.append(fenced())  # the writer's newer stream resends it
                stats.fenced += 1
                continue
            if b.seq <= high_water.get(b.writer_id, 0):
                settled.outcomes.append(None)  # a resend of a committed batch
                stats.skipped += 1
                continue
            high_water[b.writer_id] = b.seq
            rejection = b.refused or _check_runs(b, unwritable)
            settled.outcomes.append(rejection)
            if rejection is None:
                settled.accepted.append(b.segs)
                stats.batches += 1
                stats.points += b.points
            else:
                settled.refused.append((b.writer_id, b.seq, rejection))
                stats.rejected += 1
        settled.moved = {w: s for w, s in high_water.items() if stored.get(w) != s}
        return settled

    async def record(self, conn: AsyncConnection) -> None:
        """Stores the moved marks and the rejections, in the flush's transaction."""
        if self.moved:
            await marks.move(conn, self.moved)
        if self.refused:
            await marks.remember(conn, self.refused)


async def settle(
    conn: AsyncConnection,
    batches: Sequence[StreamBatch],
    check_runs: RunCheck,
    stats: WriterStats,
) -> Settled:
    """Decides the flush's stream batches in its transaction (see the module's docstring);
    the caller stores the accepted points, then ``Settled.record``."""
    if not batches:
        return Settled.none()
    size = sum(len(b.segs.series) for b in batches)
    writers = await marks.read(conn, list(dict.fromkeys(b.writer_id for b in batches)))
    run_ids = await _off_loop(size, _distinct_runs, batches)
    unwritable = await check_runs(conn, run_ids) if run_ids else {}
    return await _off_loop(size, Settled.of, batches, writers, unwritable, stats)


def _distinct_runs(batches: Sequence[StreamBatch]) -> list[str]:
    return list({s[0]: None for b in batches for s in b.segs.series})


def _check_runs(batch: StreamBatch, unwritable: Mapping[str, TracklineError]) -> Rejection | None:
    """The rejection of the batch's first run that may not be written, if any."""
    if unwritable:
        for run_id in batch.segs.run_ids:
            if run_id in unwritable:
                error = unwritable[run_id]
                return Rejection(error.reason, error.message)
    return None


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
