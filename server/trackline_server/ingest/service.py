"""IngestService.StreamMetrics: validates numbered batches, queues them on the group-commit
writer and answers with acks in sequence order, each sent only after its batch committed."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

import grpc
from trackline.v1 import ingest_pb2 as ipb
from trackline.v1 import ingest_pb2_grpc

from .. import store
from ..errors import InvalidArgument, TracklineError, Unavailable, grpc_status
from . import segments
from .writer import GroupCommitWriter, Rejection, StreamBatch

_MAX_WRITER_ID = 128


def encode_batch(writer_id: str, request: ipb.StreamMetricsRequest) -> StreamBatch:
    """Checks a batch and converts its points to columns; a bad batch comes back refused
    (its refusal is stored with the writer's mark like any other)."""
    try:
        segs = segments.from_request(request, store.now_ms())
    except TracklineError as err:
        return StreamBatch(writer_id, request.seq, segments.empty(),
                           refused=Rejection(err.reason, err.message))  # fmt: skip
    return StreamBatch(writer_id, request.seq, segs)


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):  # type: ignore[misc]
    def __init__(self, writer: GroupCommitWriter) -> None:
        self.writer = writer
        self._closing = asyncio.Event()

    def begin_shutdown(self) -> None:
        """Streams stop reading; what they queued is still committed and acked."""
        self._closing.set()

    async def StreamMetrics(
        self,
        request_iterator: AsyncIterator[ipb.StreamMetricsRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[ipb.StreamMetricsResponse]:
        try:
            first = await anext(aiter(request_iterator))
        except StopAsyncIteration:
            return
        writer_id = first.writer_id
        if not 1 <= len(writer_id) <= _MAX_WRITER_ID:
            await _abort(
                context,
                InvalidArgument(
                    "INVALID_WRITER_ID",
                    f"the first message must carry a writer_id of 1 to {_MAX_WRITER_ID} characters",
                    "writer_id",
                ),
            )
        high_water, refused = await self.writer.high_water(writer_id)
        hello = ipb.StreamMetricsResponse(acked_seq=high_water)
        for old_seq, old in refused:
            hello.rejections.add(seq=old_seq, reason=old.reason, message=old.message)
        yield hello

        pending: collections.deque[tuple[int, asyncio.Future[Rejection | None]]] = (
            collections.deque()
        )
        wake = asyncio.Event()
        reader = asyncio.create_task(
            self._read(writer_id, first, request_iterator, pending, wake, high_water)
        )
        acked = high_water
        try:
            while True:
                if not pending:
                    if reader.done():
                        break
                    wake.clear()
                    await _either(wake, self._closing)
                    if self._closing.is_set() and not reader.done():
                        reader.cancel()  # a batch it had not queued yet is resent later
                        await asyncio.wait([reader])
                    continue
                seq, fut = pending[0]
                try:
                    await fut
                except TracklineError as err:  # the flush failed: nothing of it is acked
                    await _abort(context, err)
                response = ipb.StreamMetricsResponse()
                while pending and pending[0][1].done():
                    seq, fut = pending.popleft()
                    rejection = fut.result()
                    if rejection is not None:
                        response.rejections.add(
                            seq=seq, reason=rejection.reason, message=rejection.message
                        )
                    acked = max(acked, seq)
                response.acked_seq = acked
                yield response
            error = None if reader.cancelled() else reader.exception()
            if isinstance(error, TracklineError):
                await _abort(context, error)
            elif error is not None:
                raise error
            if self._closing.is_set():
                await _abort(
                    context,
                    Unavailable("SHUTTING_DOWN", "the server is shutting down; reconnect"),
                )
        finally:
            reader.cancel()

    async def _read(
        self,
        writer_id: str,
        first: ipb.StreamMetricsRequest,
        requests: AsyncIterator[ipb.StreamMetricsRequest],
        pending: collections.deque[tuple[int, asyncio.Future[Rejection | None]]],
        wake: asyncio.Event,
        high_water: int,
    ) -> None:
        last_seq = 0

        async def take(request: ipb.StreamMetricsRequest) -> None:
            nonlocal last_seq
            if request.writer_id and request.writer_id != writer_id:
                raise InvalidArgument(
                    "WRITER_ID_CHANGED", "a stream cannot change its writer_id", "writer_id"
                )
            if request.seq == 0:
                if request.series:
                    raise InvalidArgument(
                        "INVALID_SEQ", "a batch with points needs a seq of 1 or more", "seq"
                    )
                return
            if request.seq <= last_seq:
                raise InvalidArgument(
                    "INVALID_SEQ",
                    f"seq {request.seq} is not above the stream's previous seq {last_seq}",
                    "seq",
                )
            last_seq = request.seq
            loop = asyncio.get_running_loop()
            if request.seq <= high_water:
                done: asyncio.Future[Rejection | None] = loop.create_future()
                done.set_result(None)  # committed before this stream began
                pending.append((request.seq, done))
            else:
                batch = encode_batch(writer_id, request)
                await self.writer.put_batch(batch)  # waits while the queue is full
                pending.append((request.seq, batch.done))
            wake.set()

        try:
            await take(first)
            async for request in requests:
                if self._closing.is_set():
                    break
                await take(request)
        finally:
            wake.set()


async def _abort(context: grpc.aio.ServicerContext, err: TracklineError) -> None:
    await context.abort_with_status(grpc_status(err))


async def _either(a: asyncio.Event, b: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
