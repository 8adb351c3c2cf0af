"""Failures of the artifact storage as the caller's errors: the local disk's (full, gone)
and boto3's (unreachable, refused credentials, no bucket)."""

from __future__ import annotations

import errno

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from trackline_server.artifacts.local import disk_error
from trackline_server.artifacts.s3 import store_error


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (errno.ENOSPC, ("RESOURCE_EXHAUSTED", "ARTIFACT_STORE_FULL")),
        (errno.EDQUOT, ("RESOURCE_EXHAUSTED", "ARTIFACT_STORE_FULL")),
        (errno.ENOENT, ("NOT_FOUND", "ARTIFACT_NOT_FOUND")),
        (errno.EIO, ("UNAVAILABLE", "ARTIFACT_STORE_UNAVAILABLE")),
    ],
)
def test_disk_failures(number: int, expected: tuple[str, str]) -> None:
    err = disk_error(OSError(number, "boom", "/secret/path"))
    assert (err.grpc_code.name, err.reason) == expected
    assert "/secret/path" not in err.message


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "PutObject")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (client_error("NoSuchBucket"), ("UNAVAILABLE", "ARTIFACT_STORE_UNAVAILABLE")),
        (client_error("InvalidAccessKeyId"), ("UNAVAILABLE", "ARTIFACT_STORE_UNAVAILABLE")),
        (client_error("SignatureDoesNotMatch"), ("UNAVAILABLE", "ARTIFACT_STORE_UNAVAILABLE")),
        (client_error("NoSuchKey"), ("NOT_FOUND", "ARTIFACT_NOT_FOUND")),
        (client_error("NoSuchUpload"), ("NOT_FOUND", "UPLOAD_NOT_FOUND")),
        (client_error("InvalidPart"), ("INVALID_ARGUMENT", "INVALID_UPLOAD_PARTS")),
        (NoCredentialsError(), ("UNAVAILABLE", "ARTIFACT_STORE_UNAVAILABLE")),
        (
            EndpointConnectionError(endpoint_url="http://x"),
            ("UNAVAILABLE", "ARTIFACT_STORE_UNAVAILABLE"),
        ),
    ],
)
def test_boto3_failures(exc: Exception, expected: tuple[str, str]) -> None:
    err = store_error(exc, "my-bucket")
    assert err is not None
    assert (err.grpc_code.name, err.reason) == expected


def test_a_missing_bucket_is_named() -> None:
    err = store_error(client_error("NoSuchBucket"), "my-bucket")
    assert err is not None and "my-bucket" in err.message


def test_other_exceptions_are_not_the_storages() -> None:
    assert store_error(ValueError("x"), "b") is None
