"""Prints LogBatch throughput (points/s) with 1 and 8 concurrent clients, synchronous
single-metric calls/s, and the read time of a 1,000,000-point history, for a fresh server on
SQLite started by this script. Figures only: nothing here passes or fails on time."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from trackline import TracklineClient
from trackline.v1 import resources_pb2 as pb

from tests.support.servers import start_server

SERIES, POINTS = 10, 2000  # one LogBatch: 10 series x 2,000 points


def batch(step0: int) -> list[pb.MetricSeries]:
    steps = list(range(step0, step0 + POINTS))
    return [
        pb.MetricSeries(key=f"m{i}", steps=steps, timestamps=[1] * POINTS, values=[0.5] * POINTS)
        for i in range(SERIES)
    ]


def logbatch_rate(address: str, clients: int, seconds: float = 5.0) -> float:
    counts = [0] * clients

    def worker(i: int) -> None:
        c = TracklineClient(address)
        run = c.create_run()
        end = time.monotonic() + seconds
        step = 0
        while time.monotonic() < end:
            c.log_batch(run.run_id, metrics=batch(step))
            step += POINTS
            counts[i] += SERIES * POINTS

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - start)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        srv = start_server(Path(tmp))
        try:
            for n in (1, 8):
                print(f"LogBatch, {n} client(s): {logbatch_rate(srv.address, n):,.0f} points/s")
            c = TracklineClient(srv.address)
            run = c.create_run()
            n, start = 0, time.monotonic()
            while time.monotonic() - start < 3:
                c.log_metric(run.run_id, "loss", 0.1, step=n)
                n += 1
            print(f"synchronous log_metric: {n / (time.monotonic() - start):,.0f} calls/s")
            run = c.create_run()
            for k in range(10):
                steps = list(range(k * 100_000, (k + 1) * 100_000))
                c.log_batch(
                    run.run_id,
                    metrics=[
                        pb.MetricSeries(
                            key="long",
                            steps=steps,
                            timestamps=[1] * len(steps),
                            values=[1.0] * len(steps),
                        )
                    ],
                )
            start = time.monotonic()
            got = sum(1 for _ in c.get_metric_history(run.run_id, "long", page_size=1_000_000))
            print(f"history read of {got:,} points: {time.monotonic() - start:.2f} s")
        finally:
            srv.proc.terminate()
            srv.proc.wait(15)


if __name__ == "__main__":
    main()
