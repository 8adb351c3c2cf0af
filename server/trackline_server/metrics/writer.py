"""The group-commit writer: one task per server process turns every pending write (stream
batches and unary LogBatch calls alike) into one transaction per flush.

A flush starts when the first item arrives and gathers for ``linger`` seconds (when stream
batches are queued; unary calls alone are flushed at once), or less when ``flush_points``
points wait, and takes at most that many points. Its transaction settles the
stream batches (``settle.py``: fenced streams refused, resends skipped, batches for runs that
may not be written rejected), runs each unary job in a savepoint so one bad call cannot undo
the others, then writes the points of the accepted batches and of the jobs that apply, all
alike: chunks for long series, one metric log row for the short ones (``flush_log.py``; the
compactor moves them into chunks later), and each series' latest value, in the same
transaction, so search sees a point as soon as it is acked; last it moves the writers'
high-water marks (``marks.py``). Only after COMMIT are the waiters resolved.

Whatever could fail a transaction is checked per batch before it joins one (``segments``
and the stream's checks); a flush that fails all the same is retried in halves, so that only
the items that break it fail (``_isolate``), unless the failure is plainly the database's
(unreachable, full, locked), when all of them fail at once.

The queue is bounded in points and bytes. Streams wait for room (``put_batch``), which stops
them reading and pushes back through HTTP/2 flow control; unary calls are refused at once
(``put_job`` raises ResourceExhausted with a retry delay).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection

from .. import idempotency, limits
from ..database import Database
from ..errors import ResourceExhausted, TracklineError, Unavailable, internal
from ..shield import shielded
from ..sql import Writer
from . import marks, settle
from .marks import Handshake, Rejection
from .segments import Segments
from .settle import RunCheck, StreamBatch, WriterStats, future

__all__ = ["GroupCommitWriter", "Handshake", "Job", "Rejection", "RunCheck", "StreamBatch"]

log = logging.getLogger("trackline.ingest")
LOG_BATCH = "LogBatch"  # the method that request ids of jobs are recorded for
# Turns of the event loop a flush of unary calls alone waits for calls already on their way
# (``_gather_ready_calls``): at 16 concurrent LogBatch calls a flush then held ~5.5 calls
# instead of ~4, and the server answered 5-15% more calls/s.
UNARY_TURNS = 8


@dataclass
class Job:
    """A unary call (LogBatch) that writes points to the run ``run_id``.

    ``apply``, when the call has more than points to write (params, tags), writes that in a
    savepoint of the flush, raising to refuse the call (its run's checks and its request id's
    included), and says whether the call applies: False for the retry of a call already
    applied, whose points are then skipped. A call of points alone has none: the flush checks
    the runs and the request ids (``request_id``, AIP-155) of all such jobs at once, as it
    does a stream's batches (a savepoint and three statements per job took ~0.6 ms each, most
    of a lone call's flush). The points (``segs``, checked before the job is queued) of the
    jobs that apply are written with the flush's other points. ``done`` resolves to whether
    the job applied once the flush commits."""

    run_id: str
    apply: Callable[[AsyncConnection], Awaitable[bool]] | None
    segs: Segments
    request_bytes: int = 0  # the rest of what the call holds in memory (its request)
    request_id: str = ""  # of a job without ``apply``; "" for none
    done: asyncio.Future[bool] = field(default_factory=future)

    @property
    def points(self) -> int:
        return self.segs.points

    @property
    def nbytes(self) -> int:
        return self.segs.nbytes + self.request_bytes


Item = StreamBatch | Job


class GroupCommitWriter:
    def __init__(
        self,
        db: Database,
        check_runs: RunCheck,
        *,
        max_points: int = limits.INGEST_MAX_POINTS,
        max_bytes: int = limits.INGEST_MAX_BYTES,
        linger: float = limits.INGEST_LINGER_MS / 1000,
        flush_points: int = 400_000,
        on_logged: Callable[[], None] | None = None,
    ) -> None:
        """``check_runs`` says which runs of a flush's stream batches may not be written
        (tracking provides it); ``on_logged`` is called after each flush that appended points
        to the metric log (the compactor's cue)."""
        self.db = db
        self.check_runs = check_runs
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

    async def handshake(self, writer_id: str, key_hash: str, owner: str | None) -> Handshake:
        """Hands the writer to a new stream (``marks.take_over``, in a write transaction
        of its own); the writer's batches after a failed one may commit again, as the
        client resends from the stored mark."""

        async def take_over() -> Handshake:
            async with self.db.write() as conn:
                return await marks.take_over(conn, writer_id, key_hash, owner)

        # A stream cancelled during its handshake must not cut the transaction short.
        shake = await shielded(take_over())
        self._failed.pop(writer_id, None)
        return shake

    async def high_water(self, writer_id: str) -> tuple[int, list[tuple[int, Rejection]]]:
        """The writer's stored high-water sequence and rejections (as ``handshake``), for an
        in-process writer without a key; like a handshake, it lets the writer's batches after
        a failed one commit again (the caller resends from the mark)."""
        self._failed.pop(writer_id, None)
        async with self.db.read() as conn:
            return await marks.mark(conn, writer_id)

    async def put_batch(self, batch: StreamBatch) -> None:
        """Queues a stream batch, waiting while the queue is full."""
        if not self._has_room(batch):
            async with self._room:
                await self._room.wait_for(lambda: self._closing or self._has_room(batch))
        self._enqueue(batch)

    def put_job(self, job: Job) -> asyncio.Future[bool]:
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
            # Streams linger so that their batches share the transaction: they keep sending,
            # and a batch that waits a few ms for company costs its sender nothing. Unary calls
            # do not: each caller waits for its answer, so the flush goes once the loop has run
            # what it holds, and the calls that arrive while it commits make up the next one
            # (classic group commit; at 16 concurrent LogBatch calls a 4 ms linger held
            # throughput to ~800 calls/s).
            only_calls = all(isinstance(item, Job) for item in self._items)
            if only_calls:
                await self._gather_ready_calls()
            deadline = time.monotonic() + (0.0 if only_calls else self.linger)
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
            async with self._room:
                self._room.notify_all()
            await self._flush(items)
            if self._closing and not self._items:
                return
            if self._items:
                self._arrived.set()

    async def _gather_ready_calls(self) -> None:
        """Lets the event loop run what it already holds for UNARY_TURNS turns, so that the
        calls gRPC has handed to it join this flush: a call takes a few turns from there to
        the queue (its task, the edge's), and a turn with nothing to run costs ~1 us."""
        for _ in range(UNARY_TURNS):
            if self._queued_points >= self.flush_points:
                return
            await asyncio.sleep(0)

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
        if not items:
            return
        batches = [i for i in items if isinstance(i, StreamBatch)]
        jobs = [i for i in items if isinstance(i, Job)]
        stats = WriterStats()
        try:
            # Assumes every batch not refused on arrival is accepted and every job applies:
            # the transaction plans again in the rare flush where one does not.
            parts = [b.segs for b in batches if b.refused is None] + [j.segs for j in jobs]
            planned = await settle.Writes.planned(parts)
            if not batches and all(job.apply is None for job in jobs):
                # Unary metric writes alone (the common small flush): on the driver, whose
                # transaction costs a third of SQLAlchemy's (``snapshot.Transaction``).
                settled = settle.Settled.none()
                async with self.db.transaction() as tx:
                    applied = await self._check_jobs(tx, jobs)
                    writes = await _writes(planned, [], jobs, applied)
                    await writes.store(tx)
            else:
                async with self.db.write() as conn:
                    settled = await settle.settle(conn, batches, self.check_runs, stats)
                    applied = await self._check_jobs(conn, jobs)
                    for i, job in enumerate(jobs):
                        if job.apply is not None:
                            applied[i] = await _apply(conn, job)
                    writes = await _writes(planned, settled.accepted, jobs, applied)
                    await writes.store(conn)
                    await settled.record(conn)
        except Exception as err:  # the transaction did not commit: nothing of it is acked
            await self._isolate(items, err)
            return
        self.stats.flushes += 1
        self.stats.add(stats)
        if writes.log_points and self.on_logged is not None:
            self.on_logged()
        for batch, outcome in zip(batches, settled.outcomes, strict=True):
            if batch.done.done():
                continue
            if isinstance(outcome, TracklineError):
                batch.done.set_exception(outcome)
            else:
                batch.done.set_result(outcome)
        for job, result in zip(jobs, applied, strict=True):
            if job.done.done():
                continue
            if isinstance(result, Exception):
                job.done.set_exception(result)
            else:
                job.done.set_result(result)

    async def _check_jobs(self, conn: Writer, jobs: list[Job]) -> list[bool | Exception]:
        """Whether each job without ``apply`` applies, or why not (its run and its request id
        checked with the others'); True for those with one, which the caller applies."""
        bare = [job for job in jobs if job.apply is None]
        run_ids = list(dict.fromkeys(job.run_id for job in bare))
        refused = await self.check_runs(conn, run_ids) if run_ids else {}
        rids = [job.request_id for job in bare if job.request_id and job.run_id not in refused]
        seen = await idempotency.applied_many(conn, rids)
        outcomes: dict[int, bool | Exception] = {}
        new: dict[str, str] = {}  # request id -> run, of the calls that apply now
        for job in bare:
            outcomes[id(job)] = _outcome(job, refused.get(job.run_id), seen, new)
        taken = await idempotency.record_many(conn, LOG_BATCH, new)
        for job in bare:  # recorded first by a concurrent attempt: this one must not apply
            if job.request_id in taken and outcomes[id(job)] is True:
                outcomes[id(job)] = idempotency.in_flight(job.request_id)
        return [outcomes.get(id(job), True) for job in jobs]

    async def _isolate(self, items: list[Item], err: Exception) -> None:
        """After a flush of ``items`` failed with ``err``: retries them in halves (each its
        own transaction, in order), so that only the items that break a transaction fail;
        when the failure is plainly the database's, or one item is left, fails them."""
        if len(items) > 1 and not settle.not_an_items_fault(err):
            log.warning("an ingest flush of %d items failed; retrying them in halves", len(items))
            half = len(items) // 2
            await self._flush(items[:half])
            await self._flush(items[half:])
            return
        # The log gets the exception; the callers an error id, never its text (it can hold
        # SQL and bound parameters: other clients' writer ids and runs).
        # The store's own refusal (STORE_LOST, STORE_FULL, ...) reaches the callers as it is.
        failure = (
            err
            if isinstance(err, Unavailable)
            else Unavailable(
                "WRITE_FAILED",
                f"the write did not commit: {internal(err, 'the ingest flush').message}",
            )
        )
        for item in items:
            if not item.done.done():
                item.done.set_exception(failure)
            if isinstance(item, StreamBatch):
                failed = self._failed.get(item.writer_id, item.seq)
                self._failed[item.writer_id] = min(item.seq, failed)

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


async def _writes(
    planned: settle.Writes,
    accepted: list[Segments],
    jobs: list[Job],
    applied: list[bool | Exception],
) -> settle.Writes:
    """The flush's rows: those ``planned`` for every batch and job, unless some did not apply
    (then planned again, for the rest)."""
    parts = accepted + [job.segs for job, ok in zip(jobs, applied, strict=True) if ok is True]
    return planned if len(parts) == planned.parts else await settle.Writes.planned(parts)


def _outcome(
    job: Job,
    refusal: Exception | None,
    seen: dict[str, tuple[str, str]],
    new: dict[str, str],
) -> bool | Exception:
    """Whether a job without ``apply`` applies: not when its run refuses it, nor when its
    request id was applied before (by an earlier flush, ``seen``, or earlier in this one,
    ``new``, where it is added when it applies now)."""
    if refusal is not None:
        return refusal
    rid = job.request_id
    if not rid:
        return True
    resource, method = seen.get(rid) or (new.get(rid), LOG_BATCH)
    if method != LOG_BATCH:
        return idempotency.reused(rid, f"a {method} call")
    if resource is None:
        new[rid] = job.run_id
        return True
    if resource != job.run_id:
        return idempotency.reused(rid, "another run")
    return False  # the retry of a call that was applied: its points are skipped


async def _apply(conn: AsyncConnection, job: Job) -> bool | Exception:
    """Runs the job's ``apply`` in a savepoint: whether it applies, or why it failed (rolled
    back to the savepoint; the flush goes on)."""
    assert job.apply is not None
    try:
        async with conn.begin_nested():
            return await job.apply(conn)
    except Exception as err:
        return err
