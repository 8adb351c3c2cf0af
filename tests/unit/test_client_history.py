"""``TracklineClient.get_metric_history`` reads ahead, against an in-process stand-in server
that records every page it is asked for: the next page is requested while the caller is still
on the current one, a caller that stops early cancels the page asked for ahead and asks for
no more, and a read-ahead that failed is retried. Points come as ``MetricPoint``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from trackline import MetricPoint, TracklineClient
from trackline._transport import Prefetch
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb
from trackline.v1 import tracking_pb2_grpc

PAGES, PAGE_POINTS = 6, 10


class _Pages(tracking_pb2_grpc.TrackingServiceServicer):
    """Serves PAGES pages of PAGE_POINTS points (page token = page number). A page listed in
    ``held`` is answered only when ``release`` is set, and ``ended`` records the calls that
    ended unanswered (the client cancelled them); a page in ``fail_once`` answers
    UNAVAILABLE the first time."""

    def __init__(self) -> None:
        self.asked: list[int] = []
        self.held: set[int] = set()
        self.fail_once: set[int] = set()
        self.release = threading.Event()
        self.ended: list[int] = []
        self._lock = threading.Condition()

    def GetMetricHistory(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        page = int(request.page_token or 0)
        with self._lock:
            self.asked.append(page)
            self._lock.notify_all()
        if page in self.fail_once:
            self.fail_once.discard(page)
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        if page in self.held:
            while not self.release.wait(0.01):
                if not context.is_active():
                    with self._lock:
                        self.ended.append(page)
                        self._lock.notify_all()
                    return tpb.GetMetricHistoryResponse()
        first = page * PAGE_POINTS
        steps = list(range(first, first + PAGE_POINTS))
        series = pb.MetricSeries(
            key="k", steps=steps, timestamps=steps, values=[s / 2 for s in steps]
        )
        token = str(page + 1) if page + 1 < PAGES else ""
        return tpb.GetMetricHistoryResponse(series=series, next_page_token=token)

    def wait_for(self, done: Callable[[], bool]) -> bool:
        with self._lock:
            return self._lock.wait_for(done, timeout=10)


@pytest.fixture
def pages() -> Iterator[tuple[_Pages, TracklineClient]]:
    servicer = _Pages()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    tracking_pb2_grpc.add_TrackingServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = TracklineClient(f"127.0.0.1:{port}", retry_seconds=10)
    yield servicer, client
    servicer.release.set()
    client.close()
    server.stop(None)


def test_the_next_page_is_asked_for_before_the_caller_needs_it(
    pages: tuple[_Pages, TracklineClient],
) -> None:
    servicer, client = pages
    points = client.get_metric_history("r", "k")
    assert next(points) == MetricPoint(0, 0, 0.0)
    # The caller is on the first point of page 0: page 1 is on its way, page 2 is not.
    assert servicer.wait_for(lambda: servicer.asked == [0, 1])
    for _ in range(PAGE_POINTS - 1):
        next(points)
    assert servicer.asked == [0, 1]
    point = next(points)  # page 1's first point: page 2 is asked for now
    assert point == MetricPoint(10, 10, 5.0) and point.value == 5.0
    assert servicer.wait_for(lambda: servicer.asked == [0, 1, 2])
    rest = list(points)
    assert [p.step for p in rest] == list(range(11, PAGES * PAGE_POINTS))
    assert servicer.asked == list(range(PAGES))


def test_a_caller_that_stops_cancels_the_page_ahead_and_asks_for_no_more(
    pages: tuple[_Pages, TracklineClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    servicer, client = pages
    servicer.held = {2}
    # Keep every read-ahead alive, so that only the client's own cancel can end it (gRPC
    # also cancels a call whose last reference goes).
    ahead: list[Prefetch[Any]] = []
    call = client.calls.GetMetricHistory
    prefetch = call.prefetch

    def kept(*args: Any, **kwargs: Any) -> Prefetch[Any]:
        ahead.append(prefetch(*args, **kwargs))
        return ahead[-1]

    monkeypatch.setattr(call, "prefetch", kept)
    points = client.get_metric_history("r", "k")
    got = [next(points) for _ in range(PAGE_POINTS + 3)]  # into page 1: page 2 is asked for
    assert [p.step for p in got] == list(range(PAGE_POINTS + 3))
    assert servicer.wait_for(lambda: servicer.asked == [0, 1, 2])
    points.close()  # the caller stops
    assert servicer.wait_for(lambda: servicer.ended == [2])  # the read-ahead was cancelled
    assert len(ahead) == 2
    servicer.release.set()
    time.sleep(0.2)
    assert servicer.asked == [0, 1, 2]  # and nothing after it


def test_a_read_ahead_that_failed_is_retried(pages: tuple[_Pages, TracklineClient]) -> None:
    servicer, client = pages
    servicer.fail_once = {3}
    steps, stamps, values = zip(*client.get_metric_history("r", "k"), strict=True)
    assert steps == stamps == tuple(range(PAGES * PAGE_POINTS))
    assert values == tuple(s / 2 for s in steps)
    assert servicer.asked == [0, 1, 2, 3, 3, 4, 5]
