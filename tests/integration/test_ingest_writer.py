"""The group-commit writer in-process, over a real SQLite file: unary jobs' points go the way
of stream batches' points, and, with a fault injected by a trigger in the database, what
happens to a stream's later batches when a flush fails."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from trackline_server.database import Database
from trackline_server.errors import InvalidArgument, Unavailable
from trackline_server.metrics import segments
from trackline_server.metrics.writer import GroupCommitWriter, Job, StreamBatch

from tests.support.writers import writer_with_a_run


def one_point(run_id: str, step: int, key: str = "loss") -> segments.Segments:
    one = np.ones(1, np.int64)
    return segments.numbered([run_id], [key], [0], one, one * step, one, np.full(1, 0.5))


async def fail_flushes(db: Database, on: bool) -> None:
    """Makes every flush that moves a latest value fail (a trigger raises), or stops it."""
    async with db.write() as conn:
        if on:
            await conn.execute(text(
                "CREATE TRIGGER fail_flush BEFORE INSERT ON latest_metrics"
                " BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
            ))  # fmt: skip
        else:
            await conn.execute(text("DROP TRIGGER fail_flush"))


async def started(tmp_path: Path) -> tuple[Database, GroupCommitWriter, str]:
    """A fresh store with one run, and a writer over it; returns them and the run's id."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'trackline.db'}")
    await db.create_schema()
    writer, run_id = await writer_with_a_run(db)
    return db, writer, run_id


def test_batches_after_a_failed_flush_are_not_stored_until_the_writer_reconnects(
    tmp_path: Path,
) -> None:
    """Batch 2 of a writer fails to commit; batch 3, sent on the same stream before the
    stream learnt of it, must not commit either, or the stored mark would pass 2 and a
    reconnecting client would take 2 for stored. After a handshake the resends commit."""

    async def main() -> None:
        db, writer, run_id = await started(tmp_path)

        async def send(seq: int) -> StreamBatch:
            batch = StreamBatch("w", seq, one_point(run_id, seq))
            await writer.put_batch(batch)
            await asyncio.wait([batch.done])
            return batch

        try:
            assert (await send(1)).done.result() is None
            await fail_flushes(db, True)
            failed = await send(2)
            assert isinstance(failed.done.exception(), Unavailable)
            await fail_flushes(db, False)
            after = await send(3)  # the same stream, before it was told
            error = after.done.exception()
            assert isinstance(error, Unavailable)
            assert "batch 2 of this stream did not commit" in error.message
            assert (await writer.high_water("w"))[0] == 1
            # The client reconnects (a handshake) and resends from the stored mark.
            assert (await send(2)).done.result() is None
            assert (await send(3)).done.result() is None
            assert (await writer.high_water("w"))[0] == 3
            async with db.read() as conn:
                stored = await conn.execute(text("SELECT step FROM latest_metrics"))
                assert [s for (s,) in stored] == [3]
        finally:
            await writer.close()
            await db.close()

    asyncio.run(main())


@pytest.mark.parametrize("other_writer_first", [True, False])
def test_a_failed_flush_does_not_hold_up_other_writers(
    tmp_path: Path, other_writer_first: bool
) -> None:
    async def main() -> None:
        db, writer, run_id = await started(tmp_path)
        try:
            await fail_flushes(db, True)
            bad = StreamBatch("a", 1, one_point(run_id, 1))
            await writer.put_batch(bad)
            await asyncio.wait([bad.done])
            await fail_flushes(db, False)
            good = StreamBatch("b", 5, one_point(run_id, 2))
            later = StreamBatch("a", 2, one_point(run_id, 3))
            for batch in (good, later) if other_writer_first else (later, good):
                await writer.put_batch(batch)
            await asyncio.wait([good.done, later.done])
            assert good.done.result() is None
            assert isinstance(later.done.exception(), Unavailable)
            assert (await writer.high_water("b"))[0] == 5
            assert (await writer.high_water("a"))[0] == 0
        finally:
            await writer.close()
            await db.close()

    asyncio.run(main())


def test_only_the_points_of_jobs_that_apply_are_stored(tmp_path: Path) -> None:
    """Jobs share a flush with a stream batch: the points of a job that applies are stored
    with the batch's; those of a retried call (apply says False) and of a refused one (apply
    raises, its savepoint rolls back) are not, and neither fails the others."""

    async def main() -> None:
        db, writer, run_id = await started(tmp_path)

        def job(key: str, applies: bool | None) -> Job:
            async def apply(conn: object) -> bool:
                if applies is None:
                    raise InvalidArgument("PARAM_CONFLICT", "refused", "params")
                return applies

            return Job(run_id, apply, one_point(run_id, 7, key))

        try:
            batch = StreamBatch("w", 1, one_point(run_id, 1, "streamed"))
            jobs = [job("applied", True), job("retried", False), job("refused", None)]
            await writer.put_batch(batch)
            for j in jobs:
                writer.put_job(j)
            await asyncio.wait([batch.done] + [j.done for j in jobs])
            assert batch.done.result() is None
            assert [j.done.result() for j in jobs[:2]] == [True, False]
            assert isinstance(jobs[2].done.exception(), InvalidArgument)
            assert writer.stats.flushes == 1  # one transaction for all four
            async with db.read() as conn:
                stored = await conn.execute(text("SELECT key, step FROM latest_metrics"))
                assert sorted(stored) == [("applied", 7), ("streamed", 1)]
                logged = await conn.scalar(text("SELECT sum(points) FROM metric_log"))
                assert logged == 2
        finally:
            await writer.close()
            await db.close()

    asyncio.run(main())
