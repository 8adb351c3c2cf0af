"""The streaming metric client (``trackline._sender.MetricSender`` and the fluent
``log_metric``) against a real server: exactly-once delivery across flushes, rejections,
forks, ranks, server restarts and a server that stays away."""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trackline
from google.protobuf import unknown_fields
from trackline import BatchRejected, TracklineClient, Unauthenticated, _sender
from trackline._sender import MetricSender, _build_batches, encode_request
from trackline.v1 import ingest_pb2 as ipb
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb

from tests.support.ports import free_port
from tests.support.servers import ServerProcess, start_server


@pytest.fixture
def fluent(server: ServerProcess) -> Iterator[ServerProcess]:
    trackline.set_tracking_uri(server.address)
    yield server
    trackline.set_tracking_uri(server.address)  # closes this test's sender while it can flush


def history(client: TracklineClient, run_id: str, key: str) -> list[tuple[int, int, float]]:
    return list(client.get_metric_history(run_id, key))


@pytest.fixture
def on_fixed_port(server: ServerProcess, tmp_path: Path) -> tuple[ServerProcess, int]:
    """The fixture's store served on a fixed port, so that a restarted server is found at
    the same address (``start_server`` passes ``--port 0``; a later ``--port`` wins)."""
    server.kill()
    port = free_port()
    srv = start_server(tmp_path, server.store_uri, ["--port", str(port)])
    return srv, port


Series = tuple[str, str, int]
Points = list[tuple[int, int, bytes]]  # step, timestamp, value's bits (NaN compares equal)


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


def decode(batches: list[tuple[bytes, str, int]]) -> dict[Series, Points]:
    """The points of encoded batches per series, checking each batch's SeriesBlock."""
    got: defaultdict[Series, Points] = defaultdict(list)
    for body, run_id, n in batches:
        msg = ipb.StreamMetricsRequest.FromString(encode_request(2**40, body))
        assert msg.seq == 2**40 and not msg.writer_id
        assert not len(unknown_fields.UnknownFieldSet(msg))  # the block only (no field 3)
        block = msg.block
        assert set(block.run_ids) == {run_id}  # one run per batch
        assert len(block.run_ids) == len(block.keys) == len(block.lengths) >= 1
        assert len(block.ranks) in (0, len(block.lengths)) and min(block.lengths) >= 1
        assert n == sum(block.lengths) == len(block.values)
        assert len(block.steps) == len(block.timestamps) == n
        ranks = list(block.ranks) or [0] * len(block.lengths)
        pos = 0
        for key, rank, length in zip(block.keys, ranks, block.lengths, strict=True):
            end = pos + length
            got[run_id, key, rank] += zip(
                block.steps[pos:end],
                block.timestamps[pos:end],
                map(bits, block.values[pos:end]),
                strict=True,
            )
            pos = end
    return dict(got)


def per_series(items: list[tuple[Any, ...]]) -> dict[Series, Points]:
    want: defaultdict[Series, Points] = defaultdict(list)
    for run_id, key, rank, step, stamp, value in items:
        want[run_id, key, rank].append((step, stamp, bits(value)))
    return dict(want)


def test_encoding_matches_protobuf() -> None:
    """The sender encodes batches itself; protobuf must read them as meant."""
    method = ipb.DESCRIPTOR.services_by_name["IngestService"].methods_by_name["StreamMetrics"]
    assert method.full_name == "trackline.v1.IngestService.StreamMetrics"
    items = [("r1", "loss", 0, 1, 10, 0.5), ("r1", "acc", 0, 1, 10, 0.25)]
    items += [("r1", "loss", -3, -(2**63), 2**63 - 1, math.inf), ("r2", "ké", 2**31 - 1, 2, 3, 1.0)]
    items += [("r2", "", 0, 1, 1, 1.0), ("r2", "x", 0, 1.5, 1, 1.0), ("r2", "x", 0, 2, 1, 2.0)]
    items += [
        ("r3", "x", 0, 1, 1, 1.0),
        ("r4", "a\ud800", 0, 1, 1, 1.0),
        ("r4", ["x"], 0, 1, 1, 1.0),
    ]
    items += [
        ("r4", "ok", 0.5, 1, 1, 1.0),
        ("", "x", 0, 1, 1, 1.0),
        ("r1", "loss", 0, 2, 11, math.nan),
    ]
    batches, errors = _build_batches(items)
    assert sorted((e.reason, e.run_id, e.points) for e in errors) == [
        ("INVALID_KEY", "r2", 1),
        ("INVALID_KEY", "r4", 1),
        ("INVALID_KEY", "r4", 1),
        ("INVALID_POINT", "r2", 1),
        ("INVALID_RANK", "r4", 1),
        ("RUN_NOT_FOUND", "", 1),
    ]
    assert all(e.seq == 0 for e in errors)
    assert decode(batches) == per_series(
        [
            ("r1", "loss", 0, 1, 10, 0.5),
            ("r1", "loss", 0, 2, 11, math.nan),
            ("r1", "acc", 0, 1, 10, 0.25),
            ("r1", "loss", -3, -(2**63), 2**63 - 1, math.inf),
            ("r2", "ké", 2**31 - 1, 2, 3, 1.0),
            ("r2", "x", 0, 2, 1, 2.0),
            ("r3", "x", 0, 1, 1, 1.0),
        ]
    )


def _cycle(keys: list[str], n: int, start: int = 0, run_id: str = "r") -> list[tuple[Any, ...]]:
    """n points of a training loop that logs ``keys`` every step, from point ``start``."""
    k = len(keys)
    return [(run_id, keys[i % k], 0, i // k, 1000 + i, i * 0.5) for i in range(start, start + n)]


SHAPES = {
    "one point": [("r", "loss", 0, 0, 1, 0.5)],
    "one series": _cycle(["loss"], 1000),
    "one series, rank 3": [("r", "loss", 3, s, s, -s * 1.0) for s in range(100)],
    "a step's metrics": _cycle([f"m{j}" for j in range(20)], 1000),
    "from mid-step": _cycle(["a", "b", "c", "d", "e"], 1001, start=3),
    "many keys, few steps": _cycle([f"m{j}" for j in range(300)], 1000, start=150),
    "all distinct": _cycle([f"m{j}" for j in range(500)], 500),
    "no cycle": _cycle(["loss", "lr"], 100) + _cycle(["val"], 3) + _cycle(["loss", "lr"], 100),
    "key repeated in a step": [("r", k, 0, i, i, 0.0) for i, k in enumerate("abacabac" * 9)],
    "runs and ranks": [(f"r{i % 3}", f"k{i % 5}", i % 2, i, i, float(i)) for i in range(2000)],
}


@pytest.mark.parametrize("shape", SHAPES)
def test_blocks_group_points_per_series(shape: str) -> None:
    items = SHAPES[shape]
    batches, errors = _build_batches(items)
    assert errors == []
    assert decode(batches) == per_series(items)
    assert len(batches) == len({i[0] for i in items})  # one block per run


def test_blocks_leave_out_invalid_series_of_a_cycle() -> None:
    items = _cycle(["loss", "bad\nkey", "acc"], 30)
    batches, errors = _build_batches(items)
    assert [(e.reason, e.points) for e in errors] == [("INVALID_KEY", 10)]
    assert decode(batches) == per_series([i for i in items if i[1] != "bad\nkey"])


@pytest.mark.parametrize(
    "items",
    [
        [("r", "", 0, 1, 1, 1.0)],
        [("r", "a\x00", 0, s, 1, 1.0) for s in range(3)],
        [("r", k, 0, 1, 1, 1.0) for k in ("", "\x7f", "", "\x7f")],
        [(r, "", 0, 1, 1, 1.0) for r in ("r", "q")],
        [("r", "x", 0, 1.5, 1, 1.0), ("r", "y", 0, 1, None, 1.0), ("", "x", 0, 1, 1, 1.0)],
    ],
)
def test_drains_of_refused_points_only(items: list[tuple[Any, ...]]) -> None:
    batches, errors = _build_batches(items)
    assert batches == [] and sum(e.points for e in errors) == len(items)
    assert {e.reason for e in errors} <= {"INVALID_KEY", "INVALID_POINT", "RUN_NOT_FOUND"}


def test_blocks_are_split_at_the_batch_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sender, "MAX_BATCH_POINTS", 7)
    items = _cycle(["a", "b", "c"], 50) + _cycle(["long"], 20) + _cycle(["x"], 10, run_id="r2")
    batches, errors = _build_batches(items)
    assert errors == [] and decode(batches) == per_series(items)
    assert all(n <= 7 for _, _, n in batches) and sum(n for _, _, n in batches) == 80
    assert [n for _, _, n in batches] == [7] * 10 + [7, 3]  # full blocks, then r2's
    monkeypatch.setattr(_sender, "MAX_BATCH_BYTES", 200)  # a few series per block
    items = _cycle([f"key{j:03}" for j in range(40)], 40)
    batches, errors = _build_batches(items)
    assert errors == [] and decode(batches) == per_series(items)
    assert len(batches) > 5 and all(len(body) < 400 for body, _, _ in batches)


def test_fluent_points_stored_exactly_once(fluent: ServerProcess) -> None:
    client = TracklineClient(fluent.address)
    n = 100_000
    before = int(time.time() * 1000)
    with trackline.start_run() as run:
        for step in range(n):
            trackline.log_metric("loss", step * 0.5, step=step)
            trackline.log_metric("acc", -step, step=step)
        trackline.log_metrics({"f1": 0.25, "auc": math.nan}, step=3, timestamp=1234)
        trackline.log_metric("lr", 1e-3, step=-5, timestamp=99)
        trackline.flush()
        loss = history(client, run.run_id, "loss")
        assert [(s, v) for s, _, v in loss] == [(s, s * 0.5) for s in range(n)]
        assert all(before <= ts <= int(time.time() * 1000) for _, ts, _ in loss)
        acc = history(client, run.run_id, "acc")
        assert [(s, v) for s, _, v in acc] == [(s, -s) for s in range(n)]
        assert history(client, run.run_id, "f1") == [(3, 1234, 0.25)]
        ((step, ts, auc),) = history(client, run.run_id, "auc")
        assert (step, ts) == (3, 1234) and math.isnan(auc)
        assert history(client, run.run_id, "lr") == [(-5, 99, 1e-3)]
    latest = {m.key: (m.step, m.value) for m in client.get_run(run.run_id).latest_metrics}
    assert latest["loss"] == (n - 1, (n - 1) * 0.5) and latest["f1"] == (3, 0.25)


def test_synchronous_is_readable_at_once(fluent: ServerProcess) -> None:
    client = TracklineClient(fluent.address)
    with trackline.start_run() as run:
        trackline.log_metric("x", 1.5, step=7, timestamp=5, synchronous=True)
        assert history(client, run.run_id, "x") == [(7, 5, 1.5)]
        trackline.log_metrics({"y": 2.5}, step=8, timestamp=6, synchronous=True)
        assert history(client, run.run_id, "y") == [(8, 6, 2.5)]


def test_rejected_batch_raises_on_flush_and_does_not_block_later_ones(
    server: ServerProcess, client: TracklineClient, caplog: pytest.LogCaptureFixture
) -> None:
    run = client.create_run()
    deleted = client.create_run()
    client.delete_run(deleted.run_id)
    sender = MetricSender(server.address)
    try:
        sender.log("no-such-run", "loss", 1.0, 1)
        sender.log(run.run_id, "loss", 1.0, 1)  # same flush window, other run: stored
        with pytest.raises(BatchRejected) as info:
            sender.flush(30)
        err = info.value
        assert (err.reason, err.run_id, err.points) == ("RUN_NOT_FOUND", "no-such-run", 1)
        assert err.seq >= 1 and "no-such-run" in caplog.text
        sender.flush(30)  # raised once only

        sender.log(deleted.run_id, "loss", 3.0, 3)
        with pytest.raises(BatchRejected) as info:
            sender.flush(30)
        assert info.value.reason == "RUN_DELETED" and info.value.seq > err.seq

        for step in range(2, 1002):
            sender.log(run.run_id, "loss", float(step), step)
        sender.flush(30)
        assert [(s, v) for s, _, v in history(client, run.run_id, "loss")] == [
            (s, float(s)) for s in range(1, 1002)
        ]
    finally:
        sender.close()


def _same(value: float) -> Any:
    return "nan" if math.isnan(value) else value


def test_many_series_ranks_and_runs_in_one_block_arrive_intact(
    server: ServerProcess, client: TracklineClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the batcher's 50 ms timer, everything logged between two flushes is one
    # drain: one batch (one SeriesBlock) per run.
    monkeypatch.setattr(_sender, "WAKE_SECONDS", 30.0)
    runs = [client.create_run().run_id for _ in range(3)]
    keys = ["loss", "損失/λ", "émoji 🚀 metric", "k" * 500, "val/ацц"]
    special = [math.nan, math.inf, -math.inf, 5e-324, -1.5e308, 0.0]
    sender = MetricSender(server.address)
    try:
        sender.log(runs[0], "warmup", 0.0)
        sender.flush(30)
        first_seq = sender._seq
        want: defaultdict[Series, list[tuple[int, int, Any]]] = defaultdict(list)
        for step in range(60):
            for r, run_id in enumerate(runs):
                for rank in range(3):
                    for k, key in enumerate(keys):
                        if (step + k) % (rank + 1):
                            continue  # series of different lengths: no fixed cycle of keys
                        value = special[(step + r + rank) % 6] if k % 2 else step + r / 8 + rank
                        sender.log(run_id, key, value, step, 10_000 + step, rank=rank)
                        want[run_id, key, rank].append((step, 10_000 + step, _same(value)))
        sender.log_many(runs[1], {"ü": math.nan, "ö": -math.inf}, step=7, timestamp_ms=5, rank=9)
        want[runs[1], "ü", 9].append((7, 5, "nan"))
        want[runs[1], "ö", 9].append((7, 5, -math.inf))
        sender.flush(30)
        assert sender._seq - first_seq == len(runs)
    finally:
        sender.close()
    assert len(want) == 3 * 3 * 5 + 2
    for (run_id, key, rank), points in want.items():
        got = client.get_metric_history(run_id, key, rank=rank)
        assert [(s, t, _same(v)) for s, t, v in got] == points, (key, rank)
    merged = history(client, runs[2], "val/ацц")
    assert len(merged) == sum(len(want[runs[2], "val/ацц", rank]) for rank in range(3))


def test_rejected_block_raises_on_flush_with_the_servers_reason(
    server: ServerProcess, client: TracklineClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sender, "WAKE_SECONDS", 30.0)  # one drain between flushes
    run = client.create_run()
    deleted = client.create_run()
    client.delete_run(deleted.run_id)
    sender = MetricSender(server.address)
    try:
        sender.log(run.run_id, "warmup", 0.0)
        sender.flush(30)
        for step in range(100):
            for rank in range(2):
                sender.log_many(deleted.run_id, {"loss": 1.0, "acc": math.nan}, step, rank=rank)
            sender.log_many(run.run_id, {"loss": float(step), "ключ": math.inf}, step)
        with pytest.raises(BatchRejected) as info:
            sender.flush(30)
        err = info.value
        assert (err.reason, err.run_id, err.points) == ("RUN_DELETED", deleted.run_id, 400)
        assert err.seq > 1 and err.message
        sender.flush(30)  # raised once only
        assert [(s, v) for s, _, v in history(client, run.run_id, "loss")] == [
            (s, float(s)) for s in range(100)
        ]
        assert len(history(client, run.run_id, "ключ")) == 100
        assert history(client, deleted.run_id, "loss") == []
    finally:
        sender.close()


def test_end_run_ends_the_run_then_raises_rejection(fluent: ServerProcess) -> None:
    client = TracklineClient(fluent.address)
    with pytest.raises(BatchRejected) as info, trackline.start_run() as run:
        trackline.log_metric("", 1.0)  # refused by the client: the server would refuse it
        trackline.log_metric("ok", 2.0, step=1)
    assert info.value.reason == "INVALID_KEY"
    assert client.get_run(run.run_id).status == pb.RUN_STATUS_FINISHED
    assert [(s, v) for s, _, v in history(client, run.run_id, "ok")] == [(1, 2.0)]
    assert trackline.active_run() is None


def test_fork_while_logging(fluent: ServerProcess) -> None:
    """The child streams its own points under its own writer id and never resends the
    parent's; the parent is unaffected."""
    client = TracklineClient(fluent.address)
    with trackline.start_run() as run:
        done = threading.Event()
        logged = [0]

        def parent_logging() -> None:
            step = 0
            while not done.is_set() or step < 20_000:
                trackline.log_metric("parent", float(step), step=step)
                step += 1
                if step % 500 == 0:
                    time.sleep(0.001)
            logged[0] = step

        thread = threading.Thread(target=parent_logging)
        thread.start()
        time.sleep(0.2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            pid = os.fork()
        if pid == 0:  # the child: log, flush, leave without running pytest's teardown
            code = 1
            try:
                for step in range(30_000):
                    trackline.log_metric("child", float(step), step=step)
                trackline.flush(60)
                code = 0
            finally:
                os._exit(code)
        deadline = time.monotonic() + 90
        while (waited := os.waitpid(pid, os.WNOHANG))[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                pytest.fail("the forked child hung")
            time.sleep(0.05)
        done.set()
        thread.join()
        assert os.waitstatus_to_exitcode(waited[1]) == 0
        trackline.flush(60)
        parent = history(client, run.run_id, "parent")
        assert [(s, v) for s, _, v in parent] == [(s, float(s)) for s in range(logged[0])]
        child = history(client, run.run_id, "child")
        assert [(s, v) for s, _, v in child] == [(s, float(s)) for s in range(30_000)]


def _child_logs_without_flushing() -> None:
    for step in range(10_000):
        trackline.log_metric("mp", float(step), step=step)


def test_multiprocessing_child_flushes_at_exit(fluent: ServerProcess) -> None:
    """A multiprocessing child ends with os._exit (no atexit); its points still arrive."""
    client = TracklineClient(fluent.address)
    with trackline.start_run() as run:
        trackline.log_metric("parent", 1.0, step=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            child = multiprocessing.get_context("fork").Process(target=_child_logs_without_flushing)
            child.start()
        child.join(60)
        assert child.exitcode == 0
        assert [(s, v) for s, _, v in history(client, run.run_id, "mp")] == [
            (s, float(s)) for s in range(10_000)
        ]
        trackline.flush()
        assert [(s, v) for s, _, v in history(client, run.run_id, "parent")] == [(1, 1.0)]


def test_fork_while_streaming_lets_grpc_run_its_fork_handlers(
    fluent: ServerProcess, capfd: pytest.CaptureFixture[str]
) -> None:
    """gRPC supports fork only with no call in progress; with the stream open it skipped its
    fork handlers (in most forks under load), and now and then a child aborted in gRPC's
    poller. The sender ends its stream before each fork and reopens it after, and every
    point of the parent and the children is stored once."""
    client = TracklineClient(fluent.address)
    forks = 5
    with trackline.start_run() as run:
        for i in range(forks):
            # Points in flight: the stream is busy when the fork comes.
            trackline.log_metrics({"parent": float(i)}, step=i)
            for step in range(20_000):
                trackline.log_metric("busy", float(step), step=i * 20_000 + step)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
                child = multiprocessing.get_context("fork").Process(
                    target=_child_logs_without_flushing
                )
                child.start()
            child.join(60)
            assert child.exitcode == 0
        trackline.flush(60)
        assert "skipping fork() handlers" not in capfd.readouterr().err
        assert len(history(client, run.run_id, "busy")) == forks * 20_000
        assert [(s, v) for s, _, v in history(client, run.run_id, "parent")] == [
            (i, float(i)) for i in range(forks)
        ]
        mp = Counter((s, v) for s, _, v in history(client, run.run_id, "mp"))
        assert mp == Counter({(s, float(s)): forks for s in range(10_000)})


def test_token_is_sent(server: ServerProcess, tmp_path: Path) -> None:
    server.kill()
    secured = start_server(tmp_path, server.store_uri, ["--auth-token", "s3cr3t"])
    client = TracklineClient(secured.address, token="s3cr3t")
    run = client.create_run()
    sender = MetricSender(secured.address, token="s3cr3t")
    sender.log(run.run_id, "loss", 0.5, 1)
    sender.flush(30)
    sender.close()
    assert history(client, run.run_id, "loss")[0][::2] == (1, 0.5)
    anonymous = MetricSender(secured.address, token="")
    anonymous.log(run.run_id, "loss", 0.5, 2)
    with pytest.raises(Unauthenticated):
        anonymous.flush(30)
    anonymous.close(timeout=0.1)


def test_ranks_of_a_distributed_job(server: ServerProcess, client: TracklineClient) -> None:
    run = client.create_run()
    steps, world = 5_000, 4
    script = textwrap.dedent(
        f"""
        import os, trackline
        rank = int(os.environ["RANK"])
        with trackline.start_run():
            for s in range({steps}):
                trackline.log_metric("loss", rank * 100000 + s, step=s)
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env={
                **os.environ,
                "RANK": str(rank),
                "WORLD_SIZE": str(world),
                "TRACKLINE_RUN_ID": run.run_id,
                "TRACKLINE_URI": server.address,
            },
        )
        for rank in range(world)
    ]
    assert [p.wait(90) for p in procs] == [0] * world
    merged = history(client, run.run_id, "loss")
    assert Counter((s, v) for s, _, v in merged) == Counter(
        (s, float(r * 100000 + s)) for r in range(world) for s in range(steps)
    )
    for rank in range(world):
        resp = client.stub.GetMetricHistory(
            tpb.GetMetricHistoryRequest(run_id=run.run_id, key="loss", rank=rank)
        )
        assert list(resp.ranks) == [rank] * steps
        assert list(resp.series.steps) == list(range(steps))
        assert list(resp.series.values) == [float(rank * 100000 + s) for s in range(steps)]


@pytest.mark.timeout(120)
def test_server_restart_loses_and_doubles_nothing(
    on_fixed_port: tuple[ServerProcess, int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    srv, port = on_fixed_port
    caplog.set_level(logging.WARNING, logger="trackline")
    client = TracklineClient(srv.address, retry_seconds=30)
    run = client.create_run()
    sender = MetricSender(srv.address)
    done = threading.Event()
    logged = [0]

    def logging_thread() -> None:
        step = 0
        while not done.is_set():
            sender.log(run.run_id, "loss", step * 0.25, step)
            step += 1
            if step % 200 == 0:
                time.sleep(0.001)
        logged[0] = step

    thread = threading.Thread(target=logging_thread)
    thread.start()
    try:
        time.sleep(1.0)
        srv.kill()  # mid-stream: batches are in flight, some committed but not acked
        time.sleep(0.5)
        start_server(tmp_path, srv.store_uri, ["--port", str(port)])
        time.sleep(1.0)
        done.set()
        thread.join()
        sender.flush(60)
        assert logged[0] > 10_000 and "reconnected" in caplog.text
        got = history(client, run.run_id, "loss")
        assert [(s, v) for s, _, v in got] == [(s, s * 0.25) for s in range(logged[0])]
    finally:
        done.set()
        thread.join()
        sender.close(timeout=1)


@pytest.mark.timeout(120)
def test_log_blocks_at_the_bound_while_the_server_is_away(
    on_fixed_port: tuple[ServerProcess, int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    srv, port = on_fixed_port
    client = TracklineClient(srv.address, retry_seconds=30)
    run = client.create_run()
    srv.kill()
    sender = MetricSender(srv.address, max_buffered_points=1_000)
    progress = [0]

    def logging_thread() -> None:
        for step in range(5_000):
            sender.log(run.run_id, "loss", float(step), step)
            progress[0] = step + 1

    thread = threading.Thread(target=logging_thread)
    try:
        with caplog.at_level(logging.WARNING, logger="trackline"):
            thread.start()
            time.sleep(1.5)
            assert thread.is_alive() and 900 <= progress[0] < 1_100  # blocked, not dropping
            assert "logging is blocked" in caplog.text
            with pytest.raises(TimeoutError):
                sender.flush(timeout=0.2)
            start_server(tmp_path, srv.store_uri, ["--port", str(port)])
            thread.join(60)
            assert not thread.is_alive()
            sender.flush(60)
        got = history(client, run.run_id, "loss")
        assert [(s, v) for s, _, v in got] == [(s, float(s)) for s in range(5_000)]
    finally:
        sender.close(timeout=1)
        thread.join(10)
