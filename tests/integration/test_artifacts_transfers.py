"""Uploads and downloads through the proxy on the local backend, on SQLite and PostgreSQL:
round trips, resumed downloads, atomic replacement, and uploads whose bytes do not match
their header (nothing stored, the path as it was)."""

from __future__ import annotations

import hashlib
import os

import grpc
import pytest
from trackline.v1 import artifacts_pb2 as apb

from tests.support.artifact_stubs import (
    CHUNK,
    Stubs,
    chunks,
    download,
    header,
    listing,
    reason,
    stubs,
    upload,
)
from tests.support.servers import ServerProcess


@pytest.fixture
def s(server: ServerProcess) -> Stubs:
    return stubs(server.address)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, 2 * CHUNK + 7])
def test_a_file_comes_back_as_it_went(s: Stubs, size: int) -> None:
    run_id = s.new_run()
    data = os.urandom(size)
    stored = upload(s, run_id, "dir/file.bin", data)
    assert (stored.path, stored.size) == ("dir/file.bin", size)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.update_time > 0
    described, got = download(s, run_id, "dir/file.bin")
    assert got == data
    assert described == stored


def test_a_download_resumes_from_an_offset(s: Stubs) -> None:
    run_id = s.new_run()
    data = os.urandom(CHUNK + 1000)
    upload(s, run_id, "f", data)
    for offset in (1, CHUNK, len(data) - 1, len(data)):
        described, got = download(s, run_id, "f", offset)
        assert got == data[offset:]
        assert described.size == len(data)


def test_an_offset_past_the_end_is_invalid_offset(s: Stubs) -> None:
    run_id = s.new_run()
    upload(s, run_id, "f", b"abc")
    for offset in (-1, 4):
        with pytest.raises(grpc.RpcError) as info:
            download(s, run_id, "f", offset)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason(info.value) == "INVALID_OFFSET"


def test_uploading_a_path_again_replaces_the_file(s: Stubs) -> None:
    run_id = s.new_run()
    upload(s, run_id, "f", b"old bytes")
    upload(s, run_id, "f", b"new")
    assert download(s, run_id, "f")[1] == b"new"
    assert [f.size for f in listing(s, run_id)] == [3]


@pytest.mark.parametrize(
    ("sent", "declared", "expected"),
    [
        (b"x" * 10, {"size": 9}, "ARTIFACT_SIZE_MISMATCH"),
        (b"x" * 10, {"size": 11}, "ARTIFACT_SIZE_MISMATCH"),
        (b"x" * 10, {"size": -1}, "ARTIFACT_SIZE_MISMATCH"),
        (b"x" * 10, {"sha256": hashlib.sha256(b"y").hexdigest()}, "ARTIFACT_CHECKSUM_MISMATCH"),
        (b"x" * 10, {"sha256": "abc"}, "INVALID_CHECKSUM"),
        (b"x" * 10, {"sha256": "g" * 64}, "INVALID_CHECKSUM"),
    ],
)
def test_bytes_that_do_not_match_the_header_store_nothing(
    s: Stubs, server: ServerProcess, sent: bytes, declared: dict[str, object], expected: str
) -> None:
    run_id = s.new_run()
    upload(s, run_id, "f", b"before")
    with pytest.raises(grpc.RpcError) as info:
        upload(s, run_id, "f", sent, **declared)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(info.value) == expected
    assert download(s, run_id, "f")[1] == b"before"
    leftovers = [p for p in server.artifacts.rglob("*") if p.name.endswith(".upload")]
    assert leftovers == []


def test_a_stream_must_start_with_one_header(s: Stubs) -> None:
    run_id = s.new_run()
    cases = [
        [apb.UploadArtifactRequest(chunk=b"x")],
        [],
        [header(run_id, "f", b"x"), header(run_id, "f", b"x")],
    ]
    for messages in cases:
        with pytest.raises(grpc.RpcError) as info:
            s.artifacts.UploadArtifact(iter(messages), timeout=30)
        assert reason(info.value) == "MALFORMED_REQUEST"
    assert listing(s, run_id) == []


def test_missing_files_and_runs_are_not_found(s: Stubs) -> None:
    run_id = s.new_run()
    upload(s, run_id, "d/f", b"x")
    for run, path, code, expected in [
        (run_id, "nope", grpc.StatusCode.NOT_FOUND, "ARTIFACT_NOT_FOUND"),
        ("0" * 32, "f", grpc.StatusCode.NOT_FOUND, "RUN_NOT_FOUND"),
        (run_id, "d", grpc.StatusCode.FAILED_PRECONDITION, "ARTIFACT_IS_DIRECTORY"),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            download(s, run, path)
        assert (info.value.code(), reason(info.value)) == (code, expected)
    with pytest.raises(grpc.RpcError) as info:
        upload(s, "0" * 32, "f", b"x")
    assert reason(info.value) == "RUN_NOT_FOUND"


def test_chunks_of_any_size_up_to_4_mib_are_taken(s: Stubs) -> None:
    run_id = s.new_run()
    data = os.urandom(3 * CHUNK)
    for size in (1000, CHUNK):
        messages = [header(run_id, f"f{size}", data), *chunks(data, size)]
        s.artifacts.UploadArtifact(iter(messages), timeout=60)
        assert download(s, run_id, f"f{size}")[1] == data
