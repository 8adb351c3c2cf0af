"""The client's one error mapping (trackline/_exceptions.py): a failed call's status code
picks the exception class, and the exception carries what the server's rich status says
(reason, field violations, RetryInfo delay), read from trailers the server's own error module
builds. A streamed batch's rejection (a reason, no status code) gets its code from a table."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest
from trackline import (
    Aborted,
    AlreadyExists,
    BatchRejected,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    TracklineError,
    Unauthenticated,
    Unavailable,
)
from trackline._exceptions import _REJECTION_CODES, exception_class, from_rpc_error, rejection_code
from trackline.v1 import errors_pb2
from trackline_server import errors

from tests.support.rpc_errors import FailedCall, failed


@pytest.mark.parametrize(
    ("server_error", "cls"),
    [
        (errors.NotFound("RUN_NOT_FOUND", "no run with id 'x'", "run_id"), NotFound),
        (errors.AlreadyExists("EXPERIMENT_EXISTS", "taken", "name"), AlreadyExists),
        (errors.InvalidArgument("INVALID_KEY", "key is empty", "metrics[0].key"), InvalidArgument),
        (errors.FailedPrecondition("RUN_DELETED", "restore it first"), FailedPrecondition),
        (errors.Unauthenticated("MISSING_TOKEN", "no token"), Unauthenticated),
        (errors.PermissionDenied("WRITER_NOT_OWNED", "not yours"), PermissionDenied),
        (errors.ResourceExhausted("HISTORY_TOO_LARGE", "too many"), ResourceExhausted),
        (errors.Unavailable("STORE_UNAVAILABLE", "the store is away"), Unavailable),
        (errors.Aborted("WRITER_FENCED", "taken over"), Aborted),
        (errors.Internal("INTERNAL", "error id 0123"), Internal),
    ],
)
def test_the_status_code_picks_the_class_and_the_reason_comes_along(
    server_error: errors.TracklineError, cls: type[TracklineError]
) -> None:
    err = from_rpc_error(failed(server_error))
    assert type(err) is cls
    assert err.code == server_error.grpc_code
    assert (err.reason, err.message) == (server_error.reason, server_error.message)
    want = {server_error.field: server_error.message} if server_error.field else {}
    assert err.field_violations == want and err.retry_delay is None
    assert str(err) == f"{server_error.reason}: {server_error.message}"


def test_retry_info_is_carried_as_seconds() -> None:
    busy = errors.ResourceExhausted("SERVER_BUSY", "busy", retry_after=1.25)
    err = from_rpc_error(failed(busy))
    assert type(err) is ResourceExhausted and err.retry_delay == 1.25


def test_a_status_without_details_still_maps() -> None:
    err = from_rpc_error(FailedCall(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    assert type(err) is DeadlineExceeded and err.reason == "" and err.retry_delay is None
    bad = (("grpc-status-details-bin", b"\xff not a status"),)
    err = from_rpc_error(FailedCall(grpc.StatusCode.NOT_FOUND, "gone", bad))
    assert type(err) is NotFound and err.reason == "" and err.message == "gone"


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("RUN_NOT_FOUND", grpc.StatusCode.NOT_FOUND),
        ("RUN_DELETED", grpc.StatusCode.FAILED_PRECONDITION),
        ("EXPERIMENT_DELETED", grpc.StatusCode.FAILED_PRECONDITION),
        ("INVALID_KEY", grpc.StatusCode.INVALID_ARGUMENT),
        ("INVALID_POINT", grpc.StatusCode.INVALID_ARGUMENT),
        ("INVALID_RANK", grpc.StatusCode.INVALID_ARGUMENT),
        ("RUN_ID_TOO_LONG", grpc.StatusCode.INVALID_ARGUMENT),  # no guessing from a prefix
        ("CLIENT_ERROR", grpc.StatusCode.INTERNAL),
    ],
)
def test_a_rejected_batch_carries_its_reason_and_the_servers_code(
    reason: str, code: grpc.StatusCode
) -> None:
    err = BatchRejected(7, reason, "why", run_id="r", points=3)
    assert isinstance(err, TracklineError)
    assert (err.code, err.reason, err.seq, err.run_id, err.points) == (code, reason, 7, "r", 3)


def _catalogue() -> dict[str, tuple[grpc.StatusCode, str]]:
    """errors.proto's reasons: {reason: (code, what)}; each value's comment starts with its
    code."""
    text = (Path(__file__).parents[2] / "protos/trackline/v1/errors.proto").read_text()
    found = re.findall(r"// ([A-Z_]+)\.([^\n]*(?:\n  //[^\n]*)*)\n  ([A-Z_]+) = \d+;", text)
    return {
        reason: (grpc.StatusCode[code], " ".join(what.replace("//", " ").split()))
        for code, what, reason in found
    }


def test_every_code_of_the_reason_catalogue_has_its_class() -> None:
    catalogue = _catalogue()
    assert set(catalogue) == set(errors_pb2.ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}
    for code, _ in catalogue.values():
        cls = exception_class(code)
        assert cls is not TracklineError
        assert cls.__name__.upper() == code.name.replace("_", "")


def test_a_rejection_gets_the_code_the_catalogue_gives_its_reason() -> None:
    catalogue = _catalogue()
    for reason, code in _REJECTION_CODES.items():
        assert catalogue.get(reason, (code, ""))[0] == code
    streamed = [r for r, (_, what) in catalogue.items() if "stream rejection's reason" in what]
    assert sorted(streamed) == ["EXPERIMENT_DELETED", "RUN_DELETED", "RUN_NOT_FOUND"]
    for reason in [*streamed, "INVALID_KEY", "COLUMN_LENGTH_MISMATCH"]:
        assert rejection_code(reason) == catalogue[reason][0]
