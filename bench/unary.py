"""Unary calls under an independent load generator: GetRun, SearchRuns, a small LogBatch, at
concurrency 1 and 16 over one connection, on SQLite and (with --pg-url) PostgreSQL, driven by
ghz in its own process; and one-point synchronous log_metric calls from one Python client.
Prints calls/s with p50 and p99. Figures only: nothing here passes or fails on time.

ghz is installed on first use (``go install github.com/bojand/ghz/cmd/ghz@v0.120.0`` into
the venv's bin: ``@latest`` resolves to an old release that cannot parse proto3 ``optional``).
It reads the repo's protos (``--proto``): grpcio-reflection cannot resolve methods by name.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from trackline import TracklineClient
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb

from bench.stores import run_on_stores
from tests.support.servers import start_server

ROOT = Path(__file__).resolve().parent.parent
GHZ_VERSION = "v0.120.0"
# The standard health service's proto (Check only), for the floor: a call that does nothing.
HEALTH_PROTO = ("bench/protos", "grpc/health/v1/health.proto")
SEARCH_RUNS = 1_000  # SearchRuns runs over this many runs, about half of them matching
# What a list of runs shows (the fields a runs table has): no params or tags.
LIST_FIELDS = ["run_id", "run_name", "status", "start_time", "latest_metrics"]


def ghz_binary() -> str:
    """The ghz binary: on PATH, in the venv's bin, or installed there now."""
    bin_dir = Path(sys.executable).parent
    found = shutil.which("ghz") or shutil.which("ghz", path=str(bin_dir))
    if found:
        return found
    print(f"installing ghz {GHZ_VERSION} into {bin_dir.name}/ (go install)", flush=True)
    subprocess.run(
        ["go", "install", f"github.com/bojand/ghz/cmd/ghz@{GHZ_VERSION}"],
        check=True,
        env={**os.environ, "GOBIN": str(bin_dir)},
    )
    return str(bin_dir / "ghz")


def ghz(
    address: str,
    method: str,
    data: dict[str, object],
    concurrency: int,
    seconds: float,
    proto: tuple[str, str] = ("protos", "trackline/v1/tracking.proto"),
    transport: tuple[str, ...] = ("--insecure",),
) -> str:
    """Runs ghz against ``address`` and returns "calls/s, p50, p99" (errors named).
    ``method`` is a full name (package.Service.Method) from ``proto`` (import path, file);
    ``transport``: ghz's flags for TLS and metadata (plaintext by default)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(data, f)
    try:
        out = subprocess.run(
            [
                ghz_binary(), *transport, "--proto", f"{proto[0]}/{proto[1]}",
                "--import-paths", proto[0], "--call", method,
                "--data-file", f.name, "--concurrency", str(concurrency), "--connections", "1",
                "--duration", f"{seconds}s", "--duration-stop", "wait", "--format", "json",
                address,
            ],
            check=True, capture_output=True, text=True, cwd=ROOT,
        ).stdout  # fmt: skip
    finally:
        os.unlink(f.name)
    report = json.loads(out)
    latency = {d["percentage"]: d["latency"] / 1e6 for d in report.get("latencyDistribution") or []}
    codes = {k: v for k, v in (report.get("statusCodeDistribution") or {}).items() if k != "OK"}
    errors = f"; errors {codes}" if codes else ""
    return (
        f"{report['rps']:,.0f} calls/s, p50 {latency.get(50, 0):.2f} ms,"
        f" p99 {latency.get(99, 0):.2f} ms{errors}"
    )


def seed(client: TracklineClient, search_runs: int = SEARCH_RUNS) -> tuple[str, list[str]]:
    """A run with 5 params, 5 tags and 5 metrics (GetRun's), and an experiment of
    ``search_runs`` runs with a `loss` each, half of them below 0.5 (SearchRuns')."""
    run = client.create_run(run_name="get-me", tags={f"t{i}": f"tag value {i}" for i in range(5)})
    metrics = [
        pb.MetricSeries(key=f"m{i}", steps=[1], timestamps=[1], values=[0.5]) for i in range(5)
    ]
    params = {f"p{i}": f"param value {i}" for i in range(5)}
    client.log_batch(run.run_id, metrics=metrics, params=params)
    exp = client.create_experiment(f"search-{time.time_ns()}")
    rng = random.Random(7)
    for i in range(search_runs):
        r = client.create_run(exp.experiment_id, run_name=f"r{i}")
        loss = pb.MetricSeries(key="loss", steps=[1], timestamps=[1], values=[rng.random()])
        client.log_batch(r.run_id, metrics=[loss], params={"lr": "0.01", "optimizer": "adam"})
    return run.run_id, [exp.experiment_id]


def analyze(store_uri: str) -> None:
    """On PostgreSQL, gathers the tables' statistics now. PostgreSQL plans by them, and its
    autovacuum gathers them within a minute or so of a bulk load such as the seed; measured
    right after it, searches ran on plans made blind (54 ms a filter instead of 0.8)."""
    if not store_uri.startswith("postgresql"):
        return
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(store_uri.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute("ANALYZE")
        finally:
            await conn.close()

    asyncio.run(run())


def log_batch_data(run_id: str) -> dict[str, object]:
    steps = list(range(100))
    series = [
        {"key": f"m{i}", "steps": steps, "timestamps": [1] * 100, "values": [0.25] * 100}
        for i in range(10)
    ]
    return {"run_id": run_id, "metrics": series}


def one_point_writes(client: TracklineClient, run_id: str, seconds: float) -> str:
    n, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        client.log_metric(run_id, "sync", 0.5, step=n)
        n += 1
    return f"{n / (time.monotonic() - start):,.0f} calls/s"


def bench_store(label: str, make_uri: Callable[[], str | None], seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        srv = start_server(Path(tmp), make_uri())
        try:
            client = TracklineClient(srv.address)
            run_id, experiment_ids = seed(client)
            analyze(srv.store_uri)
            search = tpb.SearchRunsRequest(
                experiment_ids=experiment_ids, filter="metrics.loss < 0.5"
            )
            calls = [
                ("GetRun (5 params, tags, metrics)", "GetRun", {"run_id": run_id}),
                ("SearchRuns `metrics.loss < 0.5` over 1,000 runs", "SearchRuns",
                 {"experiment_ids": list(search.experiment_ids), "filter": search.filter}),
                ("same, read_mask `run_id,run_name,status,start_time,latest_metrics`",
                 "SearchRuns", {"experiment_ids": list(search.experiment_ids),
                                "filter": search.filter, "read_mask": {"paths": LIST_FIELDS}}),
                ("LogBatch 10 series x 100 points", "LogBatch", log_batch_data(run_id)),
            ]  # fmt: skip
            for concurrency in (1, 16):
                figures = ghz(srv.address, "grpc.health.v1.Health.Check", {}, concurrency,
                              seconds, HEALTH_PROTO)  # fmt: skip
                print(f"{label}, health Check (the transport's floor), concurrency {concurrency}:"
                      f" {figures}", flush=True)  # fmt: skip
            found = client.stub.SearchRuns(search)
            search.read_mask.paths.extend(LIST_FIELDS)
            masked = client.stub.SearchRuns(search)
            print(f"{label}: SearchRuns matches {len(found.runs)} runs, {found.ByteSize():,} bytes"
                  f" ({masked.ByteSize():,} with the read_mask)")  # fmt: skip
            for name, method, data in calls:
                for concurrency in (1, 16):
                    figures = ghz(srv.address, f"trackline.v1.TrackingService.{method}", data,
                                  concurrency, seconds)  # fmt: skip
                    print(f"{label}, {name}, concurrency {concurrency}: {figures}", flush=True)
            print(f"{label}, one-point log_metric, one client: "
                  f"{one_point_writes(client, run_id, seconds)}", flush=True)  # fmt: skip
            client.close()
        finally:
            srv.stop()


def main() -> None:
    run_on_stores(__doc__, bench_store)


if __name__ == "__main__":
    main()
