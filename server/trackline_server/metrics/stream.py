"""IngestService.StreamMetrics: validates numbered batches, queues them on the group-commit
writer and answers with acks in sequence order, each sent only after its batch committed.

A stream opens with a handshake that takes its writer over (``GroupCommitWriter.handshake``:
the writer's key, and owner when tokens are on, must match). One stream holds a writer at a
time: a newer handshake for the same writer ends the older stream here at once (and, on other
replicas, its flushes refuse the older stream's batches by their epoch). Seqs are checked
before a batch is queued, so none that cannot be stored reaches a flush.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from trackline.v1 import ingest_pb2 as ipb

from .. import limits
from ..clock import now_ms
from ..errors import InvalidArgument, TracklineError, Unavailable
from ..transport import Call, own_transactions
from . import blocks, segments
from .segments import Segments
from .settle import fenced
from .writer import GroupCommitWriter, Handshake, Rejection, StreamBatch

_MAX_WRITER_ID = 128
_WRITER_KEY_BYTES = (16, 64)
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f]")
# A batch with more series or points than this is checked and converted in a worker thread:
# a 100,000-series message takes the best part of a second of Python work, which on the event
# loop would hold up every other call (health checks included).
_CONVERT_IN_THREAD_SERIES = 2_000
_CONVERT_IN_THREAD_POINTS = 500_000


def _convert(request: ipb.StreamMetricsRequest) -> tuple[Segments, Rejection | None]:
    """A batch's points as columns, or its refusal."""
    try:
        return blocks.from_request(request, now_ms()), None
    except TracklineError as err:
        return segments.empty(), Rejection(err.reason, err.message)


async def encode_batch(
    writer_id: str, request: ipb.StreamMetricsRequest, epoch: int = 0
) -> StreamBatch:
    """Checks a batch and converts its points to columns; a bad batch comes back refused
    (its refusal is stored with the writer's mark like any other)."""
    block = request.block
    if (
        len(block.lengths) > _CONVERT_IN_THREAD_SERIES
        or len(block.values) > _CONVERT_IN_THREAD_POINTS
    ):
        segs, refused = await asyncio.to_thread(_convert, request)
    else:
        segs, refused = _convert(request)
    return StreamBatch(writer_id, request.seq, segs, refused=refused, epoch=epoch)


@dataclass(eq=False)
class _Holder:
    """The stream that holds a writer in this process."""

    epoch: int
    # Done once a newer stream of the writer took over: the stream then ends at once.
    fence: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class IngestService:
    """IngestService, served through the edge (``transport/grpc_server.py``)."""

    def __init__(self, writer: GroupCommitWriter) -> None:
        """A writer id made with a token belongs to that token (``Principal.key``): another
        token cannot take it over."""
        self.writer = writer
        self._closing = asyncio.Event()
        self._holders: dict[str, _Holder] = {}

    def begin_shutdown(self) -> None:
        """Streams stop reading; what they queued is still committed and acked."""
        self._closing.set()

    @own_transactions
    async def stream_metrics(
        self, request_iterator: AsyncIterator[ipb.StreamMetricsRequest], call: Call
    ) -> AsyncIterator[ipb.StreamMetricsResponse]:
        """The stream: a handshake, then acks as batches commit (the module's docstring)."""
        try:
            first = await anext(aiter(request_iterator))
        except StopAsyncIteration:
            return
        writer_id, key = first.writer_id, first.writer_key
        if not 1 <= len(writer_id) <= _MAX_WRITER_ID or _CONTROL_CHARS.search(writer_id):
            raise InvalidArgument(
                "INVALID_WRITER_ID",
                f"the first message must carry a writer_id of 1 to {_MAX_WRITER_ID} characters,"
                " without control characters",
                "writer_id",
            )
        low, high = _WRITER_KEY_BYTES
        if not low <= len(key) <= high:
            raise InvalidArgument(
                "INVALID_WRITER_KEY",
                f"the first message must carry a writer_key of {low} to {high} random bytes,"
                " the same for the writer's whole life",
                "writer_key",
            )
        owner = call.principal.key
        shake = await self.writer.handshake(writer_id, hashlib.sha256(key).hexdigest(), owner)
        holder = _Holder(shake.epoch)
        older = self._holders.get(writer_id)
        if older is not None and older.epoch > holder.epoch:
            raise fenced()  # a newer handshake of this writer finished first
        self._holders[writer_id] = holder
        if older is not None and not older.fence.done():
            older.fence.set_result(None)
        try:
            async for response in self._serve(writer_id, key, first, request_iterator, shake,
                                              holder):  # fmt: skip
                yield response
        finally:
            if self._holders.get(writer_id) is holder:
                del self._holders[writer_id]

    async def _serve(
        self,
        writer_id: str,
        key: bytes,
        first: ipb.StreamMetricsRequest,
        request_iterator: AsyncIterator[ipb.StreamMetricsRequest],
        shake: Handshake,
        holder: _Holder,
    ) -> AsyncIterator[ipb.StreamMetricsResponse]:
        hello = ipb.StreamMetricsResponse(acked_seq=shake.high_water)
        for old_seq, old in shake.rejections:
            hello.rejections.add(seq=old_seq, reason=old.reason, message=old.message)
        yield hello

        pending: collections.deque[tuple[int, asyncio.Future[Rejection | None]]] = (
            collections.deque()
        )
        wake = asyncio.Event()
        reader = asyncio.create_task(
            self._read(writer_id, key, first, request_iterator, pending, wake, shake.high_water,
                       holder.epoch)
        )  # fmt: skip
        acked = shake.high_water
        try:
            while True:
                if holder.fence.done():
                    raise fenced()  # what it queued and did not commit is refused by epoch
                if not pending:
                    if reader.done():
                        break
                    wake.clear()
                    await _any(holder.fence, wake, self._closing)
                    if self._closing.is_set() and not reader.done():
                        reader.cancel()  # a batch it had not queued yet is resent later
                        await asyncio.wait([reader])
                    continue
                seq, fut = pending[0]
                if not fut.done():
                    await _first_of(fut, holder.fence)
                    if not fut.done():
                        continue  # fenced meanwhile
                fut.result()  # the flush failed or fenced it: nothing of it is acked
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
            if error is not None:
                raise error
            if self._closing.is_set():
                raise Unavailable("SHUTTING_DOWN", "the server is shutting down; reconnect")
        finally:
            reader.cancel()

    async def _read(
        self,
        writer_id: str,
        key: bytes,
        first: ipb.StreamMetricsRequest,
        requests: AsyncIterator[ipb.StreamMetricsRequest],
        pending: collections.deque[tuple[int, asyncio.Future[Rejection | None]]],
        wake: asyncio.Event,
        high_water: int,
        epoch: int,
    ) -> None:
        last_seq = 0

        async def take(request: ipb.StreamMetricsRequest) -> None:
            nonlocal last_seq
            if request.writer_id and request.writer_id != writer_id:
                raise InvalidArgument(
                    "WRITER_ID_CHANGED", "a stream cannot change its writer_id", "writer_id"
                )
            if request.writer_key and request.writer_key != key:
                raise InvalidArgument(
                    "WRITER_KEY_CHANGED", "a stream cannot change its writer_key", "writer_key"
                )
            _check_seq(request, last_seq, high_water)
            if request.seq == 0:
                return
            last_seq = request.seq
            loop = asyncio.get_running_loop()
            if request.seq <= high_water:
                done: asyncio.Future[Rejection | None] = loop.create_future()
                done.set_result(None)  # committed before this stream began
                pending.append((request.seq, done))
            else:
                batch = await encode_batch(writer_id, request, epoch)
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


def _check_seq(request: ipb.StreamMetricsRequest, last_seq: int, high_water: int) -> None:
    """Refuses a seq the writer cannot have sent: one that does not fit int64, repeats or
    goes back on the stream, or skips ahead (a writer numbers its batches by one, and resends
    from the handshake's mark); and points without a seq."""
    seq = request.seq
    if seq == 0:
        if request.HasField("block"):
            raise InvalidArgument(
                "INVALID_SEQ", "a batch with points needs a seq of 1 or more", "seq"
            )
        return
    if seq > limits.MAX_STREAM_SEQ:
        raise InvalidArgument(
            "INVALID_SEQ", f"seq {seq} is above the largest allowed, 2^63 - 1", "seq"
        )
    if seq <= last_seq:
        raise InvalidArgument(
            "INVALID_SEQ", f"seq {seq} is not above the stream's previous seq {last_seq}", "seq"
        )
    if seq > max(high_water, last_seq) + 1:
        raise InvalidArgument(
            "INVALID_SEQ",
            f"seq {seq} skips ahead: the next batch of this writer is"
            f" {max(high_water, last_seq) + 1} (seqs go up by one from the handshake's"
            " acked_seq)",
            "seq",
        )


async def _first_of(a: asyncio.Future[Any], b: asyncio.Future[Any]) -> None:
    """Waits until ``a`` or ``b`` is done. Runs once per acknowledgement: one waiter and two
    callbacks, where ``asyncio.wait`` builds a set, a waiter and callbacks per call."""
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake(_: asyncio.Future[Any]) -> None:
        if not waiter.done():
            waiter.set_result(None)

    a.add_done_callback(wake)
    b.add_done_callback(wake)
    try:
        await waiter
    finally:
        a.remove_done_callback(wake)
        b.remove_done_callback(wake)


async def _any(fence: asyncio.Future[Any], *events: asyncio.Event) -> None:
    """Waits until ``fence`` is done or one of ``events`` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait([fence, *waits], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
