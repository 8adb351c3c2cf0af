"""Prints SearchRuns latency (median, p95) over 100,000 runs on SQLite for several filters.

The runs are bulk-inserted into the server's SQLite file while the server is stopped (creating
100,000 runs through the API measures CreateRun, not search), then a fresh server process
answers the searches. Each run has 2 metrics, 2 params and 1 tag, spread over 10 experiments.
Figures only: nothing here passes or fails on time.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from trackline import TracklineClient
from trackline.v1 import tracking_pb2 as tpb

from tests.support.servers import start_server

RUNS = 100_000
EXPERIMENTS = 10
QUERIES = [
    ("metric+param filter", "metrics.loss < 0.3 and params.optimizer = 'adam'", []),
    (
        "metric+param filter, ordered by metric",
        "metrics.loss < 0.3 and params.optimizer = 'adam'",
        ["metrics.loss ASC"],
    ),
    (
        "OR of tag and metric, ordered by param",
        "(tags.team = 'vision' or metrics.acc > 0.99) and params.lr != '0.1'",
        ["params.lr DESC"],
    ),
    ("no filter (first page, newest first)", "", []),
    ("selective metric filter", "metrics.loss < 0.001", []),
]


def populate(db: Path) -> None:
    rnd = random.Random(7)
    con = sqlite3.connect(db)
    con.executemany(
        "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage,"
        " creation_time, last_update_time) VALUES (?, ?, ?, 1, 0, 0)",
        [(i, f"exp-{i}", f"/tmp/{i}") for i in range(1, EXPERIMENTS + 1)],
    )
    runs, metrics, params, tags = [], [], [], []
    for i in range(RUNS):
        run_id = f"{i:032x}"
        runs.append((run_id, 1 + i % EXPERIMENTS, f"run-{i}", 3, 1_700_000_000_000 + i, f"a/{i}"))
        metrics += [(run_id, "loss", rnd.random(), 100, 0), (run_id, "acc", rnd.random(), 100, 0)]
        params += [
            (run_id, "optimizer", rnd.choice(["adam", "sgd", "rmsprop"])),
            (run_id, "lr", rnd.choice(["0.1", "0.01", "0.001"])),
        ]
        tags.append((run_id, "team", rnd.choice(["vision", "nlp", "speech", "rl"])))
    con.executemany(
        "INSERT INTO runs (run_id, experiment_id, run_name, status, start_time, end_time,"
        " lifecycle_stage, parent_run_id, artifact_uri) VALUES (?, ?, ?, ?, ?, NULL, 1, NULL, ?)",
        runs,
    )
    con.executemany("INSERT INTO latest_metrics VALUES (?, ?, ?, ?, ?)", metrics)
    con.executemany("INSERT INTO params VALUES (?, ?, ?)", params)
    con.executemany("INSERT INTO tags VALUES (?, ?, ?)", tags)
    con.commit()
    con.execute("ANALYZE")
    con.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        srv = start_server(Path(tmp))  # creates the schema through the migrations
        srv.proc.terminate()
        srv.proc.wait(15)
        db = Path(tmp) / "trackline.db"
        t0 = time.monotonic()
        populate(db)
        print(f"populated {RUNS:,} runs in {time.monotonic() - t0:.1f} s")
        srv = start_server(Path(tmp))
        try:
            client = TracklineClient(srv.address)
            for label, filter_text, order_by in QUERIES:
                times, found = [], 0
                for _ in range(10):
                    start = time.perf_counter()
                    resp = client.stub.SearchRuns(
                        tpb.SearchRunsRequest(filter=filter_text, order_by=order_by)
                    )
                    times.append((time.perf_counter() - start) * 1000)
                    found = len(resp.runs)
                times.sort()
                print(
                    f"SearchRuns, {label}: median {statistics.median(times):.0f} ms,"
                    f" p95 {times[int(len(times) * 0.95) - 1]:.0f} ms"
                    f" (first page: {found} runs)"
                )
            client.close()
        finally:
            srv.proc.terminate()
            srv.proc.wait(15)


if __name__ == "__main__":
    main()
