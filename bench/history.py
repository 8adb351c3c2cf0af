"""Prints the time of a full history read of a 1,000,000-point series through the client, and
of a 1,000-point downsampled view of a 10,000,000-point series (median of several calls), for
a fresh server started by this script: on SQLite, or on the store URI given as the argument.
Figures only: nothing here passes or fails on time."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import start_server  # noqa: E402
from trackline import TracklineClient  # noqa: E402
from trackline.v1 import resources_pb2 as pb  # noqa: E402

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


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        srv = start_server(Path(tmp), sys.argv[1] if len(sys.argv) > 1 else None)
        try:
            c = TracklineClient(srv.address, retry_seconds=120)
            run = c.create_run()

            write(c, run.run_id, "full", 1_000_000)
            for page_size in (0, 1_000_000):
                start = time.monotonic()
                got = sum(1 for _ in c.get_metric_history(run.run_id, "full", page_size=page_size))
                label = f"pages of {page_size:,}" if page_size else "default pages"
                print(f"full history read of {got:,} points ({label}): "
                      f"{time.monotonic() - start:.2f} s")  # fmt: skip

            start = time.monotonic()
            write(c, run.run_id, "big", 10_000_000)
            print(f"wrote 10,000,000 points in {time.monotonic() - start:.1f} s")
            times = []
            for _ in range(7):
                start = time.perf_counter()
                view = list(c.get_metric_history(run.run_id, "big", max_points=1000))
                times.append(time.perf_counter() - start)
            print(f"1,000-point view of a 10,000,000-point series ({len(view)} points): "
                  f"median {statistics.median(times) * 1000:.0f} ms, "
                  f"best {min(times) * 1000:.0f} ms")  # fmt: skip
        finally:
            srv.proc.terminate()
            srv.proc.wait(15)


if __name__ == "__main__":
    main()
