"""ArtifactService through the raw generated stubs, for the server's artifact tests: a run
to put files in, uploads, downloads and listings, and the reason of a refused call."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from trackline._status import parse
from trackline.v1 import artifacts_pb2 as apb
from trackline.v1 import artifacts_pb2_grpc, tracking_pb2_grpc
from trackline.v1 import tracking_pb2 as tpb

CHUNK = 4 * 1024 * 1024


@dataclass
class Stubs:
    channel: grpc.Channel
    artifacts: artifacts_pb2_grpc.ArtifactServiceStub
    tracking: tracking_pb2_grpc.TrackingServiceStub

    def new_run(self, experiment_id: str = "0") -> str:
        return str(
            self.tracking.CreateRun(tpb.CreateRunRequest(experiment_id=experiment_id)).run.run_id
        )


def stubs(address: str) -> Stubs:
    channel = grpc.insecure_channel(address)
    return Stubs(
        channel,
        artifacts_pb2_grpc.ArtifactServiceStub(channel),
        tracking_pb2_grpc.TrackingServiceStub(channel),
    )


def header(
    run_id: str, path: str, data: bytes, request_id: str = "", **overrides: Any
) -> apb.UploadArtifactRequest:
    fields: dict[str, Any] = {
        "run_id": run_id,
        "path": path,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "request_id": request_id,
        **overrides,
    }
    return apb.UploadArtifactRequest(header=apb.UploadArtifactHeader(**fields))


def chunks(data: bytes, size: int = CHUNK) -> Iterator[apb.UploadArtifactRequest]:
    for start in range(0, len(data), size):
        yield apb.UploadArtifactRequest(chunk=data[start : start + size])


def upload(
    s: Stubs, run_id: str, path: str, data: bytes, request_id: str = "", **overrides: Any
) -> apb.ArtifactFile:
    """Uploads ``data`` as one file; ``overrides`` change the header (a wrong size...)."""
    messages = [header(run_id, path, data, request_id, **overrides), *chunks(data)]
    return s.artifacts.UploadArtifact(iter(messages), timeout=60).file


def download(s: Stubs, run_id: str, path: str, offset: int = 0) -> tuple[apb.ArtifactFile, bytes]:
    """The file's description (from the first message) and its bytes from ``offset``."""
    replies = s.artifacts.DownloadArtifact(
        apb.DownloadArtifactRequest(run_id=run_id, path=path, offset=offset), timeout=60
    )
    described: apb.ArtifactFile | None = None
    parts: list[bytes] = []
    at = offset
    for reply in replies:
        if described is None:
            described = reply.file
        assert reply.offset == at
        parts.append(reply.chunk)
        at += len(reply.chunk)
    assert described is not None
    return described, b"".join(parts)


def listing(
    s: Stubs, run_id: str, path: str = "", recursive: bool = False, page_size: int = 0
) -> list[apb.ArtifactFile]:
    """Every entry of a listing, page after page."""
    found: list[apb.ArtifactFile] = []
    token = ""
    while True:
        reply = s.artifacts.ListArtifacts(
            apb.ListArtifactsRequest(
                run_id=run_id,
                path=path,
                recursive=recursive,
                page_size=page_size,
                page_token=token,
            )
        )
        found.extend(reply.files)
        token = reply.next_page_token
        if not token:
            return found


def names(files: Iterable[apb.ArtifactFile]) -> list[str]:
    """Paths, a directory's with a trailing '/'."""
    return [f.path + "/" * f.is_dir for f in files]


def reason(err: grpc.RpcError) -> str:
    return str(parse(err.trailing_metadata()).reason)  # type: ignore[attr-defined]
