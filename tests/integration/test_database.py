"""The database layer on a real SQLite file and a real PostgreSQL: read transactions and
snapshots beside the writer, and the driver-level statements of the hot paths."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select
from trackline_server.database import Database
from trackline_server.models import ingest_writers, metric_log
from trackline_server.sql import Query, among, compile_sql, execute, execute_many, rows


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


SEQ = Query(lambda _: select(ingest_writers.c.seq))


def test_a_snapshot_reads_one_view_beside_the_writer(database_url: str) -> None:
    """A snapshot (the unit of work of @reads) answers while a write transaction holds the
    lock, lets the writer commit while it is open, and sees one state for all its
    statements: what was committed before its first read, nothing committed after."""

    async def main() -> None:
        db = await open_db(database_url)
        try:
            await _writer_row(db, 1)
            async with db.write() as conn:
                await conn.execute(ingest_writers.update().values(seq=2))
                async with db.snapshot() as snap:  # the write is open and holds the lock
                    seen = await asyncio.wait_for(rows(snap, SEQ), timeout=5)
                assert seen == [(1,)]
            async with db.snapshot() as snap:
                assert [tuple(r) for r in await rows(snap, SEQ)] == [(2,)]

                async def write() -> None:
                    async with db.write() as conn:
                        await conn.execute(ingest_writers.update().values(seq=3))

                await asyncio.wait_for(write(), timeout=5)  # the snapshot stays open meanwhile
                assert [tuple(r) for r in await rows(snap, SEQ, aside=True)] == [(2,)]
            async with db.snapshot() as snap:
                assert [tuple(r) for r in await rows(snap, SEQ)] == [(3,)]
        finally:
            await db.close()

    run(main())


def test_a_snapshot_cannot_write(database_url: str) -> None:
    """The read-only unit of work refuses a write in the database itself (query_only on
    SQLite, a READ ONLY transaction on PostgreSQL), and the pool stays usable after it."""
    bump = ingest_writers.update().values(seq=9)

    async def main() -> None:
        db = await open_db(database_url)
        try:
            await _writer_row(db, 1)
            with pytest.raises(Exception, match="(?i)read.?only|readonly"):
                async with db.snapshot() as snap:
                    await snap.fetch(*_sql(bump, db))
            async with db.snapshot() as snap:
                assert [tuple(r) for r in await rows(snap, SEQ)] == [(1,)]
        finally:
            await db.close()

    run(main())


def test_many_concurrent_snapshots(database_url: str) -> None:
    """Sixty-four snapshots at once, half with statements run aside on worker threads, each
    see the committed row."""

    async def main() -> None:
        db = await open_db(database_url)
        try:
            await _writer_row(db, 5)

            async def read(i: int) -> list[tuple[int]]:
                async with db.snapshot() as snap:
                    await asyncio.sleep(0)  # every snapshot open at once
                    return [tuple(r) for r in await rows(snap, SEQ, aside=i % 2 == 0)]

            assert await asyncio.gather(*(read(i) for i in range(64))) == [[(5,)]] * 64
        finally:
            await db.close()

    run(main())


def test_a_snapshot_never_creates_the_file(tmp_path: Path) -> None:
    """A read on a SQLite file that is not there fails; it does not make an empty one (and
    serve it) in its place, as a plain sqlite3.connect would."""
    path = tmp_path / "gone.db"

    async def main() -> None:
        db = Database(f"sqlite+aiosqlite:///{path}")
        try:
            with pytest.raises(Exception, match="unable to open|cannot reach"):
                async with db.snapshot() as snap:
                    await rows(snap, SEQ)
        finally:
            await db.close()

    run(main())
    assert not path.exists()


async def _writer_row(db: Database, seq: int) -> None:
    """Commits the one ingest_writers row these tests read (``SEQ``)."""
    async with db.write() as conn:
        await conn.execute(insert(ingest_writers).values(writer_id="w", seq=seq, updated_time=0))


def _sql(stmt: Any, db: Database) -> tuple[str, list[Any]]:
    compiled = compile_sql(stmt, db.engine.dialect)
    return compiled.sql, compiled.values({}, db.engine.dialect.name)


W = ingest_writers.c
BUMP = Query(lambda _: ingest_writers.update().values(seq=W.seq + 1))
DROP_ABSENT = Query(lambda _: ingest_writers.delete().where(W.writer_id == "absent"))


def test_a_driver_transaction_commits_or_rolls_back_as_a_whole(database_url: str) -> None:
    """The writer's transaction on the driver (``Database.transaction``): what it wrote is
    there once it commits, and nothing of one whose statement failed (a duplicate key), and
    the next one goes on as usual; ``sql.execute`` counts the rows it changed."""
    row = {"writer_id": "w", "seq": 1, "updated_time": 0}

    async def main() -> None:
        db = await open_db(database_url)
        try:
            async with db.transaction() as tx:
                await execute_many(tx, insert(ingest_writers), [row])
                assert [tuple(r) for r in await rows(tx, SEQ)] == [(1,)]  # its own write
            with pytest.raises(Exception, match="(?i)unique|duplicate"):
                async with db.transaction() as tx:
                    assert await execute(tx, BUMP) == 1
                    await execute_many(tx, insert(ingest_writers), [row])
            async with db.snapshot() as snap:
                assert [tuple(r) for r in await rows(snap, SEQ)] == [(1,)]
            async with db.transaction() as tx:
                assert await execute(tx, BUMP) == 1
                assert await execute(tx, DROP_ABSENT) == 0
            async with db.snapshot() as snap:
                assert [tuple(r) for r in await rows(snap, SEQ)] == [(2,)]
        finally:
            await db.close()

    run(main())


def test_driver_transactions_and_sqlalchemy_writes_take_turns(database_url: str) -> None:
    """Forty concurrent increments of one row, half through each unit of work: none is lost
    (on SQLite both hold the one write lock; on PostgreSQL the row's lock)."""

    async def main() -> None:
        db = await open_db(database_url)
        try:
            await _writer_row(db, 0)

            async def bump(i: int) -> None:
                if i % 2:
                    async with db.transaction() as tx:
                        await asyncio.sleep(0)  # the others queue meanwhile
                        await execute(tx, BUMP)
                else:
                    async with db.write() as conn:
                        await asyncio.sleep(0)
                        await conn.execute(ingest_writers.update().values(seq=W.seq + 1))

            await asyncio.gather(*(bump(i) for i in range(40)))
            async with db.snapshot() as snap:
                assert [tuple(r) for r in await rows(snap, SEQ)] == [(40,)]
        finally:
            await db.close()

    run(main())


def test_a_write_waiting_for_another_process_does_not_hold_the_loop(tmp_path: Path) -> None:
    """SQLite writes run their statements on the event loop's thread (inline_sqlite.py); one
    that meets the write lock of another process waits for it on a worker thread instead, so
    the loop goes on meanwhile, and the write commits once the lock is released."""
    path = tmp_path / "trackline.db"

    async def main() -> None:
        db = await open_db(f"sqlite+aiosqlite:///{path}")
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.create_task(tick())

            pending = asyncio.create_task(_writer_row(db, 1))
            await asyncio.sleep(0.3)
            assert not pending.done()
            assert ticks >= 10  # the loop ran while the write waited
            other.execute("ROLLBACK")
            await asyncio.wait_for(pending, timeout=10)
            ticker.cancel()
            async with db.snapshot() as snap:
                assert [tuple(r) for r in await rows(snap, SEQ)] == [(1,)]
        finally:
            other.close()
            await db.close()

    run(main())


def test_driver_statements_match_sqlalchemy(database_url: str) -> None:
    """sql.rows and execute_many give what conn.execute gives: one row, many rows, IN lists
    (empty and long, as a statement's own and as one ``among`` parameter), unicode and the
    extremes of int64; in a write transaction, the driver's and on a read snapshot alike."""
    rows_in = [{"writer_id": f"w-{i}-ü", "seq": i * 2**40, "updated_time": -i} for i in range(1500)]
    rows_in.append({"writer_id": "max", "seq": 2**63 - 1, "updated_time": -(2**63)})
    w = ingest_writers.c
    by_ids = Query(
        lambda d: (
            select(w.writer_id, w.seq, w.updated_time)
            .where(among(w.writer_id, "ids", d))
            .order_by(w.writer_id)
        )
    )

    async def main() -> None:
        db = await open_db(database_url)
        try:
            async with db.write() as conn:
                await execute_many(conn, insert(ingest_writers), rows_in[:1])
                await execute_many(conn, insert(ingest_writers), rows_in[1:])
                await execute_many(conn, insert(ingest_writers), [])
            async with db.read() as conn:
                everything = select(w.writer_id, w.seq, w.updated_time).order_by(w.writer_id)
                want = [tuple(r) for r in await conn.execute(everything)]
                ids = [r["writer_id"] for r in rows_in[::3]] + ["absent"]
                some = everything.where(w.writer_id.in_(ids))
                want_some = [tuple(r) for r in await conn.execute(some)]
            assert sorted(want) == sorted((r["writer_id"], r["seq"], r["updated_time"])
                                          for r in rows_in)  # fmt: skip
            none = everything.where(w.writer_id.in_([]))
            async with db.write() as conn, db.snapshot() as snap:
                for reader in (conn, snap):
                    assert [tuple(r) for r in await rows(reader, everything)] == want
                    assert [tuple(r) for r in await rows(reader, some)] == want_some
                    assert await rows(reader, none) == []
                    found = await rows(reader, by_ids, {"ids": ids})
                    assert [tuple(r) for r in found] == want_some
                    assert await rows(reader, by_ids, {"ids": []}) == []
            async with db.transaction() as tx:  # the writer's unit of work reads alike
                assert [tuple(r) for r in await rows(tx, everything)] == want
                assert [tuple(r) for r in await rows(tx, by_ids, {"ids": ids})] == want_some
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
