"""Writing and reading metric histories in tests: LogBatch and stream writes that land as
chunks, and GetMetricHistory reads as (step, timestamp, value, rank) points."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import grpc
from trackline import TracklineClient
from trackline.v1 import ingest_pb2 as ipb
from trackline.v1 import ingest_pb2_grpc
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb

from .points import Series, block
from .servers import ServerProcess

Point = tuple[int, int, float, int]  # step, timestamp, value, rank


def log(
    client: TracklineClient,
    run_id: str,
    key: str,
    steps: Sequence[int],
    values: Sequence[float],
    stamps: Sequence[int] | None = None,
) -> None:
    """One LogBatch call, then a read of the series, which moves what is still in the metric
    log into chunks (a short series waits there): one chunk of rank 0 per call."""
    series = pb.MetricSeries(
        key=key, steps=steps, timestamps=stamps or [1] * len(steps), values=values
    )
    client.log_batch(run_id, metrics=[series])
    req = tpb.GetMetricHistoryRequest(run_id=run_id, key=key, page_size=1)
    client.calls.GetMetricHistory(req)


def stream(server: ServerProcess, series: Sequence[Series]) -> None:
    """Writes ranked series through IngestService.StreamMetrics and waits for the ack."""
    channel = grpc.insecure_channel(server.address)
    try:
        requests = iter(
            [
                ipb.StreamMetricsRequest(
                    writer_id=f"w-{uuid.uuid4().hex}", writer_key=uuid.uuid4().bytes, seq=0
                ),
                ipb.StreamMetricsRequest(seq=1, block=block(*series)),
            ]
        )
        responses = ingest_pb2_grpc.IngestServiceStub(channel).StreamMetrics(requests, timeout=60)
        for resp in responses:
            assert not resp.rejections, resp.rejections
            if resp.acked_seq >= 1:
                break
        else:
            raise AssertionError("the stream ended before seq 1 was acked")
    finally:
        channel.close()


def ranked(
    run_id: str, key: str, rank: int, steps: Sequence[int], values: Sequence[float], stamp: int = 1
) -> Series:
    return run_id, key, rank, steps, [stamp] * len(steps), values


def read_pages(
    client: TracklineClient, run_id: str, key: str, page_size: int = 0, **fields: int
) -> list[Point]:
    """Every page of a GetMetricHistory read, checking each page's size."""
    req = tpb.GetMetricHistoryRequest(run_id=run_id, key=key, page_size=page_size, **fields)
    points: list[Point] = []
    for _ in range(100_000):
        resp = client.calls.GetMetricHistory(req)
        s = resp.series
        assert len(s.steps) == len(s.timestamps) == len(s.values) == len(resp.ranks)
        if page_size:
            assert len(s.values) <= page_size
        points += zip(s.steps, s.timestamps, s.values, resp.ranks, strict=True)
        if not resp.next_page_token:
            return points
        req.page_token = resp.next_page_token
    raise AssertionError("paging did not end")


def view(
    client: TracklineClient, run_id: str, key: str, max_points: int, **fields: int
) -> list[Point]:
    req = tpb.GetMetricHistoryRequest(run_id=run_id, key=key, max_points=max_points, **fields)
    resp = client.calls.GetMetricHistory(req)
    assert resp.next_page_token == ""
    s = resp.series
    return list(zip(s.steps, s.timestamps, s.values, resp.ranks, strict=True))


def is_sorted(points: Sequence[Point]) -> bool:
    return all(a[:2] <= b[:2] for a, b in zip(points, points[1:], strict=False))
