"""A budget for request bytes in flight, and the interceptor that parses requests under it.

gRPC hands a servicer a parsed message, and a parsed message costs several times its wire
size (8 concurrent 120 MB LogBatch calls took the server from 92 MB to 2.5 GB, every one of
them refused as too large once parsed). The interceptor takes the raw bytes instead and
parses them itself, inside the budget: a unary call that does not fit is refused at once
with RESOURCE_EXHAUSTED (reason SERVER_BUSY) and a RetryInfo delay, before it is parsed; a
stream message waits for room (streams already wait on the ingest queue). A message larger
than the whole budget is let in alone, or it could never enter; small messages always enter,
so small calls go on beside huge ones. When large requests are done, glibc is asked to hand
the freed memory back to the system (``malloc_trim``), so the process shrinks after a burst.

Parsing here also answers a request that is not a valid message (invalid UTF-8 in a string
field, a message cut short) with INVALID_ARGUMENT, reason MALFORMED_REQUEST, instead of
gRPC's UNKNOWN carrying the parser's text."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from .errors import InvalidArgument, ResourceExhausted, TracklineError
from .transport.grpc_server import abort

SMALL_MESSAGE_BYTES = 64 * 1024  # always admitted (still counted)
RETRY_AFTER_S = 1.0
TRIM_AFTER_BYTES = 16 * 1024 * 1024  # released since the last trim before another is worth it
TRIM_DELAY_S = 0.5  # lets a finished call's response go out and its buffers be freed first
TRIM_INTERVAL_S = 2.0  # at most one trim this often


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


M_ARENA_MAX = -8  # glibc's mallopt parameter
MALLOC_ARENAS = 2


def limit_malloc_arenas() -> None:
    """Caps glibc's malloc arenas at MALLOC_ARENAS, before the server starts its threads.
    By default each thread that allocates may get an arena of its own (up to eight per
    core), and a large block freed in one arena is not reused by another thread: with 4 MiB
    artifact chunks allocated on the artifact pool's threads and gRPC's, a 2 GB transfer
    grew the server's peak RSS by ~90 MB, against ~25 MB with two arenas. Python holds the
    GIL for most allocations, so the threads hardly contend for the arenas' locks. A no-op
    where the C library has no ``mallopt`` (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):
        return


class Budget:
    """Bytes of requests being parsed and served, at most ``max_bytes`` but for the
    exceptions in the module's docstring. Used from the event loop only."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._freed = asyncio.Event()
        self._released = 0
        self._trim = _load_malloc_trim()
        self._trim_pending = False
        self._last_trim = 0.0
        self._last_release = 0.0

    def fits(self, nbytes: int) -> bool:
        return (
            nbytes <= SMALL_MESSAGE_BYTES or self.used == 0 or self.used + nbytes <= self.max_bytes
        )

    def try_take(self, nbytes: int) -> bool:
        """Takes ``nbytes`` if they fit now."""
        if not self.fits(nbytes):
            return False
        self.used += nbytes
        return True

    async def take(self, nbytes: int) -> None:
        """Takes ``nbytes``, waiting until they fit."""
        while True:
            self._freed.clear()
            if self.try_take(nbytes):
                return
            await self._freed.wait()

    def give_back(self, nbytes: int) -> None:
        self.used -= nbytes
        self._freed.set()
        if nbytes > SMALL_MESSAGE_BYTES:
            self._released += nbytes
            self._last_release = time.monotonic()
            self._schedule_trim()

    def _schedule_trim(self) -> None:
        if self._trim is None or self._trim_pending or self._released < TRIM_AFTER_BYTES:
            return
        self._trim_pending = True
        wait = max(TRIM_DELAY_S, self._last_trim + TRIM_INTERVAL_S - time.monotonic())
        asyncio.get_running_loop().call_later(wait, self._start_trim)

    def _start_trim(self) -> None:
        """Collects garbage, then trims in a thread (ctypes lets go of the GIL; a trim of a
        large heap takes tens of milliseconds that the event loop should not wait for).

        The collection comes first because a failed call's exception, traceback and frames
        form a cycle that holds the parsed request: with the server's collector tuned for
        streaming (app.py), 8 refused 120 MB calls left 1.7 GB waiting for a collection that
        would come only after many more allocations. Objects frozen at start-up are not
        walked, so it costs a few milliseconds."""
        assert self._trim is not None
        now = time.monotonic()
        # A call gives its bytes back before gRPC has sent its status; what it leaves is
        # garbage only then. After a recent release another round follows (``_trimmed``).
        if self._last_release < now - TRIM_DELAY_S:
            self._released = 0
        self._last_trim = now
        gc.collect()
        done = asyncio.get_running_loop().run_in_executor(None, self._trim, 0)
        done.add_done_callback(self._trimmed)

    def _trimmed(self, done: asyncio.Future[int]) -> None:
        self._trim_pending = False
        done.result()
        self._schedule_trim()  # what was released while it ran


class BudgetInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Parses the requests of methods under ``prefix`` inside ``budget`` (the module's
    docstring). Put it after the authentication interceptor: a call refused there is never
    parsed and takes no budget."""

    def __init__(self, budget: Budget, prefix: str = "/trackline.") -> None:
        self.budget = budget
        self.prefix = prefix

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(self.prefix):
            return handler
        return _budgeted(handler, self.budget)


def _parser(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    """``deserializer`` with a parse failure raised as MALFORMED_REQUEST."""
    if deserializer is None:
        return lambda raw: raw
    message_type = getattr(deserializer, "__self__", None)
    name = getattr(getattr(message_type, "DESCRIPTOR", None), "full_name", "message")

    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError as exc:
            why = (
                "a string field is not valid UTF-8"
                if "UTF-8" in str(exc)
                else "it cannot be parsed (cut short, or a message of another type)"
            )
            raise InvalidArgument(
                "MALFORMED_REQUEST", f"the request is not a valid {name}: {why}"
            ) from None

    return parse


def _busy() -> ResourceExhausted:
    return ResourceExhausted(
        "SERVER_BUSY",
        "the server is already parsing and serving as many request bytes as it allows"
        " (--max-inflight-bytes); retry after the suggested delay",
        retry_after=RETRY_AFTER_S,
    )


def _budgeted(handler: grpc.RpcMethodHandler, budget: Budget) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that receives raw bytes and parses them
    inside ``budget``."""
    parse = _parser(handler.request_deserializer)
    ser = handler.response_serializer

    async def admitted(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        if not budget.try_take(len(raw)):
            await abort(context, _busy())
        try:
            return parse(raw)
        except TracklineError as err:
            budget.give_back(len(raw))
            await abort(context, err)

    if not handler.request_streaming:
        if not handler.response_streaming:
            call = handler.unary_unary

            async def unary_unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
                request = await admitted(raw, context)
                try:
                    return await call(request, context)
                finally:
                    budget.give_back(len(raw))

            return grpc.unary_unary_rpc_method_handler(unary_unary, None, ser)
        stream = handler.unary_stream

        async def unary_stream(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            request = await admitted(raw, context)
            try:
                async for response in _responses(stream(request, context)):
                    yield response
            finally:
                budget.give_back(len(raw))

        return grpc.unary_stream_rpc_method_handler(unary_stream, None, ser)

    async def requests(
        raws: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        """Each message parsed once it fits; its bytes count until the servicer asks for the
        next one (it has handed this one on by then). A malformed one ends the call."""
        async for raw in raws:
            await budget.take(len(raw))
            size = len(raw)
            try:
                try:
                    request = parse(raw)
                except TracklineError as err:
                    await abort(context, err)
                del raw  # parsed: only the request is needed now
                yield request
            finally:
                budget.give_back(size)
            del request  # not held while the next message arrives (4 MiB artifact chunks)

    if not handler.response_streaming:
        gather = handler.stream_unary

        async def stream_unary(raws: AsyncIterator[bytes], ctx: grpc.aio.ServicerContext) -> Any:
            return await gather(requests(raws, ctx), ctx)

        return grpc.stream_unary_rpc_method_handler(stream_unary, None, ser)
    both = handler.stream_stream

    async def stream_stream(raws: AsyncIterator[bytes], ctx: grpc.aio.ServicerContext) -> Any:
        async for response in _responses(both(requests(raws, ctx), ctx)):
            yield response

    return grpc.stream_stream_rpc_method_handler(stream_stream, None, ser)


async def _responses(result: Any) -> AsyncIterator[Any]:
    """The responses of a response-streaming behaviour: an async generator's items, or none
    when it writes them itself (``context.write``) and returns a coroutine."""
    if inspect.isasyncgen(result):
        async for response in result:
            yield response
    else:
        await result
