"""The streaming metric client (``trackline._sender.MetricSender`` and the fluent
``log_metric``) against a real server: exactly-once delivery across flushes, rejections,
forks, ranks, server restarts and a server that stays away."""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
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
from trackline import BatchRejected, TracklineClient, Unauthenticated, _sender
from trackline._sender import MetricSender
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
        first_seq = sender._unacked.seq
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
        assert sender._unacked.seq - first_seq == len(runs)
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
