"""Typed exceptions raised by the client: the class says the status code, the exception carries
the server's ErrorInfo reason, its field violations and its RetryInfo delay.

Two tables, both here: ``_BY_CODE`` maps a call's status code to its exception class (every
code of the server's reason catalogue, protos/trackline/v1/errors.proto, has its class), and
``_REJECTION_CODES`` gives a streamed batch's rejection (a reason, but no status code) the code
the catalogue gives that reason.
"""

from __future__ import annotations

import grpc

from . import _status


class TracklineError(Exception):
    """A failed call. ``reason`` is the server's UPPER_SNAKE ErrorInfo reason ("" if none);
    ``field_violations`` maps request field paths to what is wrong with them (a request with
    several problems names each; the descriptions of a field named twice are joined by "; "),
    and ``violations`` lists the same as (field, description) pairs in the server's order, the
    first being the problem ``reason`` and ``message`` name. The server lists at most 100,
    and its message says how many it found. ``retry_delay`` is how many seconds the server
    asked the caller to wait before trying again (None when it did not say: then waiting does
    not help)."""

    def __init__(
        self,
        message: str,
        code: grpc.StatusCode,
        reason: str = "",
        field_violations: dict[str, str] | None = None,
        *,
        retry_delay: float | None = None,
        violations: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(f"{reason or code.name}: {message}")
        self.message = message
        self.code = code
        self.reason = reason
        self.violations = (
            list(violations) if violations is not None else list((field_violations or {}).items())
        )
        self.field_violations = (
            field_violations if field_violations is not None else _status.by_field(self.violations)
        )
        self.retry_delay = retry_delay


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


class DeadlineExceeded(TracklineError):
    """The call took longer than its ``timeout`` (the client's ``timeout`` by default)."""


class Unauthenticated(TracklineError):
    """The server wants a token (``TRACKLINE_TOKEN`` or ``token=``) and got none or a bad one."""


class PermissionDenied(TracklineError):
    pass


class ResourceExhausted(TracklineError):
    pass


class Aborted(TracklineError):
    """The call lost a race with another: a newer stream of the same writer
    (WRITER_FENCED), or a concurrent call with the same request id (REQUEST_ID_IN_FLIGHT,
    which the client retries to get that call's result)."""


class OutOfRange(TracklineError):
    """A position past what the server keeps or has: a registry watcher resuming after an
    event that was pruned (EVENT_ID_OUT_OF_RANGE; the message names the oldest id kept)."""


class Internal(TracklineError):
    """A failure the caller cannot fix; the message names an error id in the server's log."""


_BY_CODE: dict[grpc.StatusCode, type[TracklineError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
    grpc.StatusCode.INTERNAL: Internal,
}

# The code the catalogue gives each reason a streamed batch can be rejected with other than
# INVALID_ARGUMENT, the code of every other rejection (a point the server or the client found
# invalid). CLIENT_ERROR is the sender's own: a bug in the client kept the points from going.
_REJECTION_CODES: dict[str, grpc.StatusCode] = {
    "RUN_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "RUN_DELETED": grpc.StatusCode.FAILED_PRECONDITION,
    "EXPERIMENT_DELETED": grpc.StatusCode.FAILED_PRECONDITION,
    "CLIENT_ERROR": grpc.StatusCode.INTERNAL,
}


class BatchRejected(TracklineError):
    """The server refused a batch of streamed metric points (``log_metric``): its points are
    not stored and are not retried. ``reason`` is e.g. RUN_NOT_FOUND, RUN_DELETED or
    INVALID_KEY and ``code`` the status the server gives that reason (``rejection_code``);
    ``seq`` is the batch's sequence number (0 for a batch the client refused itself before
    sending), ``run_id`` its run and ``points`` how many points it held."""

    def __init__(
        self, seq: int, reason: str, message: str, *, run_id: str = "", points: int = 0
    ) -> None:
        super().__init__(message, rejection_code(reason), reason)
        self.seq = seq
        self.run_id = run_id
        self.points = points


def exception_class(code: grpc.StatusCode) -> type[TracklineError]:
    """The exception raised for a call that failed with ``code``."""
    return _BY_CODE.get(code, TracklineError)


def rejection_code(reason: str) -> grpc.StatusCode:
    """The status code of a streamed batch's rejection ``reason``."""
    return _REJECTION_CODES.get(reason, grpc.StatusCode.INVALID_ARGUMENT)


def from_rpc_error(err: grpc.RpcError) -> TracklineError:
    """Maps a grpc error (with optional rich status details) to the typed exception."""
    code: grpc.StatusCode = err.code()  # type: ignore[attr-defined]
    message: str = err.details() or ""  # type: ignore[attr-defined]
    rich = _status.parse(err.trailing_metadata())  # type: ignore[attr-defined]
    return exception_class(code)(
        message,
        code,
        rich.reason,
        rich.field_violations,
        retry_delay=rich.retry_delay,
        violations=rich.violations,
    )
