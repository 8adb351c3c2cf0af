"""The streaming metric client (``trackline._sender.MetricSender`` and the fluent
``log_metric``) against a real server: exactly-once delivery across flushes, rejections,
forks, ranks, server restarts and a server that stays away."""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import trackline
from conftest import ServerProcess, start_server
from trackline import BatchRejected, TracklineClient, Unauthenticated
from trackline._sender import MetricSender, _build_batches, encode_request
from trackline.v1 import ingest_pb2 as ipb
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb


@pytest.fixture
def fluent(server: ServerProcess) -> Iterator[ServerProcess]:
    trackline.set_tracking_uri(server.address)
    yield server
    trackline.set_tracking_uri(server.address)  # closes this test's sender while it can flush


def history(client: TracklineClient, run_id: str, key: str) -> list[tuple[int, int, float]]:
    return list(client.get_metric_history(run_id, key))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(srv: ServerProcess) -> None:
    if srv.proc.poll() is None:
        srv.proc.terminate()
        srv.proc.wait(15)
    if srv.proc.stdout:
        srv.proc.stdout.close()


@pytest.fixture
def on_fixed_port(server: ServerProcess, tmp_path: Path) -> Iterator[tuple[ServerProcess, int]]:
    """The fixture's store served on a fixed port, so that a restarted server is found at
    the same address (``start_server`` passes ``--port 0``; a later ``--port`` wins)."""
    server.kill()
    port = free_port()
    srv = start_server(tmp_path, server.store_uri, ["--port", str(port)])
    yield srv, port
    stop(srv)


def test_encoding_matches_protobuf() -> None:
    """The sender encodes batches itself; protobuf must read them as meant."""
    method = ipb.DESCRIPTOR.services_by_name["IngestService"].methods_by_name["StreamMetrics"]
    assert method.full_name == "trackline.v1.IngestService.StreamMetrics"
    items = [("r1", "loss", 0, 1, 10, 0.5), ("r1", "acc", 0, 1, 10, 0.25)]
    items += [("r1", "loss", -3, -(2**63), 2**63 - 1, math.inf), ("r2", "ké", 2**31 - 1, 2, 3, 1.0)]
    items += [("r2", "", 0, 1, 1, 1.0), ("r2", "x", 0, 1.5, 1, 1.0), ("r2", "x", 0, 2, 1, 2.0)]
    batches, markers, errors = _build_batches(items)
    assert markers == [] and {(e.reason, e.points) for e in errors} == {
        ("INVALID_KEY", 1),
        ("INVALID_POINT", 1),
    }
    got = {}
    for body, run_id, n in batches:
        msg = ipb.StreamMetricsRequest.FromString(encode_request(2**40, body))
        assert msg.seq == 2**40 and not msg.writer_id
        assert n == sum(len(s.values) for s in msg.series)
        for s in msg.series:
            assert s.run_id == run_id
            got[s.run_id, s.key, s.rank] = (list(s.steps), list(s.timestamps), list(s.values))
    assert got == {
        ("r1", "loss", 0): ([1], [10], [0.5]),
        ("r1", "acc", 0): ([1], [10], [0.25]),
        ("r1", "loss", -3): ([-(2**63)], [2**63 - 1], [math.inf]),
        ("r2", "ké", 2**31 - 1): ([2], [3], [1.0]),
        ("r2", "x", 0): ([2], [1], [2.0]),
    }


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


def test_token_is_sent(server: ServerProcess, tmp_path: Path) -> None:
    server.kill()
    secured = start_server(tmp_path, server.store_uri, ["--auth-token", "s3cr3t"])
    try:
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
    finally:
        stop(secured)


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
    restarted: ServerProcess | None = None
    try:
        time.sleep(1.0)
        srv.kill()  # mid-stream: batches are in flight, some committed but not acked
        time.sleep(0.5)
        restarted = start_server(tmp_path, srv.store_uri, ["--port", str(port)])
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
        if restarted is not None:
            stop(restarted)


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
    restarted: ServerProcess | None = None
    try:
        with caplog.at_level(logging.WARNING, logger="trackline"):
            thread.start()
            time.sleep(1.5)
            assert thread.is_alive() and 900 <= progress[0] < 1_100  # blocked, not dropping
            assert "logging is blocked" in caplog.text
            with pytest.raises(TimeoutError):
                sender.flush(timeout=0.2)
            restarted = start_server(tmp_path, srv.store_uri, ["--port", str(port)])
            thread.join(60)
            assert not thread.is_alive()
            sender.flush(60)
        got = history(client, run.run_id, "loss")
        assert [(s, v) for s, _, v in got] == [(s, float(s)) for s in range(5_000)]
    finally:
        sender.close(timeout=1)
        thread.join(10)
        if restarted is not None:
            stop(restarted)
