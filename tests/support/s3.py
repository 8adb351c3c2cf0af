"""An S3-compatible store on loopback for tests: moto's server mode (``ThreadedMotoServer``)
on a free port, one per test session, and a fresh bucket per test.

A test takes the ``s3_bucket`` fixture and starts a server on it with
``start_server(tmp, extra_args=bucket.server_args, env=bucket.env)``; code in the test
itself talks to the same store with ``bucket.client()`` (boto3 is a test dependency). The
credentials are moto's dummies: any key is accepted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.ports import free_port

REGION = "us-east-1"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"


@dataclass(frozen=True)
class S3Bucket:
    """An empty bucket on the test S3 server, and how to reach it."""

    endpoint_url: str  # http://127.0.0.1:<port>
    bucket: str
    prefix: str = "artifacts"  # where the server under test keeps the runs' artifacts
    env: dict[str, str] = field(default_factory=dict)  # for a server process or a client

    @property
    def root_uri(self) -> str:
        """The artifact root to give the server: ``s3://<bucket>/<prefix>``."""
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def server_args(self) -> list[str]:
        """Flags that make a server under test keep its artifacts in this bucket."""
        return ["--artifact-root", self.root_uri, "--s3-endpoint-url", self.endpoint_url]

    def client(self) -> Any:
        """A boto3 S3 client on the test server (typed ``Any``: the stubs are optional)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    def keys(self) -> list[str]:
        """Every object key in the bucket, sorted (a bucket of a test stays small)."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def s3_env(endpoint_url: str) -> dict[str, str]:
    """The usual AWS settings that point boto3 (in a server process or a client) at
    ``endpoint_url`` with the test credentials."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL_S3": endpoint_url,
    }


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Starts moto's S3 server on a free loopback port for the test session; yields its URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> S3Bucket:
    """A new, empty bucket on the session's S3 server."""
    bucket = S3Bucket(s3_endpoint, f"t-{uuid.uuid4().hex[:16]}", env=s3_env(s3_endpoint))
    bucket.client().create_bucket(Bucket=bucket.bucket)
    return bucket
