"""Prints sustained committed points/s of IngestService.StreamMetrics for two load shapes and a
single writer, with the server's peak memory, on SQLite and (when a URL is given) PostgreSQL.

Shapes (acks arrive only after commit; a stream keeps at most WINDOW = 16 batches unacked, as
a pipelining client does: the Python client's bound is in points, TRACKLINE_MAX_BUFFERED_POINTS):
  dense           8 writer processes x 1 stream, batches of 10 series x 2,000 points
  training-like   8 processes x 8 streams (64), batches of 50 series x 10 points; the streams
                  of a process are the ranks of one run
  single writer   1 process x 1 stream, the dense batch

Load generators send pre-encoded batches (the seq field is prepended to a fixed body: protobuf
messages concatenate) from one asyncio event loop per process, so they spend their CPU on the
wire, not on building messages or switching threads. They run on the same 2 cores as the
server: the figures are what one machine does end to end. The clock starts once every process
has connected and opened its streams, and stops when the last one has its acks.

    .venv/bin/python bench/ingest.py [--seconds 30] [--pg-url postgresql+asyncpg://...]

It then runs bench/log_metric_cost.py (log_metric median/p99, 1,000,000 points logged and
flushed through the fluent API) and bench/history.py (a 1,000,000-point history read, a
1,000-point view of 10,000,000 points) against each store.

Figures only: nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from multiprocessing.synchronize import Barrier
from pathlib import Path

import grpc
from trackline import TracklineClient
from trackline.v1 import ingest_pb2 as ipb

from bench.stores import stores
from tests.support import databases
from tests.support.servers import ServerProcess, start_server

WINDOW = 16
SHAPES = {
    "dense (8 writers, 10 series x 2,000 points)": (8, 1, 10, 2000),
    "training-like (64 streams, 50 series x 10 points)": (8, 8, 50, 10),
    "single writer (10 series x 2,000 points)": (1, 1, 10, 2000),
}


def _body(run_id: str, rank: int, series: int, points: int) -> bytes:
    """A batch of ``series`` series of ``points`` points in one SeriesBlock."""
    now = int(time.time() * 1000)
    block = ipb.SeriesBlock(
        run_ids=[run_id],
        keys=[f"m{k}" for k in range(series)],
        ranks=[rank] * series,
        lengths=[points] * series,
        steps=[s for _ in range(series) for s in range(points)],
        timestamps=[now] * (series * points),
        values=[0.5 + k for k in range(series) for _ in range(points)],
    )
    return ipb.StreamMetricsRequest(block=block).SerializeToString()


async def _stream(channel: grpc.aio.Channel, run_id: str, rank: int, series: int, points: int,
                  seconds: float, go: asyncio.Event) -> int:  # fmt: skip
    """Streams one writer's batches for ``seconds`` once ``go`` is set; returns the points
    acked."""
    call = channel.stream_stream(
        "/trackline.v1.IngestService/StreamMetrics",
        request_serializer=lambda b: b,
        response_deserializer=ipb.StreamMetricsResponse.FromString,
    )()
    body = _body(run_id, rank, series, points)
    await call.write(
        ipb.StreamMetricsRequest(
            writer_id=f"bench-{uuid.uuid4().hex}", writer_key=os.urandom(32)
        ).SerializeToString()
    )
    window = asyncio.Semaphore(WINDOW)
    await call.read()  # the handshake: the stream is open
    await go.wait()
    stop = time.monotonic() + seconds
    sent = acked = 0

    async def read_acks() -> None:
        nonlocal acked
        while (resp := await call.read()) is not grpc.aio.EOF:
            for _ in range(resp.acked_seq - acked):
                window.release()
            acked = max(acked, resp.acked_seq)
            if time.monotonic() >= stop and acked >= sent:
                return

    reader = asyncio.create_task(read_acks())
    while time.monotonic() < stop:
        await window.acquire()
        sent += 1
        await call.write(ipb.StreamMetricsRequest(seq=sent).SerializeToString() + body)
    await reader
    call.cancel()
    return acked * series * points


async def _streams(address: str, run_id: str, streams: int, series: int, points: int,
                   seconds: float, start: Barrier) -> int:  # fmt: skip
    async with grpc.aio.insecure_channel(address) as channel:
        go = asyncio.Event()
        streaming = asyncio.gather(
            *(_stream(channel, run_id, r, series, points, seconds, go) for r in range(streams))
        )
        await asyncio.to_thread(start.wait)
        go.set()
        done = await streaming
    return sum(done)


def _process(address: str, run_id: str, streams: int, series: int, points: int,
             seconds: float, start: Barrier, results: mp.Queue[int]) -> None:  # fmt: skip
    """One load process: its streams (the ranks of one run) share an event loop, and start
    sending when every process is ready."""
    results.put(asyncio.run(_streams(address, run_id, streams, series, points, seconds, start)))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_shape(srv: ServerProcess, procs: int, streams: int, series: int, points: int,
              seconds: float) -> float:  # fmt: skip
    client = TracklineClient(srv.address)
    runs = [client.create_run(run_name=f"bench-{i}").run_id for i in range(procs)]
    client.close()
    ctx = mp.get_context("spawn")
    results: mp.Queue[int] = ctx.Queue()
    # Every process imports, connects and opens its streams before the clock starts: the
    # figure is the server's sustained rate, not the start-up of eight Python processes.
    ready = ctx.Barrier(procs + 1)
    workers = [
        ctx.Process(
            target=_process,
            args=(srv.address, runs[i], streams, series, points, seconds, ready, results),
        )  # fmt: skip
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    ready.wait()
    start = time.monotonic()
    total = sum(results.get() for _ in workers)
    elapsed = time.monotonic() - start
    for w in workers:
        w.join()
    return total / elapsed


def bench_store(label: str, make_uri: Callable[[], str | None], seconds: float) -> None:
    for shape, (procs, streams, series, points) in SHAPES.items():
        with tempfile.TemporaryDirectory() as tmp:
            srv = start_server(Path(tmp), make_uri())
            try:
                rate = run_shape(srv, procs, streams, series, points, seconds)
                rss = peak_rss_mb(srv.proc.pid)
                print(f"{label}, {shape}: {rate:,.0f} points/s committed;"
                      f" server peak RSS {rss:.0f} MB", flush=True)  # fmt: skip
            finally:
                srv.proc.terminate()
                srv.proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0, help="how long each shape streams")
    parser.add_argument("--pg-url", default=os.environ.get("TRACKLINE_TEST_PG_URL", ""))
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    try:
        for label, make_uri in stores(args.pg_url):
            bench_store(label, make_uri, args.seconds)
            # The client-side cost and the reads, against a fresh server on the same store.
            for script in ("log_metric_cost", "history"):
                uri = make_uri()
                print(f"{label}, bench/{script}.py:", flush=True)
                subprocess.run([sys.executable, "-m", f"bench.{script}", *([uri] if uri else [])],
                               check=True, cwd=root)  # fmt: skip
    finally:
        databases.drop_created_databases()


if __name__ == "__main__":
    main()
