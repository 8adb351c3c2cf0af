"""SeriesBlock batches, the metric log and its compaction, on a real server: points of many
short series land in the log as one row per flush, are readable at once (a read compacts
first), keep their order, ranks and latest values, and survive kill -9 before compaction."""

from __future__ import annotations

import asyncio
import math
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from trackline import TracklineClient
from trackline.v1 import ingest_pb2 as ipb

from tests.support.databases import fresh_postgres_database
from tests.support.points import block as series_block
from tests.support.ports import free_port
from tests.support.servers import ServerProcess, start_server
from tests.support.streams import Stream


def block(run_id: str, keys: list[str], steps: list[list[int]], ranks: list[int] | None = None,
          values: list[list[float]] | None = None) -> ipb.SeriesBlock:  # fmt: skip
    """A block with one series per key; series i has the points ``steps[i]``."""
    vals = values or [[float(s) for s in st] for st in steps]
    return ipb.SeriesBlock(
        run_ids=[run_id] * len(keys),
        keys=keys,
        ranks=ranks or [],
        lengths=[len(st) for st in steps],
        steps=[s for st in steps for s in st],
        timestamps=[1_700_000_000_000 + s for st in steps for s in st],
        values=[v for vs in vals for v in vs],
    )


def log_rows(store_uri: str) -> int:
    """Rows waiting in the metric log (read straight from the database)."""

    async def count() -> int:
        engine = create_async_engine(store_uri)
        try:
            async with engine.connect() as conn:
                return int(await conn.scalar(text("SELECT count(*) FROM metric_log")) or 0)
        finally:
            await engine.dispose()

    return asyncio.run(count())


def steps_of(client: TracklineClient, run_id: str, key: str, rank: int | None = None) -> list[int]:
    return [s for s, _, _ in client.get_metric_history(run_id, key, rank=rank)]


def test_block_points_are_stored_per_series_and_rank(
    server: ServerProcess, client: TracklineClient
) -> None:
    run = client.create_run()
    s = Stream(server.address, "w-block")
    keys = ["loss", "acc", "lr"]
    for seq in range(1, 6):
        base = (seq - 1) * 10
        for rank in (0, 1):
            steps = [[base + i for i in range(10)] for _ in keys]
            blk = block(run.run_id, keys, steps, [rank] * 3)
            s.send(ipb.StreamMetricsRequest(seq=2 * seq - 1 + rank, block=blk))
    acks = s.until(10)
    assert not any(a.rejections for a in acks)
    assert log_rows(server.store_uri) >= 1  # short series wait in the log
    for key in keys:
        assert steps_of(client, run.run_id, key, rank=1) == list(range(50))
        merged = steps_of(client, run.run_id, key)
        assert merged == sorted(list(range(50)) * 2)
    assert log_rows(server.store_uri) == 0  # the read compacted them first
    s.close()


def test_block_defaults_fill_steps_and_timestamps(
    server: ServerProcess, client: TracklineClient
) -> None:
    run = client.create_run()
    s = Stream(server.address, "w-mixed")
    blk = ipb.SeriesBlock(run_ids=[run.run_id] * 2, keys=["a", "b"], lengths=[2, 1],
                          values=[1.0, 2.0, 3.0])  # fmt: skip
    s.send(ipb.StreamMetricsRequest(seq=1, block=blk))
    s.send(
        ipb.StreamMetricsRequest(seq=2, block=series_block((run.run_id, "a", 0, [5], [], [9.0])))
    )
    assert not any(a.rejections for a in s.until(2))
    points = list(client.get_metric_history(run.run_id, "a"))
    assert [(st, v) for st, _, v in points] == [(0, 1.0), (0, 2.0), (5, 9.0)]
    assert all(ts > 1_600_000_000_000 for _, ts, _ in points)  # filled with the receive time
    assert [v for _, _, v in client.get_metric_history(run.run_id, "b")] == [3.0]
    s.close()


@pytest.mark.parametrize(
    ("blk", "reason"),
    [
        (ipb.SeriesBlock(run_ids=["R"], keys=["k"], lengths=[2], values=[1.0]),
         "COLUMN_LENGTH_MISMATCH"),
        (ipb.SeriesBlock(run_ids=["R"], keys=["k"], lengths=[1], steps=[1, 2], values=[1.0]),
         "COLUMN_LENGTH_MISMATCH"),
        (ipb.SeriesBlock(run_ids=["R", "R"], keys=["k"], lengths=[1], values=[1.0]),
         "COLUMN_LENGTH_MISMATCH"),
        (ipb.SeriesBlock(run_ids=["R"], keys=["k"], ranks=[1, 2], lengths=[1], values=[1.0]),
         "COLUMN_LENGTH_MISMATCH"),
        (ipb.SeriesBlock(run_ids=["R"], keys=["k"], lengths=[0], values=[]), "EMPTY_SERIES"),
        (ipb.SeriesBlock(run_ids=["R"], keys=["bad\nkey"], lengths=[1], values=[1.0]),
         "INVALID_KEY"),
        (ipb.SeriesBlock(run_ids=["R"], keys=["k" * 501], lengths=[1], values=[1.0]),
         "INVALID_KEY"),
        (ipb.SeriesBlock(run_ids=[""], keys=["k"], lengths=[1], values=[1.0]), "RUN_NOT_FOUND"),
        (ipb.SeriesBlock(run_ids=["nope"], keys=["k"], lengths=[1], values=[1.0]),
         "RUN_NOT_FOUND"),
        (ipb.SeriesBlock(lengths=[], values=[1.0]), "COLUMN_LENGTH_MISMATCH"),
        (ipb.SeriesBlock(run_ids=["R"], keys=["k"], lengths=[1], values=[1.0], run_index=[1]),
         "INVALID_RUN_INDEX"),
        (ipb.SeriesBlock(run_ids=["R"], keys=["k"], lengths=[1], values=[1.0], run_index=[0, 0]),
         "COLUMN_LENGTH_MISMATCH"),
        (ipb.SeriesBlock(run_ids=["R", "R", "R"], keys=["k", "j"], lengths=[1, 1],
                         values=[1.0, 2.0]), "COLUMN_LENGTH_MISMATCH"),
    ],
)  # fmt: skip
def test_bad_blocks_are_rejected_alone(
    server: ServerProcess, client: TracklineClient, blk: ipb.SeriesBlock, reason: str
) -> None:
    run = client.create_run()
    runs = [run.run_id if r == "R" else r for r in blk.run_ids]
    del blk.run_ids[:]
    blk.run_ids.extend(runs)
    s = Stream(server.address, f"w-bad-{reason}")
    s.send(ipb.StreamMetricsRequest(seq=1, block=blk))
    s.send(ipb.StreamMetricsRequest(seq=2, block=block(run.run_id, ["k"], [[7]])))
    acks = s.until(2)
    assert [(r.seq, r.reason) for a in acks for r in a.rejections] == [(1, reason)]
    assert steps_of(client, run.run_id, "k") == [7]  # nothing of the bad block is stored
    s.close()


def test_latest_values_and_order_survive_compaction(
    server: ServerProcess, client: TracklineClient
) -> None:
    run = client.create_run()
    s = Stream(server.address, "w-latest")
    # Out-of-order steps, equal steps with later timestamps, NaN and infinities, a unicode key.
    s.send(ipb.StreamMetricsRequest(seq=1, block=ipb.SeriesBlock(
        run_ids=[run.run_id] * 2, keys=["λ/loss", "x"], ranks=[0, 3], lengths=[4, 2],
        steps=[3, 1, 3, 2, 5, 5], timestamps=[10, 11, 9, 12, 1, 2],
        values=[0.5, math.nan, 0.25, math.inf, -math.inf, 7.0])))  # fmt: skip
    s.send(ipb.StreamMetricsRequest(seq=2, block=ipb.SeriesBlock(
        run_ids=[run.run_id], keys=["x"], lengths=[1], steps=[5], timestamps=[2],
        values=[8.0])))  # fmt: skip
    s.until(2)
    # Latest values move at commit, before any compaction.
    latest = {m.key: (m.step, m.value) for m in client.get_run(run.run_id).latest_metrics}
    assert latest == {"λ/loss": (3, 0.5), "x": (5, 8.0)}
    got = list(client.get_metric_history(run.run_id, "λ/loss"))
    assert [st for st, _, _ in got] == [1, 2, 3, 3]
    assert math.isnan(got[0][2]) and got[1][2] == math.inf
    assert [v for _, _, v in client.get_metric_history(run.run_id, "x", rank=3)] == [
        -math.inf,
        7.0,
    ]
    s.close()


def test_logged_points_survive_kill_before_compaction(tmp_path: Path) -> None:
    port = free_port()
    srv = start_server(tmp_path, extra_args=["--port", str(port)])
    client = TracklineClient(srv.address, retry_seconds=20)
    run = client.create_run()
    s = Stream(srv.address, "w-kill")
    for seq in range(1, 21):
        steps = [[seq * 10 + i for i in range(5)] for _ in range(4)]
        s.send(ipb.StreamMetricsRequest(seq=seq, block=block(run.run_id, list("abcd"), steps)))
    s.until(20)
    srv.proc.send_signal(signal.SIGKILL)  # acked, still in the log: compaction waits 1 s
    srv.proc.wait(10)
    s.close()
    assert log_rows(srv.store_uri) >= 1
    again = start_server(tmp_path, extra_args=["--port", str(port)])
    try:
        for key in "abcd":
            assert steps_of(client, run.run_id, key) == [
                seq * 10 + i for seq in range(1, 21) for i in range(5)
            ]
        assert log_rows(srv.store_uri) == 0
    finally:
        client.close()
        for server in (srv, again):
            server.stop()


def test_block_run_ids_per_series_single_or_indexed(
    server: ServerProcess, client: TracklineClient
) -> None:
    a, b = client.create_run().run_id, client.create_run().run_id
    s = Stream(server.address, "w-runs")
    s.send(
        ipb.StreamMetricsRequest(
            seq=1,
            block=ipb.SeriesBlock(
                run_ids=[a, b], keys=["m", "m"], lengths=[1, 1], steps=[1, 1], values=[1.0, 2.0]
            ),
        )
    )
    s.send(
        ipb.StreamMetricsRequest(
            seq=2,
            block=ipb.SeriesBlock(
                run_ids=[a],
                keys=["m", "m"],
                ranks=[0, 1],
                lengths=[1, 1],
                steps=[2, 2],
                values=[3.0, 4.0],
            ),
        )
    )
    s.send(ipb.StreamMetricsRequest(seq=3, block=ipb.SeriesBlock(
        run_ids=[b, a], run_index=[1, 0, 1], keys=["m", "m", "m"], lengths=[1, 1, 1],
        steps=[3, 3, 3], ranks=[0, 0, 1], values=[5.0, 6.0, 7.0])))  # fmt: skip
    assert not any(r for resp in s.until(3) for r in resp.rejections)
    assert [v for _, _, v in client.get_metric_history(a, "m")] == [1.0, 3.0, 4.0, 5.0, 7.0]
    assert [v for _, _, v in client.get_metric_history(b, "m")] == [2.0, 6.0]
    s.close()


def test_replicas_share_the_log_and_compact_exactly_once(tmp_path: Path) -> None:
    """Two servers on one PostgreSQL database: both log and compact; every point once."""
    uri = fresh_postgres_database()
    one = start_server(tmp_path / "one", uri)
    two = start_server(tmp_path / "two", uri)
    try:
        client = TracklineClient(one.address, retry_seconds=10)
        run = client.create_run()
        streams = [Stream(srv.address, f"w-replica-{i}") for i, srv in enumerate((one, two))]
        for seq in range(1, 31):
            for rank, s in enumerate(streams):
                steps = [[seq * 10 + i for i in range(3)] for _ in range(5)]
                blk = block(run.run_id, [f"k{j}" for j in range(5)], steps, [rank] * 5)
                s.send(ipb.StreamMetricsRequest(seq=seq, block=blk))
            if seq % 10 == 0:
                time.sleep(1.2)  # let background compactions of both replicas run
        for s in streams:
            s.until(30)
            s.close()
        expected = sorted([seq * 10 + i for seq in range(1, 31) for i in range(3)] * 2)
        other = TracklineClient(two.address, retry_seconds=10)
        for key in (f"k{j}" for j in range(5)):
            assert steps_of(client, run.run_id, key) == expected
            assert steps_of(other, run.run_id, key) == expected
        assert log_rows(uri) == 0
        other.close()
        client.close()
    finally:
        for srv in (one, two):
            srv.stop()
