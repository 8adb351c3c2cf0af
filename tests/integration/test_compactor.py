"""The compactor in-process over a real PostgreSQL: replicas take turns through an advisory
lock, so only one of them reads and chunks the log at a time."""

from __future__ import annotations

import asyncio

import numpy as np
from sqlalchemy import Table, func, select, text
from trackline_server.database import Database
from trackline_server.metrics import segments
from trackline_server.metrics.compactor import COMPACTION_LOCK, Compactor
from trackline_server.metrics.writer import StreamBatch
from trackline_server.models import metric_chunks, metric_log

from tests.support.writers import writer_with_a_run


async def log_rows(db: Database, count: int) -> None:
    """Commits ``count`` flushes of short series, each a metric log row."""
    writer, run_id = await writer_with_a_run(db)
    try:
        for seq in range(1, count + 1):
            ten = np.arange(10, dtype=np.int64)
            segs = segments.numbered(
                [run_id], ["loss"], [0], np.array([10]), ten + 10 * seq, ten, ten * 0.5
            )
            batch = StreamBatch("w", seq, segs)
            await writer.put_batch(batch)
            assert await batch.done is None
    finally:
        await writer.close()


async def count(db: Database, table: Table) -> int:
    async with db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


def test_a_replica_does_not_compact_while_another_holds_the_lock(postgres_url: str) -> None:
    async def main() -> None:
        db = Database(postgres_url)
        await db.create_schema()
        other = await db.engine.connect()  # stands for a replica in the middle of compacting
        try:
            await log_rows(db, 3)
            assert await count(db, metric_log) == 3
            other = await other.execution_options(isolation_level="AUTOCOMMIT")
            key = {"key": COMPACTION_LOCK}
            assert await other.scalar(text("SELECT pg_try_advisory_lock(:key)"), key)
            compactor = Compactor(db, delay=0)
            assert await compactor.compact() == (0, True)
            assert await count(db, metric_log) == 3  # untouched
            settling = asyncio.create_task(compactor.settle())
            await asyncio.sleep(0.2)
            assert not settling.done()  # a history read waits for the other replica
            await other.scalar(text("SELECT pg_advisory_unlock(:key)"), key)
            await asyncio.wait_for(settling, timeout=10)
            assert await count(db, metric_log) == 0
            assert await count(db, metric_chunks) == 1
        finally:
            await other.close()
            await db.close()

    asyncio.run(main())
