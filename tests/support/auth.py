"""Servers with tokens, tokens of each kind, and calls of any RPC with any token: for the
tests of who gets in where."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor
from trackline import TracklineClient
from trackline._exceptions import from_rpc_error
from trackline_server.app import SERVICES

from .servers import ServerProcess, start_server

BOOTSTRAP = "bootstrap-admin-secret"


def start_secured(
    tmp: Path, store_uri: str | None = None, extra_args: Sequence[str] = ()
) -> ServerProcess:
    """A server whose only configured token is the bootstrap admin ``BOOTSTRAP``."""
    return start_server(tmp, store_uri, extra_args=["--auth-token", BOOTSTRAP, *extra_args])


def token(
    admin: TracklineClient,
    name: str,
    role: str,
    *,
    experiments: Sequence[str] = (),
    models: Sequence[str] = (),
    expires_in: float | None = None,
) -> str:
    """The secret of a new token made by ``admin``."""
    made = admin.create_token(
        name, role, experiments=tuple(experiments), models=tuple(models), expires_in=expires_in
    )
    return made.secret


def expired_token(admin: TracklineClient, name: str) -> str:
    """A writer token that has expired (made to last one second, then outlived)."""
    secret = token(admin, name, "writer", expires_in=1)
    time.sleep(1.1)
    return secret


def revoked_token(admin: TracklineClient, name: str) -> str:
    """An admin token that has been revoked."""
    secret = token(admin, name, "admin")
    admin.revoke_token(name)
    return secret


def every_rpc() -> Iterator[MethodDescriptor]:
    """Every RPC of Trackline's own services (those the server serves)."""
    for name in SERVICES:
        yield from descriptor_pool.Default().FindServiceByName(name).methods


def path_of(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


@dataclass(frozen=True)
class Outcome:
    """How a call ended: its status code, the ErrorInfo reason ("" for none) and message."""

    code: grpc.StatusCode
    reason: str = ""
    message: str = ""

    @property
    def refused(self) -> bool:
        """Refused by authentication or permissions (not by the service's own checks)."""
        return self.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def call(
    channel: grpc.Channel, method: MethodDescriptor, secret: str | None, timeout: float = 3.0
) -> Outcome:
    """Calls ``method`` with an empty request (for a client stream, one empty message; of a
    server stream, the first response is read) carrying ``secret`` as its bearer token. A
    stream that is admitted and waits for more (a watch) ends at ``timeout``: DEADLINE_EXCEEDED."""
    request = message_factory.GetMessageClass(method.input_type)()
    response_cls = message_factory.GetMessageClass(method.output_type)
    path = path_of(method)
    ser, des = type(request).SerializeToString, response_cls.FromString
    metadata = [("authorization", f"Bearer {secret}")] if secret is not None else []
    try:
        if method.client_streaming and method.server_streaming:
            responses = channel.stream_stream(path, ser, des)(
                iter([request]), metadata=metadata, timeout=timeout
            )
            next(iter(responses), None)
        elif method.client_streaming:
            channel.stream_unary(path, ser, des)(
                iter([request]), metadata=metadata, timeout=timeout
            )
        elif method.server_streaming:
            responses = channel.unary_stream(path, ser, des)(
                request, metadata=metadata, timeout=timeout
            )
            next(iter(responses), None)
            responses.cancel()
        else:
            channel.unary_unary(path, ser, des)(request, metadata=metadata, timeout=timeout)
    except grpc.RpcError as err:
        return Outcome(err.code(), from_rpc_error(err).reason or "", err.details() or "")
    return Outcome(grpc.StatusCode.OK)
