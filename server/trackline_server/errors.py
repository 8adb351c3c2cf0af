"""Domain errors, and the one place that maps them to gRPC status + ErrorInfo + BadRequest.

What leaves the server says what the caller can act on and nothing else: no SQL, bound
parameters, file paths or other clients' data. ``from_exception`` is the one door every
failure passes through on its way out: a domain error as it is; anything else becomes
INTERNAL with an error id that the server's log carries beside the traceback.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "trackline.dev"
# Longest message a status carries: trailers over a few KB make clients fail with
# RESOURCE_EXHAUSTED instead of showing the error.
MAX_MESSAGE_CHARS = 1024
# Longest rendering of a caller's value inside a message (``shown``).
MAX_SHOWN_CHARS = 80

log = logging.getLogger("trackline.errors")


class TracklineError(Exception):
    """Base of domain errors; ``reason`` is the UPPER_SNAKE ErrorInfo reason."""

    code = code_pb2.INTERNAL
    grpc_code = grpc.StatusCode.INTERNAL

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = field


class NotFound(TracklineError):
    code = code_pb2.NOT_FOUND
    grpc_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(TracklineError):
    code = code_pb2.ALREADY_EXISTS
    grpc_code = grpc.StatusCode.ALREADY_EXISTS


class InvalidArgument(TracklineError):
    code = code_pb2.INVALID_ARGUMENT
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(TracklineError):
    code = code_pb2.FAILED_PRECONDITION
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(TracklineError):
    code = code_pb2.UNAUTHENTICATED
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(TracklineError):
    code = code_pb2.PERMISSION_DENIED
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class Aborted(TracklineError):
    """The call lost a race with another (e.g. a newer stream of the same writer); retrying
    the whole sequence, from the start, is safe."""

    code = code_pb2.ABORTED
    grpc_code = grpc.StatusCode.ABORTED


class Unavailable(TracklineError):
    code = code_pb2.UNAVAILABLE
    grpc_code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(TracklineError):
    """A limit was hit. When waiting helps (a full queue), ``retry_after`` seconds is sent as
    google.rpc.RetryInfo; without it the caller must change the request."""

    code = code_pb2.RESOURCE_EXHAUSTED
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(
        self,
        reason: str,
        message: str,
        field: str | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason, message, field)
        self.retry_after = retry_after


class Internal(TracklineError):
    """A failure the caller cannot fix; its message names an error id found in the log."""

    code = code_pb2.INTERNAL
    grpc_code = grpc.StatusCode.INTERNAL


def shown(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters: an echoed 10k-character id
    must not make the trailer too large to deliver."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-1]}"


def internal(exc: BaseException, what: str = "the call") -> Internal:
    """Logs ``exc`` with its traceback under a fresh error id and returns the INTERNAL error
    the caller gets: the id, nothing of the exception's text."""
    error_id = uuid.uuid4().hex[:12]
    log.error("error id %s: %s failed", error_id, what, exc_info=exc)
    return Internal(
        "INTERNAL",
        f"{what} failed on the server (error id {error_id}; the server's log has the details)",
    )


def from_exception(exc: BaseException, what: str = "the call") -> TracklineError:
    """The error a caller gets for ``exc``: domain errors pass through; the rest become
    INTERNAL (``internal``)."""
    if isinstance(exc, TracklineError):
        return exc
    return internal(exc, what)


def grpc_status(err: TracklineError) -> grpc.Status:
    """``err`` as the status object ``context.abort_with_status`` takes."""
    return rpc_status.to_status(to_status(err))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def to_status(err: TracklineError) -> status_pb2.Status:
    """Builds the google.rpc.Status carried in the trailers of a failed call."""
    details = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN))
    details.append(info)
    if err.field is not None:
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=_clip(err.field), description=_clip(err.message)
                    )
                ]
            )
        )
        details.append(bad)
    if isinstance(err, ResourceExhausted) and err.retry_after is not None:
        retry = any_pb2.Any()
        delay = duration_pb2.Duration()
        delay.FromTimedelta(dt.timedelta(seconds=err.retry_after))
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(retry)
    return status_pb2.Status(code=err.code, message=_clip(err.message), details=details)
