"""Domain errors, and the one place that maps them to gRPC status + ErrorInfo + BadRequest."""

from __future__ import annotations

import datetime as dt

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

DOMAIN = "trackline.dev"


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
                        field=err.field, description=err.message
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
    return status_pb2.Status(code=err.code, message=err.message, details=details)
