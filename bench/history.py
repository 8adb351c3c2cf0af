"""Prints the time of a full history read of a 1,000,000-point series through the client, and
of a 1,000-point downsampled view of a 10,000,000-point series (median of several calls), for
a fresh server started by this script: on SQLite, or, given the URL of a PostgreSQL server
(postgresql+asyncpg://user:password@host/db, a role that may create databases), on a fresh
database there. Figures only: nothing here passes or fails on time."""

from __future__ import annotations

import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from trackline import TracklineClient
from trackline.v1 import resources_pb2 as pb

from tests.support import databases
from tests.support.servers import start_server

BATCH = 1_000_000  # points per LogBatch call


def write(client: TracklineClient, run_id: str, key: str, points: int) -> None:
    stamps = [1_700_000_000_000] * BATCH
    for start in range(0, points, BATCH):
        steps = list(range(start, start + BATCH))
        values = [((s * 7919) % 10_007) / 10_007 for s in steps]
        client.log_batch(
            run_id,
            metrics=[pb.MetricSeries(key=key, steps=steps, timestamps=stamps, values=values)],
        )


def store_uri() -> str | None:
    """None (SQLite in the temporary directory) or a fresh PostgreSQL database."""
    if len(sys.argv) < 2:
        return None
    databases.PG_URL = sys.argv[1]
    return databases.fresh_postgres_database()


def median_ms(call: Callable[[], object], times: int = 7) -> tuple[float, float]:
    """(median, best) wall time of ``call`` in milliseconds."""
    spent = []
    for _ in range(times):
        start = time.perf_counter()
        call()
        spent.append(time.perf_counter() - start)
    return statistics.median(spent) * 1000, min(spent) * 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        srv = start_server(Path(tmp), store_uri())
        try:
            c = TracklineClient(srv.address, retry_seconds=120)
            run = c.create_run()

            write(c, run.run_id, "full", 1_000_000)

            def read_all(page_size: int) -> int:
                return sum(1 for _ in c.get_metric_history(run.run_id, "full", page_size=page_size))

            for page_size in (0, 1_000_000):
                got = read_all(page_size)
                mid, best = median_ms(functools.partial(read_all, page_size))
                label = f"pages of {page_size:,}" if page_size else "default pages"
                print(f"full history read of {got:,} points ({label}): "
                      f"median {mid / 1000:.2f} s, best {best / 1000:.2f} s")  # fmt: skip

            start = time.monotonic()
            write(c, run.run_id, "big", 10_000_000)
            print(f"wrote 10,000,000 points in {time.monotonic() - start:.1f} s")
            view = list(c.get_metric_history(run.run_id, "big", max_points=1000))
            mid, best = median_ms(
                lambda: list(c.get_metric_history(run.run_id, "big", max_points=1000))
            )
            print(f"1,000-point view of a 10,000,000-point series ({len(view)} points): "
                  f"median {mid:.0f} ms, best {best:.0f} ms")  # fmt: skip
            mid, best = median_ms(
                lambda: c.get_metric_histories([run.run_id], ["big", "full"], max_points=1000)
            )
            print(f"GetMetricHistories, 1,000-point views of both series: median {mid:.0f} ms, "
                  f"best {best:.0f} ms")  # fmt: skip
        finally:
            srv.proc.terminate()
            srv.proc.wait(15)
            databases.drop_created_databases()


if __name__ == "__main__":
    main()
