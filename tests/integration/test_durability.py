"""Acknowledged means committed: what the server acked survives SIGKILL."""

from __future__ import annotations

from pathlib import Path

from trackline import TracklineClient
from trackline.v1 import resources_pb2 as pb

from tests.support.servers import ServerProcess, start_server


def test_acked_writes_survive_kill_9(server: ServerProcess, tmp_path: Path) -> None:
    client = TracklineClient(server.address, retry_seconds=5)
    run = client.create_run()
    for i in range(50):
        client.log_batch(
            run.run_id,
            metrics=[
                pb.MetricSeries(
                    key="loss",
                    steps=list(range(i * 100, i * 100 + 100)),
                    timestamps=[1] * 100,
                    values=[float(i)] * 100,
                )
            ],
            params={f"p{i}": i},
        )
    client.close()
    server.kill()

    restarted = start_server(tmp_path, server.store_uri)
    client = TracklineClient(restarted.address, retry_seconds=5)
    got = client.get_run(run.run_id)
    assert len(got.params) == 50
    assert len(list(client.get_metric_history(run.run_id, "loss"))) == 5000
    client.close()
