"""The database layer on a real SQLite file and a real PostgreSQL: read transactions beside
the writer, and the driver-level statements of the ingest hot path."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import insert, select
from trackline_server.database import Database, execute_many, fetch_all
from trackline_server.models import ingest_writers, metric_log


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


async def open_db(url: str) -> Database:
    db = Database(url)
    await db.create_schema()
    return db


def test_reads_neither_wait_for_nor_block_an_open_write(database_url: str) -> None:
    """A read sees the last commit while a write transaction is open, and the writer can
    commit while a read transaction is open (on SQLite reads used to take the write lock
    and wait in the busy handler)."""

    async def main() -> None:
        db = await open_db(database_url)
        try:
            async with db.write() as conn:
                first = {"writer_id": "w", "seq": 1, "updated_time": 0}
                await conn.execute(insert(ingest_writers).values(first))
            async with db.write() as conn:
                await conn.execute(ingest_writers.update().values(seq=2))
                async with db.read() as reader:  # the write is open and holds the lock
                    seen = await asyncio.wait_for(
                        reader.scalar(select(ingest_writers.c.seq)), timeout=5
                    )
                assert seen == 1
            async with db.read() as reader:
                assert await reader.scalar(select(ingest_writers.c.seq)) == 2

                async def write() -> None:
                    async with db.write() as conn:
                        await conn.execute(ingest_writers.update().values(seq=3))

                await asyncio.wait_for(write(), timeout=5)  # the read stays open meanwhile
                assert await reader.scalar(select(ingest_writers.c.seq)) in (2, 3)
        finally:
            await db.close()

    run(main())


def test_driver_statements_match_sqlalchemy(database_url: str) -> None:
    """fetch_all and execute_many give what conn.execute gives: one row, many rows, IN lists
    (empty and long), unicode and the extremes of int64."""
    rows = [{"writer_id": f"w-{i}-ü", "seq": i * 2**40, "updated_time": -i} for i in range(1500)]
    rows.append({"writer_id": "max", "seq": 2**63 - 1, "updated_time": -(2**63)})

    async def main() -> None:
        db = await open_db(database_url)
        try:
            async with db.write() as conn:
                await execute_many(conn, insert(ingest_writers), rows[:1])
                await execute_many(conn, insert(ingest_writers), rows[1:])
                await execute_many(conn, insert(ingest_writers), [])
            async with db.read() as conn:
                cols = (ingest_writers.c.writer_id, ingest_writers.c.seq,
                        ingest_writers.c.updated_time)  # fmt: skip
                everything = select(*cols).order_by(ingest_writers.c.writer_id)
                want = [tuple(r) for r in await conn.execute(everything)]
                assert sorted(want) == sorted((r["writer_id"], r["seq"], r["updated_time"])
                                              for r in rows)  # fmt: skip
                assert await fetch_all(conn, everything) == want
                ids = [r["writer_id"] for r in rows[::3]] + ["absent"]
                some = everything.where(ingest_writers.c.writer_id.in_(ids))
                assert await fetch_all(conn, some) == [tuple(r) for r in await conn.execute(some)]
                none = everything.where(ingest_writers.c.writer_id.in_([]))
                assert await fetch_all(conn, none) == []
        finally:
            await db.close()

    run(main())


def test_the_wal_starts_over_while_writes_never_stop(tmp_path: Path) -> None:
    """Under writes that never pause, the WAL file stays about as large as its restart size
    plus what is written between two checkpoints, not as large as everything written
    (SQLite restarts a WAL only once every frame in it has been copied, which a PASSIVE
    checkpoint never achieves beside a writer that keeps committing).

    The test asks for a checkpoint after every megabyte written rather than on a timer, so
    that a loaded machine delays it but cannot skip it."""
    path = tmp_path / "trackline.db"
    body = bytes(200_000)
    rounds = 100  # 20 MB in all; a checkpoint is asked for every 5 rounds (1 MB)

    async def main() -> None:
        db = Database(f"sqlite+aiosqlite:///{path}", wal_restart_bytes=1_000_000)
        await db.create_schema()
        writing = True
        megabyte_written = asyncio.Event()

        async def read() -> None:  # readers that keep a snapshot open for a while
            while writing:
                async with db.read() as conn:
                    await conn.scalar(select(metric_log.c.log_id).limit(1))
                    await asyncio.sleep(0.01)

        async def checkpoint() -> None:  # beside the writer, as the server's loop runs
            while writing:
                await megabyte_written.wait()
                megabyte_written.clear()
                await db.checkpoint()

        helpers = [asyncio.create_task(read()) for _ in range(3)]
        helpers.append(asyncio.create_task(checkpoint()))
        try:
            for i in range(1, rounds + 1):
                async with db.write() as conn:
                    await execute_many(conn, insert(metric_log), [{"points": 1, "body": body}])
                if i % 5 == 0:
                    megabyte_written.set()
            wal = path.with_name(path.name + "-wal").stat().st_size
            assert wal < rounds * len(body) / 2, f"the WAL grew to {wal:,} bytes"
        finally:
            writing = False
            megabyte_written.set()
            await asyncio.gather(*helpers)
            await db.close()

    run(main())
