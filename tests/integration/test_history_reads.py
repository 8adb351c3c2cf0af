"""GetMetricHistory paging, step ranges, ranks and downsampling (from points and from chunk
summaries), and GetMetricHistories, on a real server over SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from alembic import command
from sqlalchemy import Connection, select
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline import InvalidArgument, NotFound, ResourceExhausted, TracklineClient
from trackline.v1 import ingest_pb2 as ipb
from trackline.v1 import ingest_pb2_grpc
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb
from trackline_server import migrate
from trackline_server.database import Database
from trackline_server.metrics import summary
from trackline_server.models import metric_chunks
from trackline_server.tracking import experiments, runs

from tests.support.databases import fresh_postgres_database
from tests.support.points import Series, block
from tests.support.servers import ServerProcess, start_server

Point = tuple[int, int, float, int]  # step, timestamp, value, rank
T = TypeVar("T")


def log(
    client: TracklineClient,
    run_id: str,
    key: str,
    steps: Sequence[int],
    values: Sequence[float],
    stamps: Sequence[int] | None = None,
) -> None:
    """One LogBatch call, then a read of the series, which moves what is still in the metric
    log into chunks (a short series waits there): one chunk of rank 0 per call."""
    series = pb.MetricSeries(
        key=key, steps=steps, timestamps=stamps or [1] * len(steps), values=values
    )
    client.log_batch(run_id, metrics=[series])
    req = tpb.GetMetricHistoryRequest(run_id=run_id, key=key, page_size=1)
    client.calls.GetMetricHistory(req)


def stream(server: ServerProcess, series: Sequence[Series]) -> None:
    """Writes ranked series through IngestService.StreamMetrics and waits for the ack."""
    channel = grpc.insecure_channel(server.address)
    try:
        requests = iter(
            [
                ipb.StreamMetricsRequest(
                    writer_id=f"w-{uuid.uuid4().hex}", writer_key=uuid.uuid4().bytes, seq=0
                ),
                ipb.StreamMetricsRequest(seq=1, block=block(*series)),
            ]
        )
        responses = ingest_pb2_grpc.IngestServiceStub(channel).StreamMetrics(requests, timeout=60)
        for resp in responses:
            assert not resp.rejections, resp.rejections
            if resp.acked_seq >= 1:
                break
        else:
            raise AssertionError("the stream ended before seq 1 was acked")
    finally:
        channel.close()


def ranked(
    run_id: str, key: str, rank: int, steps: Sequence[int], values: Sequence[float], stamp: int = 1
) -> Series:
    return run_id, key, rank, steps, [stamp] * len(steps), values


def read_pages(
    client: TracklineClient, run_id: str, key: str, page_size: int = 0, **fields: int
) -> list[Point]:
    """Every page of a GetMetricHistory read, checking each page's size."""
    req = tpb.GetMetricHistoryRequest(run_id=run_id, key=key, page_size=page_size, **fields)
    points: list[Point] = []
    for _ in range(100_000):
        resp = client.calls.GetMetricHistory(req)
        s = resp.series
        assert len(s.steps) == len(s.timestamps) == len(s.values) == len(resp.ranks)
        if page_size:
            assert len(s.values) <= page_size
        points += zip(s.steps, s.timestamps, s.values, resp.ranks, strict=True)
        if not resp.next_page_token:
            return points
        req.page_token = resp.next_page_token
    raise AssertionError("paging did not end")


def view(
    client: TracklineClient, run_id: str, key: str, max_points: int, **fields: int
) -> list[Point]:
    req = tpb.GetMetricHistoryRequest(run_id=run_id, key=key, max_points=max_points, **fields)
    resp = client.calls.GetMetricHistory(req)
    assert resp.next_page_token == ""
    s = resp.series
    return list(zip(s.steps, s.timestamps, s.values, resp.ranks, strict=True))


def is_sorted(points: Sequence[Point]) -> bool:
    return all(a[:2] <= b[:2] for a, b in zip(points, points[1:], strict=False))


def overlapping_series(server: ServerProcess, client: TracklineClient, run_id: str) -> list[Point]:
    """Chunks that overlap: shuffled steps, duplicate steps across ranks, and 300 points at
    one step. Returns every point; each value is unique."""
    rng = random.Random(7)
    expected: list[Point] = []
    value = iter(range(1_000_000))

    def add(steps: list[int], stamps: list[int], rank: int = 0) -> list[float]:
        values = [float(next(value)) for _ in steps]
        expected.extend(zip(steps, stamps, values, [rank] * len(steps), strict=True))
        return values

    shuffled = list(range(100))
    rng.shuffle(shuffled)
    stamps = [rng.randint(1, 3) for _ in shuffled]
    log(client, run_id, "m", shuffled, add(shuffled, stamps), stamps)
    later = list(range(149, 49, -1))  # overlaps the first chunk, written backwards
    log(client, run_id, "m", later, add(later, [5] * 100), [5] * 100)
    crowd = [120] * 300
    crowd_stamps = [rng.randint(1, 9) for _ in crowd]
    log(client, run_id, "m", crowd, add(crowd, crowd_stamps), crowd_stamps)
    series = []
    for rank in (1, 2):
        steps = list(range(0, 200, 2))
        series.append(ranked(run_id, "m", rank, steps, add(steps, [4] * 100, rank), stamp=4))
    stream(server, series)
    return expected


def test_paging_over_overlapping_chunks(server: ServerProcess, client: TracklineClient) -> None:
    run = client.create_run()
    expected = overlapping_series(server, client, run.run_id)
    whole = read_pages(client, run.run_id, "m", page_size=1_000_000)
    assert Counter(whole) == Counter(expected) and len(whole) == len(expected)
    assert is_sorted(whole)
    for size in (7, 64, 299):  # page boundaries inside the 300 points at step 120
        assert read_pages(client, run.run_id, "m", page_size=size) == whole
    # The client's iterator pages the same way.
    got = list(client.get_metric_history(run.run_id, "m", page_size=5))
    assert got == [p[:3] for p in whole]


def test_step_range(server: ServerProcess, client: TracklineClient) -> None:
    run = client.create_run()
    expected = sorted(overlapping_series(server, client, run.run_id))
    for start, end in ((50, 120), (120, 120), (0, 0), (-5, 3), (149, 1000), (500, 600)):
        want = Counter(p for p in expected if start <= p[0] <= end)
        for size in (0, 9):
            got = read_pages(client, run.run_id, "m", size, start_step=start, end_step=end)
            assert Counter(got) == want and is_sorted(got)
    got = read_pages(client, run.run_id, "m", 11, start_step=121)
    assert Counter(got) == Counter(p for p in expected if p[0] >= 121)
    got = read_pages(client, run.run_id, "m", 11, end_step=119)
    assert Counter(got) == Counter(p for p in expected if p[0] <= 119)
    steps = [s for s, _, _ in client.get_metric_history(run.run_id, "m", start_step=140)]
    assert steps == sorted(p[0] for p in expected if p[0] >= 140)


def test_ranks(server: ServerProcess, client: TracklineClient) -> None:
    run = client.create_run()
    stream(
        server,
        [ranked(run.run_id, "loss", r, [0, 1, 2, 3], [r * 10.0 + i for i in range(4)])
         for r in range(3)],
    )  # fmt: skip
    log(client, run.run_id, "loss", [4], [99.0])  # LogBatch writes rank 0
    everyone = read_pages(client, run.run_id, "loss", page_size=2)
    assert [(s, v, r) for s, _, v, r in everyone] == [
        (s, r * 10.0 + s, r) for s in range(4) for r in range(3)
    ] + [(4, 99.0, 0)]
    one = read_pages(client, run.run_id, "loss", page_size=3, rank=1)
    assert [(s, v, r) for s, _, v, r in one] == [(s, 10.0 + s, 1) for s in range(4)]
    assert read_pages(client, run.run_id, "loss", rank=7) == []
    assert [p[:3] for p in read_pages(client, run.run_id, "loss", rank=0)] == list(
        client.get_metric_history(run.run_id, "loss", rank=0)
    )
    ranked_view = view(client, run.run_id, "loss", 1000, rank=2)
    assert [(s, v, r) for s, _, v, r in ranked_view] == [(s, 20.0 + s, 2) for s in range(4)]


def test_nan_and_infinity_round_trip(client: TracklineClient) -> None:
    run = client.create_run()
    values = [math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324]
    log(client, run.run_id, "x", list(range(6)), values)
    for got in (
        [v for _, _, v in client.get_metric_history(run.run_id, "x", page_size=4)],
        [v for _, _, v in client.get_metric_history(run.run_id, "x", max_points=100)],
    ):
        assert math.isnan(got[0]) and got[1:] == values[1:]
        assert math.copysign(1.0, got[3]) == -1.0


def test_downsample_keeps_spike_minimum_and_last(client: TracklineClient) -> None:
    run = client.create_run()
    rng = random.Random(3)
    n = 100_000
    values = [rng.random() for _ in range(n)]
    values[31_337] = 1e9  # a single spike
    values[77_777] = -5.0  # the minimum
    values[500] = math.nan  # ignored for min and max
    for start in range(0, n, 25_000):  # several chunks
        steps = list(range(start, start + 25_000))
        log(client, run.run_id, "loss", steps, values[start : start + 25_000])
    got = view(client, run.run_id, "loss", 300)
    assert 0 < len(got) <= 300 and is_sorted(got)
    steps = [s for s, _, _, _ in got]
    assert len(set(steps)) == len(steps)
    assert (31_337, 1, 1e9, 0) in got
    assert (77_777, 1, -5.0, 0) in got
    assert steps[-1] == n - 1  # the last point of the last bucket
    assert all(values[s] == v or (math.isnan(v) and math.isnan(values[s])) for s, _, v, _ in got)
    # The client asks for the same view; a step range narrows the buckets to it.
    assert list(client.get_metric_history(run.run_id, "loss", max_points=300)) == [
        p[:3] for p in got
    ]
    part = view(client, run.run_id, "loss", 30, start_step=30_000, end_step=40_000)
    assert len(part) <= 30 and all(30_000 <= s <= 40_000 for s, _, _, _ in part)
    assert (31_337, 1, 1e9, 0) in part and part[-1][0] == 40_000
    assert len(view(client, run.run_id, "loss", 2)) == 2
    assert [p[0] for p in view(client, run.run_id, "loss", 1)] == [n - 1]
    # Values above the cap are capped, not refused.
    capped = view(client, run.run_id, "loss", 2_000_000_000)
    assert len(capped) == n


def test_downsample_of_a_small_series_is_the_whole_series(
    server: ServerProcess, client: TracklineClient
) -> None:
    run = client.create_run()
    expected = overlapping_series(server, client, run.run_id)
    whole = read_pages(client, run.run_id, "m")
    assert view(client, run.run_id, "m", len(expected)) == whole
    small = view(client, run.run_id, "m", 30)
    assert len(small) <= 30 and is_sorted(small)
    assert set(small) <= set(expected)
    assert view(client, run.run_id, "nothing", 30) == []


def test_get_metric_histories(server: ServerProcess, client: TracklineClient) -> None:
    runs = [client.create_run().run_id for _ in range(3)]
    for i, run_id in enumerate(runs):
        log(client, run_id, "a", [0, 1, 2], [i + 0.1, i + 0.2, i + 0.3])
        if i != 1:  # the second run has no "b"
            log(client, run_id, "b", list(range(10, 0, -1)), [float(i)] * 10)
    stream(server, [ranked(runs[2], "a", 3, [1, 5], [7.0, 8.0])])
    got = client.get_metric_histories(runs, ["a", "b"])
    assert list(got) == [
        (runs[0], "a"), (runs[0], "b"), (runs[1], "a"), (runs[2], "a"), (runs[2], "b"),
    ]  # fmt: skip
    assert got[(runs[0], "a")] == [(0, 1, 0.1), (1, 1, 0.2), (2, 1, 0.3)]
    assert [s for s, _, _ in got[(runs[2], "b")]] == list(range(1, 11))
    assert got[(runs[2], "a")] == [(0, 1, 2.1), (1, 1, 2.2), (1, 1, 7.0), (2, 1, 2.3), (5, 1, 8.0)]
    for run_id in runs:
        for key in ("a", "b"):
            if (run_id, key) in got:
                assert got[(run_id, key)] == list(client.get_metric_history(run_id, key))
    ranged = client.get_metric_histories(runs, ["b", "a"], start_step=2, end_step=5)
    assert list(ranged)[:2] == [(runs[0], "b"), (runs[0], "a")]
    assert [s for s, _, _ in ranged[(runs[2], "b")]] == [2, 3, 4, 5]
    assert [s for s, _, _ in ranged[(runs[2], "a")]] == [2, 5]
    viewed = client.get_metric_histories(runs, ["b"], max_points=3)
    assert all(len(points) <= 3 for points in viewed.values())
    assert viewed[(runs[0], "b")][-1][0] == 10
    assert client.get_metric_histories(runs, ["none"]) == {}


def test_get_metric_histories_limits(client: TracklineClient) -> None:
    run = client.create_run()
    with pytest.raises(InvalidArgument) as info:
        client.get_metric_histories([run.run_id] * 101, ["a"])
    assert info.value.reason == "TOO_MANY_RUNS"
    with pytest.raises(InvalidArgument) as info:
        client.get_metric_histories([run.run_id], [f"k{i}" for i in range(101)])
    assert info.value.reason == "TOO_MANY_KEYS"
    with pytest.raises(NotFound) as nf:
        client.get_metric_histories([run.run_id, "0" * 32], ["a"])
    assert nf.value.reason == "RUN_NOT_FOUND" and "run_ids[1]" in nf.value.field_violations
    with pytest.raises(InvalidArgument) as info:
        client.get_metric_histories([run.run_id], ["a"], max_points=-1)
    assert info.value.reason == "INVALID_MAX_POINTS"
    with pytest.raises(InvalidArgument) as info:
        client.get_metric_histories([run.run_id], ["a"], start_step=5, end_step=4)
    assert info.value.reason == "INVALID_STEP_RANGE"
    n = 600_000
    for key in ("a", "b"):
        log(client, run.run_id, key, list(range(n)), [0.5] * n, [1] * n)
    with pytest.raises(ResourceExhausted) as big:
        client.get_metric_histories([run.run_id], ["a", "b"])
    assert big.value.reason == "HISTORY_TOO_LARGE"
    assert "max_points" in big.value.message
    # Views of series small enough to come whole count against the same total.
    with pytest.raises(ResourceExhausted) as big:
        client.get_metric_histories([run.run_id], ["a", "b"], max_points=1_000_000)
    assert big.value.reason == "HISTORY_TOO_LARGE"
    # A range or a view that keeps the total under the limit is fine.
    ranged = client.get_metric_histories([run.run_id], ["a", "b"], end_step=n // 2)
    assert sum(len(p) for p in ranged.values()) == 2 * (n // 2 + 1)
    viewed = client.get_metric_histories([run.run_id], ["a", "b"], max_points=1000)
    assert [len(p) <= 1000 for p in viewed.values()] == [True, True]


def test_history_errors(client: TracklineClient) -> None:
    run = client.create_run()
    log(client, run.run_id, "loss", list(range(10)), [1.0] * 10)

    def call(**fields: object) -> tpb.GetMetricHistoryResponse:
        req = tpb.GetMetricHistoryRequest(run_id=run.run_id, key="loss", **fields)  # type: ignore[arg-type]
        return client.calls.GetMetricHistory(req)

    token = call(page_size=3).next_page_token
    assert token and len(call(page_size=3, page_token=token).series.steps) == 3
    bad_tokens = [
        "garbage",
        "",  # placeholder replaced below
        token[:-2],
    ]
    bad_tokens[1] = call(page_size=3, start_step=0).next_page_token  # another query's token
    for bad in bad_tokens:
        with pytest.raises(InvalidArgument) as info:
            call(page_size=3, page_token=bad)
        assert info.value.reason == "INVALID_PAGE_TOKEN"
    for other in ({"rank": 0}, {"end_step": 8}):
        with pytest.raises(InvalidArgument) as info:
            call(page_size=3, page_token=token, **other)
        assert info.value.reason == "INVALID_PAGE_TOKEN"
    with pytest.raises(InvalidArgument) as info:
        call(start_step=5, end_step=4)
    assert info.value.reason == "INVALID_STEP_RANGE"
    with pytest.raises(InvalidArgument) as info:
        call(max_points=-1)
    assert info.value.reason == "INVALID_MAX_POINTS"
    with pytest.raises(InvalidArgument) as info:
        list(client.get_metric_history(run.run_id, "loss", page_size=-1))
    assert info.value.reason == "INVALID_PAGE_SIZE"
    for kwargs in ({}, {"max_points": 10}):
        with pytest.raises(NotFound) as nf:
            list(client.get_metric_history("0" * 32, "loss", **kwargs))
        assert nf.value.reason == "RUN_NOT_FOUND"


# Chart views from chunk summaries: checked against a brute-force reading of the stored points.

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
        exp_id = await experiments.create(conn, "old", "", {}, "/artifacts")
        return await runs.create(conn, exp_id, "r", 0, {}, "")

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
