"""An upload the client cancels midway leaves nothing visible and no temporary file, and a
retry succeeds; an upload retried with its request id gets the first upload's result."""

from __future__ import annotations

import hashlib
import queue
from collections.abc import Iterator

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
)
from tests.support.artifact_stubs import upload as upload_file
from tests.support.servers import ServerProcess
from tests.support.waiting import eventually


@pytest.fixture
def s(server: ServerProcess) -> Stubs:
    return stubs(server.address)


def temp_files(server: ServerProcess) -> list[str]:
    return [p.name for p in server.artifacts.rglob("*.upload")]


def test_an_upload_cancelled_midway_leaves_nothing(s: Stubs, server: ServerProcess) -> None:
    run_id = s.new_run()
    data = b"x" * (3 * CHUNK)
    sent: queue.Queue[apb.UploadArtifactRequest | None] = queue.Queue()

    def messages() -> Iterator[apb.UploadArtifactRequest]:
        while (message := sent.get()) is not None:
            yield message

    sent.put(header(run_id, "big.bin", data))
    sent.put(apb.UploadArtifactRequest(chunk=data[:CHUNK]))
    call = s.artifacts.UploadArtifact.future(messages(), timeout=60)
    assert eventually(lambda: bool(temp_files(server)))  # the server is writing it
    call.cancel()
    sent.put(None)
    assert eventually(lambda: not temp_files(server))
    assert listing(s, run_id, recursive=True) == []
    with pytest.raises(grpc.RpcError) as info:
        download(s, run_id, "big.bin")
    assert reason(info.value) == "ARTIFACT_NOT_FOUND"
    upload_file(s, run_id, "big.bin", data)
    assert download(s, run_id, "big.bin")[1] == data


def test_a_retry_with_the_request_id_gets_the_first_result(s: Stubs) -> None:
    run_id = s.new_run()
    first = upload_file(s, run_id, "f", b"first", request_id="req-1")
    upload_file(s, run_id, "f", b"other")  # a later upload without an id replaces it
    again = upload_file(s, run_id, "f", b"first", request_id="req-1")
    assert again == first
    assert download(s, run_id, "f")[1] == b"other"  # the retry stored nothing


def test_a_retry_needs_no_bytes(s: Stubs) -> None:
    run_id = s.new_run()
    first = upload_file(s, run_id, "f", b"first", request_id="req-2")
    only_header = header(run_id, "f", b"first", "req-2")
    assert s.artifacts.UploadArtifact(iter([only_header]), timeout=30).file == first


def test_a_request_id_of_another_file_is_reused(s: Stubs) -> None:
    run_id = s.new_run()
    upload_file(s, run_id, "f", b"x", request_id="req-3")
    with pytest.raises(grpc.RpcError) as info:
        upload_file(s, run_id, "g", b"x", request_id="req-3")
    assert reason(info.value) == "REQUEST_ID_REUSED"
    with pytest.raises(grpc.RpcError) as info:
        upload_file(s, run_id, "f", b"x", request_id="x" * 129)
    assert reason(info.value) == "INVALID_REQUEST_ID"
    assert hashlib.sha256(b"x").hexdigest() == listing(s, run_id)[0].sha256


def test_uploads_of_one_path_at_once_leave_one_of_them_whole(s: Stubs) -> None:
    """Eight writers of one path, each held until all are streaming: whichever lands last,
    the file's bytes and its listed size and checksum are that one upload's."""
    run_id = s.new_run()
    bodies = [bytes([i]) * (CHUNK + 1000 * i) for i in range(8)]
    gates = [queue.Queue[apb.UploadArtifactRequest | None]() for _ in bodies]

    def messages(
        gate: queue.Queue[apb.UploadArtifactRequest | None],
    ) -> Iterator[apb.UploadArtifactRequest]:
        while (message := gate.get()) is not None:
            yield message

    calls = []
    for gate, body in zip(gates, bodies, strict=True):
        gate.put(header(run_id, "model.bin", body))
        calls.append(s.artifacts.UploadArtifact.future(messages(gate), timeout=60))
    for gate, body in zip(gates, bodies, strict=True):  # all finish together
        for message in chunks(body):
            gate.put(message)
    for gate in gates:
        gate.put(None)
    for call in calls:
        call.result()
    (listed,) = listing(s, run_id, recursive=True)
    described, data = download(s, run_id, "model.bin")
    assert data in bodies
    assert listed.size == described.size == len(data)
    assert listed.sha256 == described.sha256 == hashlib.sha256(data).hexdigest()
