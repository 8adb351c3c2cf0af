"""Chart views read from chunk summaries match a brute-force reading of the same points, and
a store upgraded from migration 0002 reads its old, unsummarised chunks beside new ones."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from alembic import command
from sqlalchemy import Connection, select
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline import TracklineClient
from trackline.v1 import ingest_pb2 as ipb
from trackline_server import migrate
from trackline_server.database import Database
from trackline_server.metrics import summary
from trackline_server.models import metric_chunks

from tests.support.databases import fresh_postgres_database
from tests.support.histories import Point, is_sorted, log, stream, view
from tests.support.old_schemas import add_experiment_and_run
from tests.support.points import Series
from tests.support.servers import ServerProcess, start_server

T = TypeVar("T")
Chunk = tuple[int, int, int, int, bool, bytes]  # rank, n, min_step, max_step, summarised, points


def on_store(store_uri: str, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Runs ``fn`` in a write transaction on the store, beside the server."""

    async def go() -> T:
        db = Database(store_uri)
        try:
            async with db.write() as conn:
                return await fn(conn)
        finally:
            await db.close()

    return asyncio.run(go())


def stored_chunks(store_uri: str, run_id: str, key: str) -> list[Chunk]:
    c = metric_chunks.c

    async def read(conn: AsyncConnection) -> list[Chunk]:
        rows = await conn.execute(
            select(c.rank, c.n, c.min_step, c.max_step, c.summary.is_not(None), c.points)
            .where(c.run_id == run_id, c.key == key)
            .order_by(c.min_step, c.chunk_id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]

    return on_store(store_uri, read)


def insert_old_chunk(
    store_uri: str, run_id: str, key: str, steps: list[int], stamps: list[int], values: list[float]
) -> None:
    """A chunk as written before summaries existed (summary NULL), of rank 0."""
    blob = ipb.RankedSeries(steps=steps, timestamps=stamps, values=values).SerializeToString()

    async def insert(conn: AsyncConnection) -> None:
        await conn.execute(
            metric_chunks.insert().values(run_id=run_id, key=key, rank=0, n=len(steps),
                                          min_step=min(steps), max_step=max(steps), points=blob)
        )  # fmt: skip

    on_store(store_uri, insert)


@dataclass
class Expected:
    """The buckets of a view as ``downsample.downsample`` documents them, from the stored points:
    points of a chunk whose summary serves go to the bucket of their summary block's first
    step, every other point to the bucket of its own step."""

    points: dict[tuple[int, int, int], tuple[float, int]]  # (step, stamp, rank): (value, bucket)
    served: int  # chunks whose summary stood in for their points
    unserved_summaries: int  # summarised chunks read from their points


def expected_view(
    chunks: Sequence[Chunk], max_points: int, rank: int | None = None,
    start: int | None = None, end: int | None = None,
) -> Expected:  # fmt: skip
    def wanted(step: int) -> bool:
        return (start is None or step >= start) and (end is None or step <= end)

    cols = []
    for r, n, lo_step, hi_step, summarised, blob in chunks:
        if rank is None or r == rank:
            msg = ipb.RankedSeries.FromString(blob)
            cols.append((r, n, lo_step, hi_step, summarised, list(msg.steps),
                         list(msg.timestamps), list(msg.values)))  # fmt: skip
    steps = [s for c in cols for s in c[5] if wanted(s)]
    lo, span, buckets = min(steps), max(steps) - min(steps) + 1, max_points // 3
    out = Expected({}, 0, 0)
    for r, n, lo_step, hi_step, summarised, c_steps, c_stamps, c_values in cols:
        by = c_steps
        if summarised and wanted(lo_step) and wanted(hi_step):
            if (hi_step - lo_step + 1) * summary.BLOCK * buckets * 4 <= n * span:
                order = sorted(range(n), key=lambda i: (c_steps[i], c_stamps[i], i))
                by = [0] * n
                for k, i in enumerate(order):
                    by[i] = c_steps[order[k - k % summary.BLOCK]]
                out.served += 1
            else:
                out.unserved_summaries += 1
        for i, step in enumerate(c_steps):
            if wanted(step):
                bucket = (by[i] - lo) * buckets // span
                out.points[(step, c_stamps[i], r)] = (c_values[i], bucket)
    return out


def check_view(got: Sequence[Point], want: Expected, max_points: int) -> None:
    """At most max_points real points, sorted; each bucket's min, max (NaN ignored) and last
    point (highest step, then timestamp) present; nothing else."""
    assert 0 < len(got) <= max_points and is_sorted(got)
    members: dict[int, list[tuple[int, int, int]]] = {}
    for ident, (_, bucket) in want.points.items():
        members.setdefault(bucket, []).append(ident)
    chosen: dict[int, set[tuple[int, int, int]]] = {}
    for step, stamp, value, rank in got:
        stored, bucket = want.points[(step, stamp, rank)]
        assert value == stored or (math.isnan(value) and math.isnan(stored))
        chosen.setdefault(bucket, set()).add((step, stamp, rank))
    assert set(chosen) == set(members)
    for bucket, idents in members.items():
        finite = [want.points[i][0] for i in idents if not math.isnan(want.points[i][0])]
        extremes = {min(finite), max(finite)} if finite else set()
        last = max(idents)  # steps, then stamps: unique in these tests
        picked = {want.points[i][0] for i in chosen[bucket]}
        assert extremes <= picked and last in chosen[bucket]
        assert all(want.points[i][0] in extremes or i == last for i in chosen[bucket])


def test_views_from_summaries_match_brute_force(
    server: ServerProcess, client: TracklineClient
) -> None:
    """Three ranks of big chunks (one written in shuffled order), a small chunk and a chunk
    from before summaries; NaN, infinities and an all-NaN summary block; ranges that cut
    chunks; views coarse enough for summaries and one too fine for them."""
    run_id = client.create_run().run_id
    rng = random.Random(11)
    n = 65_536
    values = [rng.random() for _ in range(n)]
    values[1024:1536] = [math.nan] * 512  # a whole summary block
    values[997::997] = [math.nan] * len(values[997::997])
    values[40_000], values[40_001] = math.inf, -math.inf
    for a in range(0, n, 16_384):
        steps = list(range(a, a + 16_384))
        log(client, run_id, "m", steps, values[a : a + 16_384], [10 * s for s in steps])
    shuffled = []
    for a in range(0, n, 16_384):
        steps = list(range(a, a + 16_384))
        rng.shuffle(steps)
        shuffled.append(steps)
    stream(server, [ranked_points(run_id, 1, steps, rng) for steps in shuffled])
    stream(server, [ranked_points(run_id, 2, list(range(a, a + 32_768)), rng)
                    for a in (16_384, 49_152)])  # fmt: skip
    small = list(range(70_000, 70_100))
    log(client, run_id, "m", small, [rng.random() for _ in small], [10 * s for s in small])
    old = list(range(30_000, 30_100))
    old_values = [rng.random() for _ in old]
    old_values[50], old_values[51] = 1e9, -1e9
    insert_old_chunk(server.store_uri, run_id, "m", old, [10 * s + 5 for s in old], old_values)

    chunks = stored_chunks(server.store_uri, run_id, "m")
    assert any(c[4] for c in chunks) and not all(c[4] for c in chunks)
    for max_points, fields in (
        (30, {}), (90, {}), (90, {"rank": 1}), (60, {"start_step": 3_000, "end_step": 50_000}),
        (45, {"start_step": 16_384}), (1000, {}),
    ):  # fmt: skip
        want = expected_view(chunks, max_points, fields.get("rank"), fields.get("start_step"),
                             fields.get("end_step"))  # fmt: skip
        assert want.served if max_points < 1000 else want.unserved_summaries
        got = view(client, run_id, "m", max_points, **fields)
        check_view(got, want, max_points)
        if not fields:
            everyone = client.get_metric_histories([run_id], ["m"], max_points=max_points)
            assert everyone[(run_id, "m")] == [p[:3] for p in got]
    full = view(client, run_id, "m", 30)
    assert {p[2] for p in full} >= {1e9, -1e9, math.inf, -math.inf}


def ranked_points(run_id: str, rank: int, steps: list[int], rng: random.Random) -> Series:
    """Points of ``rank`` at ``steps``, with timestamps unique across ranks."""
    stamps = [10 * s + rank for s in steps]
    return run_id, "m", rank, steps, stamps, [rng.random() for _ in steps]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_at_0002(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database at revision 0002 (chunks without summaries), on SQLite and PostgreSQL."""
    if request.param == "postgresql":
        store_uri = fresh_postgres_database()
    else:
        store_uri = f"sqlite+aiosqlite:///{tmp_path / 'trackline.db'}"

    def to_0002(conn: Connection) -> None:
        cfg = migrate.make_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")

    async def create(conn: AsyncConnection) -> None:
        await conn.run_sync(to_0002)

    on_store(store_uri, create)
    return store_uri


def test_upgrade_from_0002_reads_old_chunks_beside_summarised_ones(
    store_at_0002: str, tmp_path: Path
) -> None:
    async def add_run(conn: AsyncConnection) -> str:
        return await add_experiment_and_run(conn, "old", run_tags={})

    run_id = on_store(store_at_0002, add_run)
    rng = random.Random(5)
    old = list(range(0, 20_000))  # one big chunk of the old kind
    old_values = [rng.random() for _ in old]
    old_values[123] = 1e9
    insert_old_chunk(store_at_0002, run_id, "m", old, [10 * s for s in old], old_values)

    srv = start_server(tmp_path, store_at_0002)
    client = TracklineClient(srv.address, retry_seconds=5)
    try:
        chunks = stored_chunks(store_at_0002, run_id, "m")
        assert [c[4] for c in chunks] == [False]
        got = view(client, run_id, "m", 30)
        check_view(got, expected_view(chunks, 30), 30)
        assert (123, 1230, 1e9, 0) in got
        steps = list(range(20_000, 60_000))
        log(client, run_id, "m", steps, [rng.random() for _ in steps], [10 * s for s in steps])
        chunks = stored_chunks(store_at_0002, run_id, "m")
        assert chunks[0][4] is False and all(c[4] for c in chunks[1:])
        want = expected_view(chunks, 30)
        assert want.served
        check_view(view(client, run_id, "m", 30), want, 30)
    finally:
        client.close()
        srv.stop()
