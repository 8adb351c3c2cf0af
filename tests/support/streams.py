"""One IngestService.StreamMetrics call driven step by step from a test.

Every stream opened is remembered until ``close_open_streams`` closes it (the test session's
autouse fixture calls that after each test): a stream a failed test left open would keep a
gRPC call in progress, and every later fork in the process would skip gRPC's fork handlers."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import grpc
from trackline.v1 import ingest_pb2 as ipb
from trackline.v1 import ingest_pb2_grpc

from tests.support.points import block

KEY = b"k" * 32  # the writer key of tests whose writers each have a database of their own


class Stream:
    """A stream that has shaken hands as ``writer_id``: ``handshake`` is the server's first
    answer; the constructor raises the stream's error when the server refuses it."""

    def __init__(
        self,
        address: str,
        writer_id: str,
        key: bytes = KEY,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,  # TLS; None: plaintext
    ) -> None:
        self.channel = (
            grpc.secure_channel(address, credentials)
            if credentials is not None
            else grpc.insecure_channel(address)
        )
        _open.append(self)
        self.requests: queue.Queue[ipb.StreamMetricsRequest | None] = queue.Queue()
        metadata = [("authorization", f"Bearer {token}")] if token else None
        self.responses = ingest_pb2_grpc.IngestServiceStub(self.channel).StreamMetrics(
            self._iter(), timeout=120, metadata=metadata
        )
        self.send(ipb.StreamMetricsRequest(writer_id=writer_id, writer_key=key))
        self.handshake = next(self.responses)

    def _iter(self) -> Iterator[ipb.StreamMetricsRequest]:
        while (item := self.requests.get()) is not None:
            yield item

    def send(self, request: ipb.StreamMetricsRequest) -> None:
        self.requests.put(request)

    def batch(self, seq: int, run_id: str, key: str, steps: list[int], rank: int = 0) -> None:
        """Sends batch ``seq``: one series with a point at each of ``steps``, each valued its
        step, at timestamp 1."""
        values = [float(s) for s in steps]
        series = (run_id, key, rank, steps, [1] * len(steps), values)
        self.send(ipb.StreamMetricsRequest(seq=seq, block=block(series)))

    def until(self, seq: int) -> list[ipb.StreamMetricsResponse]:
        """Responses up to the one that acks ``seq``."""
        got = []
        for resp in self.responses:
            got.append(resp)
            if resp.acked_seq >= seq:
                return got
        raise AssertionError(f"stream ended before seq {seq} was acked")

    def close(self) -> None:
        """Ends the stream; safe to call more than once."""
        self.requests.put(None)
        self.channel.close()
        if self in _open:
            _open.remove(self)


_open: list[Stream] = []


def close_open_streams() -> None:
    while _open:
        _open[-1].close()
