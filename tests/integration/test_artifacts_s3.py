"""The S3 backend against moto's S3 server on loopback (SQLite store): proxied transfers,
single PUT and multipart, presigned multipart uploads whose parts are PUT with urllib,
presigned downloads, and S3's failures as the caller's errors."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import urllib.request
from pathlib import Path

import grpc
import pytest
from trackline.v1 import artifacts_pb2 as apb

from tests.support.artifact_stubs import Stubs, download, listing, names, reason, stubs, upload
from tests.support.s3 import S3Bucket
from tests.support.servers import ServerProcess, start_server

MIB = 1024 * 1024


@pytest.fixture
def s3_server(tmp_path: Path, s3_bucket: S3Bucket) -> ServerProcess:
    return start_server(tmp_path, extra_args=s3_bucket.server_args, env=s3_bucket.env)


@pytest.fixture
def s(s3_server: ServerProcess) -> Stubs:
    return stubs(s3_server.address)


def key(bucket: S3Bucket, run_id: str, path: str) -> str:
    return f"{bucket.prefix}/0/{run_id}/artifacts/{path}"


@pytest.mark.parametrize("size", [0, 1000, 20 * MIB + 3])  # one PUT, and a multipart upload
def test_a_proxied_file_round_trips_through_s3(s: Stubs, s3_bucket: S3Bucket, size: int) -> None:
    run_id = s.new_run()
    data = os.urandom(size)
    upload(s, run_id, "m/f.bin", data)
    assert s3_bucket.keys() == [key(s3_bucket, run_id, "m/f.bin")]
    assert download(s, run_id, "m/f.bin")[1] == data
    assert download(s, run_id, "m/f.bin", offset=size // 2)[1] == data[size // 2 :]
    assert names(listing(s, run_id)) == ["m/"]
    s.artifacts.DeleteArtifact(apb.DeleteArtifactRequest(run_id=run_id, path="m"))
    assert s3_bucket.keys() == []


def test_a_failed_proxied_upload_leaves_no_object(s: Stubs, s3_bucket: S3Bucket) -> None:
    run_id = s.new_run()
    data = os.urandom(20 * MIB)
    with pytest.raises(grpc.RpcError) as info:
        upload(s, run_id, "f", data, sha256=hashlib.sha256(b"other").hexdigest())
    assert reason(info.value) == "ARTIFACT_CHECKSUM_MISMATCH"
    assert s3_bucket.keys() == []
    assert s3_bucket.client().list_multipart_uploads(Bucket=s3_bucket.bucket).get("Uploads") is None


def put_parts(reply: apb.CreateArtifactUploadUrlsResponse, data: bytes) -> list[apb.CompletedPart]:
    done = []
    for part in reply.parts:
        body = data[part.offset : part.offset + part.size]
        request = urllib.request.Request(
            part.url, data=body, method="PUT", headers={"Content-Type": "application/octet-stream"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            done.append(
                apb.CompletedPart(part_number=part.part_number, etag=response.headers["ETag"])
            )
    return done


def start(
    s: Stubs, run_id: str, data: bytes, **extra: object
) -> apb.CreateArtifactUploadUrlsResponse:
    return s.artifacts.CreateArtifactUploadUrls(
        apb.CreateArtifactUploadUrlsRequest(
            run_id=run_id,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            **{"path": "direct/f.bin", "part_size": 5 * MIB, **extra},  # type: ignore[arg-type]
        )
    )


def test_a_presigned_multipart_upload(s: Stubs, s3_bucket: S3Bucket) -> None:
    run_id = s.new_run()
    data = os.urandom(12 * MIB + 5)
    reply = start(s, run_id, data)
    assert [(p.part_number, p.offset, p.size) for p in reply.parts] == [
        (1, 0, 5 * MIB),
        (2, 5 * MIB, 5 * MIB),
        (3, 10 * MIB, 2 * MIB + 5),
    ]
    assert listing(s, run_id, recursive=True) == []  # nothing visible before completion
    parts = put_parts(reply, data)
    assert listing(s, run_id, recursive=True) == []
    done = s.artifacts.CompleteArtifactUpload(
        apb.CompleteArtifactUploadRequest(upload_id=reply.upload_id, parts=parts)
    ).file
    assert (done.path, done.size) == ("direct/f.bin", len(data))
    assert download(s, run_id, "direct/f.bin")[1] == data
    url = s.artifacts.CreateArtifactDownloadUrl(
        apb.CreateArtifactDownloadUrlRequest(run_id=run_id, path="direct/f.bin")
    )
    assert url.file.sha256 == hashlib.sha256(data).hexdigest()
    with urllib.request.urlopen(url.url, timeout=30) as response:
        assert response.read() == data
    with pytest.raises(grpc.RpcError) as info:
        s.artifacts.CompleteArtifactUpload(
            apb.CompleteArtifactUploadRequest(upload_id=reply.upload_id, parts=parts)
        )
    assert reason(info.value) == "UPLOAD_NOT_FOUND"


def test_missing_parts_are_refused_and_abort_frees_them(s: Stubs, s3_bucket: S3Bucket) -> None:
    run_id = s.new_run()
    data = os.urandom(11 * MIB)
    reply = start(s, run_id, data, request_id="direct-1")
    again = start(s, run_id, data, request_id="direct-1")
    assert again.upload_id == reply.upload_id
    parts = put_parts(reply, data)
    for given in (parts[:2], [parts[1], parts[0], parts[2]]):
        with pytest.raises(grpc.RpcError) as info:
            s.artifacts.CompleteArtifactUpload(
                apb.CompleteArtifactUploadRequest(upload_id=reply.upload_id, parts=given)
            )
        assert reason(info.value) == "INVALID_UPLOAD_PARTS"
    s.artifacts.AbortArtifactUpload(apb.AbortArtifactUploadRequest(upload_id=reply.upload_id))
    assert s3_bucket.client().list_multipart_uploads(Bucket=s3_bucket.bucket).get("Uploads") is None
    assert s3_bucket.keys() == []
    with pytest.raises(grpc.RpcError) as info:
        s.artifacts.AbortArtifactUpload(apb.AbortArtifactUploadRequest(upload_id=reply.upload_id))
    assert reason(info.value) == "UPLOAD_NOT_FOUND"


def test_a_part_size_out_of_range_is_invalid(s: Stubs) -> None:
    run_id = s.new_run()
    with pytest.raises(grpc.RpcError) as info:
        start(s, run_id, b"x", part_size=MIB)
    assert reason(info.value) == "INVALID_UPLOAD_PARTS"


def test_presigned_urls_can_be_turned_off(tmp_path: Path, s3_bucket: S3Bucket) -> None:
    server = start_server(
        tmp_path, extra_args=[*s3_bucket.server_args, "--presigned-urls", "off"], env=s3_bucket.env
    )
    s = stubs(server.address)
    run_id = s.new_run()
    upload(s, run_id, "f", b"x")
    for call in (
        lambda: start(s, run_id, b"x"),
        lambda: s.artifacts.CreateArtifactDownloadUrl(
            apb.CreateArtifactDownloadUrlRequest(run_id=run_id, path="f")
        ),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert (info.value.code(), reason(info.value)) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "PRESIGNED_URLS_UNAVAILABLE",
        )


def test_the_local_backend_offers_no_presigned_urls(server: ServerProcess) -> None:
    s = stubs(server.address)
    run_id = s.new_run()
    with pytest.raises(grpc.RpcError) as info:
        start(s, run_id, b"x")
    assert reason(info.value) == "PRESIGNED_URLS_UNAVAILABLE"


def test_a_missing_bucket_is_unavailable_naming_it(tmp_path: Path, s3_bucket: S3Bucket) -> None:
    server = start_server(
        tmp_path,
        extra_args=[
            "--artifact-root",
            "s3://no-such-bucket/p",
            "--s3-endpoint-url",
            s3_bucket.endpoint_url,
        ],
        env=s3_bucket.env,
    )
    s = stubs(server.address)
    with pytest.raises(grpc.RpcError) as info:
        upload(s, s.new_run(), "f", b"x")
    assert (info.value.code(), reason(info.value)) == (
        grpc.StatusCode.UNAVAILABLE,
        "ARTIFACT_STORE_UNAVAILABLE",
    )
    assert "no-such-bucket" in (info.value.details() or "")


def test_an_unreachable_endpoint_is_unavailable(tmp_path: Path, s3_bucket: S3Bucket) -> None:
    from tests.support.ports import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    server = start_server(
        tmp_path,
        extra_args=["--artifact-root", s3_bucket.root_uri, "--s3-endpoint-url", dead],
        env=s3_bucket.env,
    )
    s = stubs(server.address)
    with pytest.raises(grpc.RpcError) as info:
        upload(s, s.new_run(), "f", b"x")
    assert (info.value.code(), reason(info.value)) == (
        grpc.StatusCode.UNAVAILABLE,
        "ARTIFACT_STORE_UNAVAILABLE",
    )


def test_an_expired_upload_is_not_found_and_aborted_later(
    tmp_path: Path, s3_bucket: S3Bucket, s3_server: ServerProcess
) -> None:
    s = stubs(s3_server.address)
    run_id = s.new_run()
    data = os.urandom(6 * MIB)
    reply = start(s, run_id, data)
    parts = put_parts(reply, data)
    db = sqlite3.connect(s3_server.store_uri.split(":///", 1)[1])
    with db:
        db.execute("UPDATE artifact_uploads SET expire_time = 0")
    db.close()
    with pytest.raises(grpc.RpcError) as info:
        s.artifacts.CompleteArtifactUpload(
            apb.CompleteArtifactUploadRequest(upload_id=reply.upload_id, parts=parts)
        )
    assert reason(info.value) == "UPLOAD_NOT_FOUND"
    s3_server.stop()  # a new process prunes at its first create
    again = start_server(
        tmp_path, s3_server.store_uri, extra_args=s3_bucket.server_args, env=s3_bucket.env
    )
    s = stubs(again.address)
    start(s, run_id, data, path="other")
    open_uploads = s3_bucket.client().list_multipart_uploads(Bucket=s3_bucket.bucket)
    assert [u["Key"] for u in open_uploads["Uploads"]] == [key(s3_bucket, run_id, "other")]
