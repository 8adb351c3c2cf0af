"""The crash test: eight writer processes log through the buffered client while the server is
killed with SIGKILL at a random moment and restarted; afterwards every logged point is stored
exactly once."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from trackline import TracklineClient

from tests.support.databases import fresh_postgres_database
from tests.support.ports import free_port
from tests.support.servers import start_server

WRITERS = 8
POINTS = 60_000

# Logs POINTS points of key w<rank> into the shared run, paced to last about three seconds,
# then flushes: exit status 0 means the server acknowledged every point.
WRITER = """
import sys, time, trackline
address, run_id, key, points = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
trackline.set_tracking_uri(address)
with trackline.start_run(run_id=run_id):
    for step in range(points):
        trackline.log_metric(key, step * 0.5, step=step)
        if step % 1000 == 999:
            time.sleep(0.05)
    trackline.flush(timeout=120)
print("flushed", flush=True)
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_mid_stream_loses_and_doubles_nothing(backend: str, tmp_path: Path) -> None:
    store_uri = fresh_postgres_database() if backend == "postgresql" else None
    port = free_port()
    srv = start_server(tmp_path, store_uri, extra_args=["--port", str(port)])
    client = TracklineClient(srv.address, retry_seconds=60)
    run_id = client.create_run(run_name="crash").run_id
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, srv.address, run_id, f"w{i}", str(POINTS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "RANK": str(i), "WORLD_SIZE": str(WRITERS)},
        )
        for i in range(WRITERS)
    ]
    kill_at = random.uniform(0.5, 2.5)
    print(f"killing the server {kill_at:.2f} s after the writers started")
    time.sleep(kill_at)
    srv.kill()
    time.sleep(0.5)
    srv = start_server(tmp_path, srv.store_uri, extra_args=["--port", str(port)])
    try:
        for w in writers:
            out, err = w.communicate(timeout=240)
            assert w.returncode == 0 and "flushed" in out, err
        for i in range(WRITERS):
            points = list(client.get_metric_history(run_id, f"w{i}"))
            steps = [step for step, _, _ in points]
            assert len(steps) == POINTS, f"w{i}: {len(steps)} points stored, {POINTS} logged"
            assert steps == list(range(POINTS)), f"w{i}: a point is missing or doubled"
            assert all(value == step * 0.5 for step, _, value in points)
    finally:
        client.close()
        for w in writers:
            if w.poll() is None:
                w.kill()
