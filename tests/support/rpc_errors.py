"""What grpc raises for a failed call, made from a server error without a server: for tests
of how the client reads statuses."""

from __future__ import annotations

from typing import Any

import grpc
from trackline_server import errors


class FailedCall(grpc.RpcError):
    """What grpc raises for a failed call: its code, details and trailers."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers: Any = ()) -> None:
        self._code, self._details, self._trailers = code, details, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._trailers


def failed(err: errors.TracklineError) -> FailedCall:
    """The RpcError a client gets when the server raises ``err``."""
    status = errors.grpc_status(err)
    return FailedCall(status.code, status.details, status.trailing_metadata)
