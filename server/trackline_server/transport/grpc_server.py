"""Serves a domain's transport-agnostic service over grpc.aio: the one edge every RPC passes.

For each method of the proto service, the service object has a method of the same name in
snake_case (``CreateRun`` -> ``create_run``) that takes the request message (or, for a
client stream, an async iterator of them) and a ``Call``, and returns the response (or, for a
server stream, an async iterator of them). The edge:

- checks the request of a scoped token against its scope (``RequestGuard``: the table of
  ``auth/permissions.py``), and for a client stream every message, before the service sees it;
- opens the unit of work the method declares (``call.py``: ``@reads``, ``@writes``,
  ``@own_transactions``) and hands its connection in through ``call.conn``; one per RPC;
- runs a unary call to its end even when the client goes away (``shield.shielded``): grpc.aio
  cancels the call's task then, and a cancellation inside a SQLite statement left the
  connection holding the write lock, so every later write waited out the busy timeout;
- ends the call with the status of whatever the method raised (``errors.from_exception``: a
  domain error with its ErrorInfo and BadRequest details, a known store failure as its
  reason, anything else INTERNAL with an error id that the log carries beside the traceback).

A service that lacks a method, or a method that declares no unit of work, fails at start-up
(``TypeError``), not at the first call.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from sqlalchemy.ext.asyncio import AsyncConnection

from ..auth import principal as principals
from ..auth.principal import Principal
from ..database import Database
from ..errors import TracklineError, from_exception, grpc_status
from ..shield import shielded
from ..snapshot import Snapshot
from .call import Call, UnitOfWork, unit_of_work


class RequestGuard(Protocol):
    """Checks a call's principal against its requests (``auth.permissions.AccessGuard``)."""

    async def check(self, method: str, request: Any, principal: Principal) -> None:
        """Raises PERMISSION_DENIED when ``request`` of ``method`` reaches out of the scope
        of a scoped ``principal``."""
        ...

    async def recheck(self, principal: Principal) -> None:
        """Raises UNAUTHENTICATED when the principal's token was revoked or expired since
        the call began (each message of a client stream is checked)."""
        ...


def add_service(
    server: grpc.aio.Server,
    service: object,
    descriptor: ServiceDescriptor,
    db: Database,
    guard: RequestGuard,
) -> None:
    """Serves ``service`` as the proto service ``descriptor`` on ``server``."""
    handlers = method_handlers(service, descriptor, db, guard)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(descriptor.full_name, handlers),)
    )
    server.add_registered_method_handlers(descriptor.full_name, handlers)


def method_name(rpc: str) -> str:
    """The name of the service method for ``rpc``: GetMetricHistory -> get_metric_history."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", rpc).lower()


def method_handlers(
    service: object, descriptor: ServiceDescriptor, db: Database, guard: RequestGuard
) -> dict[str, grpc.RpcMethodHandler]:
    """One grpc handler per method of ``descriptor``, each over the service's method."""
    handlers = {}
    for method in descriptor.methods:
        impl = getattr(service, method_name(method.name), None)
        if impl is None:
            raise TypeError(f"{type(service).__name__} lacks {method_name(method.name)}()")
        kind = unit_of_work(impl)
        if kind is None:
            raise TypeError(
                f"{type(service).__name__}.{method_name(method.name)} declares no unit of work"
                " (@reads, @writes or @own_transactions)"
            )
        streaming = method.client_streaming or method.server_streaming
        if streaming and kind is not UnitOfWork.NONE:
            raise TypeError(
                f"{method.full_name} streams: it cannot hold one transaction (@own_transactions)"
            )
        handlers[method.name] = _handler(method, impl, kind, db, guard)
    return handlers


def _handler(
    method: MethodDescriptor, impl: Any, kind: UnitOfWork, db: Database, guard: RequestGuard
) -> grpc.RpcMethodHandler:
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    des, ser = request_cls.FromString, response_cls.SerializeToString
    path = f"/{method.containing_service.full_name}/{method.name}"
    name = method.name

    async def checked(requests: AsyncIterator[Any], who: Principal) -> AsyncIterator[Any]:
        async for request in requests:
            await guard.recheck(who)
            if who.scoped:
                await guard.check(path, request, who)
            yield request

    def admitted(requests: AsyncIterator[Any]) -> tuple[AsyncIterator[Any], Principal]:
        """A client stream's messages, each checked while the call has a token: a stream
        outlives neither its token nor its scope."""
        who = principals.current.get()
        return (checked(requests, who) if who.authenticated else requests), who

    if method.client_streaming and method.server_streaming:

        async def stream_stream(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            requests, who = admitted(requests)
            responses = impl(requests, _call(path, context, who))
            async for response in _streamed(responses, context, name):
                yield response

        return grpc.stream_stream_rpc_method_handler(stream_stream, des, ser)
    if method.server_streaming:

        async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            async for response in _streamed(opened(request, context), context, name):
                yield response

        async def opened(request: Any, context: Any) -> AsyncIterator[Any]:
            """The responses, none sent once the call's token was revoked or expired (a
            watch or a log that follows outlives no token)."""
            who = principals.current.get()
            if who.scoped:
                await guard.check(path, request, who)
            async for response in impl(request, _call(path, context, who)):
                if who.authenticated:
                    await guard.recheck(who)
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, des, ser)

    async def run(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if method.client_streaming:
            request, who = admitted(request)
        else:
            who = principals.current.get()
            if who.scoped:
                await guard.check(path, request, who)
        if kind is UnitOfWork.WRITE:
            async with db.write() as conn:
                return await impl(request, _call(path, context, who, connection=conn))
        if kind is UnitOfWork.READ:
            async with db.snapshot() as snap:
                return await impl(request, _call(path, context, who, snapshot=snap))
        return await impl(request, _call(path, context, who))

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await shielded(run(request, context))
        except Exception as exc:
            status = grpc_status(from_exception(exc, name))
        # Aborted outside the handler: gRPC's AbortError would otherwise chain the exception,
        # whose traceback holds the request, into a cycle only a full collection frees.
        await context.abort_with_status(status)
        raise AssertionError("unreachable")

    if method.client_streaming:
        return grpc.stream_unary_rpc_method_handler(unary, des, ser)
    return grpc.unary_unary_rpc_method_handler(unary, des, ser)


async def _streamed(
    responses: AsyncIterator[Any], context: grpc.aio.ServicerContext, name: str
) -> AsyncIterator[Any]:
    """``responses``, ending the call with the status of what the stream raises."""
    try:
        async for response in responses:
            yield response
    except grpc.aio.AbortError:
        raise
    except Exception as exc:
        await context.abort_with_status(grpc_status(from_exception(exc, name)))


def _call(
    path: str,
    context: grpc.aio.ServicerContext,
    principal: Principal,
    connection: AsyncConnection | None = None,
    snapshot: Snapshot | None = None,
) -> Call:
    left = context.time_remaining()
    return Call(
        path,
        deadline=None if left is None else time.monotonic() + left,
        connection=connection,
        snapshot=snapshot,
        principal=principal,
    )


def failing(handler: grpc.RpcMethodHandler, error: TracklineError) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that fails every call with ``error`` (what
    an interceptor returns for a call it refuses before any service sees it)."""
    status = grpc_status(error)

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort_with_status(status)

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort_with_status(status)
        yield  # never reached; makes this an async generator, as streaming responses need

    des, ser = handler.request_deserializer, handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming, des, ser)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(unary, des, ser)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(streaming, des, ser)
    return grpc.unary_unary_rpc_method_handler(unary, des, ser)


async def abort(context: grpc.aio.ServicerContext, error: TracklineError) -> None:
    """Ends the call with ``error``'s status (for interceptors that refuse a call midway)."""
    await context.abort_with_status(grpc_status(error))
