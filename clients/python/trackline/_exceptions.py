"""Typed exceptions raised by the client, carrying the server's ErrorInfo reason."""

from __future__ import annotations

import grpc

from . import _status


class TracklineError(Exception):
    """A failed call. ``reason`` is the server's UPPER_SNAKE ErrorInfo reason ("" if none);
    ``field_violations`` maps request field paths to what is wrong with them."""

    def __init__(
        self,
        message: str,
        code: grpc.StatusCode,
        reason: str = "",
        field_violations: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{reason or code.name}: {message}")
        self.message = message
        self.code = code
        self.reason = reason
        self.field_violations = field_violations or {}


class NotFound(TracklineError):
    pass


class AlreadyExists(TracklineError):
    pass


class InvalidArgument(TracklineError):
    pass


class FailedPrecondition(TracklineError):
    pass


class Unavailable(TracklineError):
    pass


class Unauthenticated(TracklineError):
    """The server wants a token (``TRACKLINE_TOKEN`` or ``token=``) and got none or a bad one."""


class PermissionDenied(TracklineError):
    pass


class ResourceExhausted(TracklineError):
    pass


class BatchRejected(TracklineError):
    """The server refused a batch of streamed metric points (``log_metric``): its points are
    not stored and are not retried. ``reason`` is e.g. RUN_NOT_FOUND, RUN_DELETED or
    INVALID_KEY; ``seq`` is the batch's sequence number (0 for a batch the client refused
    itself before sending), ``run_id`` its run and ``points`` how many points it held."""

    def __init__(
        self, seq: int, reason: str, message: str, *, run_id: str = "", points: int = 0
    ) -> None:
        code = (
            grpc.StatusCode.FAILED_PRECONDITION
            if reason.startswith("RUN_")
            else grpc.StatusCode.INVALID_ARGUMENT
        )
        super().__init__(message, code, reason)
        self.seq = seq
        self.run_id = run_id
        self.points = points


_BY_CODE: dict[grpc.StatusCode, type[TracklineError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
}


def from_rpc_error(err: grpc.RpcError) -> TracklineError:
    """Maps a grpc error (with optional rich status details) to the typed exception."""
    code: grpc.StatusCode = err.code()  # type: ignore[attr-defined]
    message: str = err.details() or ""  # type: ignore[attr-defined]
    rich = _status.parse(err.trailing_metadata())  # type: ignore[attr-defined]
    cls = _BY_CODE.get(code, TracklineError)
    return cls(message, code, rich.reason, rich.field_violations)
