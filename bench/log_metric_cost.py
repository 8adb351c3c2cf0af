"""Prints what ``trackline.log_metric`` costs the caller (median and p99, in microseconds, in
a tight loop) and the end-to-end time to log and flush 1,000,000 points through the fluent
API, against a fresh server on SQLite started by this script. Figures only: nothing here
passes or fails on time."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import trackline

from tests.support.servers import start_server

BATCH = 1000  # calls per timed batch (the timer's own cost spreads over them)
BATCHES = 300
SINGLE = 300_000  # individually timed calls, for the tail
E2E_POINTS = 1_000_000


def batch_means(key: str) -> list[float]:
    """Per-call cost (us) of each batch of BATCH calls."""
    clock, log = time.perf_counter_ns, trackline.log_metric
    means = []
    step = 0
    for _ in range(BATCHES):
        start = clock()
        for _ in range(BATCH):
            log(key, 0.5, step)
            step += 1
        means.append((clock() - start) / BATCH / 1000)
    return means


def single_calls(key: str) -> list[float]:
    """Cost (us) of each of SINGLE calls, minus the median cost of reading the clock."""
    clock, log = time.perf_counter_ns, trackline.log_metric
    overhead = statistics.median(-(clock() - clock()) for _ in range(10_000))
    costs = []
    for step in range(SINGLE):
        start = clock()
        log(key, 0.5, step)
        costs.append((clock() - start - overhead) / 1000)
    return costs


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # An optional argument names the store, e.g. a PostgreSQL URL; SQLite otherwise.
        srv = start_server(Path(tmp), sys.argv[1] if len(sys.argv) > 1 else None)
        try:
            trackline.set_tracking_uri(srv.address)
            with trackline.start_run(run_name="bench"):
                trackline.log_metric("warmup", 0.0)
                trackline.flush()
                means = batch_means("tight")
                costs = sorted(single_calls("single"))
                trackline.flush()
                print(
                    f"log_metric, tight loop: median {statistics.median(means):.3f} us/call "
                    f"(batches of {BATCH:,}); single calls: median "
                    f"{costs[len(costs) // 2]:.3f} us, p99 {costs[int(len(costs) * 0.99)]:.3f} us"
                )
                start = time.perf_counter()
                for step in range(E2E_POINTS):
                    trackline.log_metric("e2e", 0.25, step)
                logged = time.perf_counter() - start
                trackline.flush()
                total = time.perf_counter() - start
                print(
                    f"{E2E_POINTS:,} points: logged in {logged:.2f} s, logged and flushed in "
                    f"{total:.2f} s ({E2E_POINTS / total:,.0f} points/s)"
                )
        finally:
            trackline.set_tracking_uri("localhost")  # closes the sender; no connection
            srv.proc.terminate()
            srv.proc.wait(15)


if __name__ == "__main__":
    main()
