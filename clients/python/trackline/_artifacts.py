"""TracklineClient's artifact methods (ArtifactService): the files of a run, uploaded, listed,
downloaded and deleted, named as MLflow's ``MlflowClient`` names them.

Transfers go through the server in chunks of at most 4 MiB, so memory stays bounded whatever
a file's size, and the client needs no storage credentials. An upload declares the file's
size and SHA-256 (read in a first pass over the file) before its bytes; its request id makes
the server answer a retry, after UNAVAILABLE or a broken stream, with the first attempt's
result. A download writes to a temporary file beside its destination, resumes from the bytes
it has after a broken stream, checks the size and SHA-256, then moves the file into place:
a destination holds the old file or the whole new one, never a part. Files of
``presigned_threshold`` bytes or more go straight to storage through presigned URLs where the
server offers them (``_presigned``), through the server otherwise.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

import grpc

from trackline.v1 import artifacts_pb2 as apb

from . import _presigned
from ._exceptions import NotFound, TracklineError
from ._local_files import file_digest, in_parallel, local_files, local_target
from ._progress import Progress
from ._transport import (
    BACKOFF_MAX,
    BACKOFF_START,
    Metadata,
    StreamCall,
    Transport,
    UnaryCall,
    retryable,
)

CHUNK_BYTES = 4 * 1024 * 1024  # the largest chunk the server takes
PRESIGNED_THRESHOLD = 64 * 1024 * 1024
# A transfer's deadline (when no timeout is given) is the client's timeout plus the time the
# file takes at this rate, so that a big file on a slow link is not cut off.
SLOWEST_RATE = 1024 * 1024  # bytes per second


class FileInfo(NamedTuple):
    """A file or directory of a run's artifacts, as MLflow's ``FileInfo`` (plus the file's
    SHA-256): ``path`` is relative to the run's artifact root; ``file_size`` and ``sha256``
    are None for a directory."""

    path: str
    is_dir: bool
    file_size: int | None
    sha256: str | None


class ArtifactCalls:
    """The ArtifactService methods but UploadArtifact (a client stream, which
    ``ArtifactMethods`` sends itself) through one transport. Reads and aborts are retried,
    CreateArtifactUploadUrls with its request id; DeleteArtifact and CompleteArtifactUpload
    are not (a repeat after the first attempt applied would fail with NOT_FOUND)."""

    def __init__(self, transport: Transport) -> None:
        self.DownloadArtifact = StreamCall(
            transport,
            "DownloadArtifact",
            apb.DownloadArtifactRequest,
            apb.DownloadArtifactResponse,
            service="artifacts",
        )
        self.ListArtifacts = UnaryCall(
            transport,
            "ListArtifacts",
            apb.ListArtifactsRequest,
            apb.ListArtifactsResponse,
            idempotent=True,
            service="artifacts",
        )
        self.DeleteArtifact = UnaryCall(
            transport,
            "DeleteArtifact",
            apb.DeleteArtifactRequest,
            apb.DeleteArtifactResponse,
            idempotent=False,
            service="artifacts",
        )
        self.CreateArtifactUploadUrls = UnaryCall(
            transport,
            "CreateArtifactUploadUrls",
            apb.CreateArtifactUploadUrlsRequest,
            apb.CreateArtifactUploadUrlsResponse,
            idempotent=False,
            service="artifacts",
        )
        self.CompleteArtifactUpload = UnaryCall(
            transport,
            "CompleteArtifactUpload",
            apb.CompleteArtifactUploadRequest,
            apb.CompleteArtifactUploadResponse,
            idempotent=False,
            service="artifacts",
        )
        self.AbortArtifactUpload = UnaryCall(
            transport,
            "AbortArtifactUpload",
            apb.AbortArtifactUploadRequest,
            apb.AbortArtifactUploadResponse,
            idempotent=True,
            service="artifacts",
        )
        self.CreateArtifactDownloadUrl = UnaryCall(
            transport,
            "CreateArtifactDownloadUrl",
            apb.CreateArtifactDownloadUrlRequest,
            apb.CreateArtifactDownloadUrlResponse,
            idempotent=True,
            service="artifacts",
        )


class ArtifactMethods:
    """The artifact methods of ``TracklineClient``, over its ``transport`` and
    ``artifact_calls``; each takes keyword-only ``progress`` (see ``Progress``), ``timeout``
    and ``metadata``. ``timeout`` is each attempt's deadline in seconds; by default a
    transfer's grows with the file (the client's timeout plus a second per MiB). Paths the
    server refuses raise InvalidArgument (INVALID_ARTIFACT_PATH) naming the path, an unknown
    run NotFound (RUN_NOT_FOUND), writes to a deleted run's artifacts FailedPrecondition
    (RUN_DELETED).

    ``presigned_threshold``: files of at least this many bytes go straight to storage when
    the server offers presigned URLs; ``presigned_available`` turns false, for this client,
    once the server said it offers none or a URL could not be reached."""

    transport: Transport
    artifact_calls: ArtifactCalls
    presigned_threshold: int = PRESIGNED_THRESHOLD
    presigned_available: bool = True

    def log_artifact(
        self,
        run_id: str,
        local_path: str | os.PathLike[str],
        artifact_path: str | None = None,
        *,
        progress: Progress | None = None,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> None:
        """Uploads a file to ``<artifact_path>/<its name>`` (the run's artifact root when
        ``artifact_path`` is None), replacing the file there."""
        local = os.fspath(local_path)
        if os.path.isdir(local):
            raise ValueError(f"{local!r} is a directory: use log_artifacts")
        path = _join(artifact_path, os.path.basename(local))
        self._upload(run_id, local, path, progress, timeout, metadata)

    def log_artifacts(
        self,
        run_id: str,
        local_dir: str | os.PathLike[str],
        artifact_path: str | None = None,
        *,
        progress: Progress | None = None,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> None:
        """Uploads every file under ``local_dir`` to the same relative path under
        ``artifact_path``, several at a time. Symlinks are followed if they stay inside
        ``local_dir``; one pointing outside it is a ValueError before anything is sent."""
        files = local_files(os.fspath(local_dir))
        in_parallel(
            lambda f: self._upload(
                run_id, f[0], _join(artifact_path, f[1]), progress, timeout, metadata
            ),
            files,
        )

    def list_artifacts(
        self,
        run_id: str,
        path: str | None = None,
        recursive: bool = False,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> list[FileInfo]:
        """The files and directories directly under ``path`` (the run's artifact root when
        None), or every file under it when ``recursive``, ordered by path. A file's path
        lists that file; a path with nothing under it lists nothing."""
        req = apb.ListArtifactsRequest(run_id=run_id, path=_dir_path(path), recursive=recursive)
        found = self.artifact_calls.ListArtifacts.pages(
            req, "files", timeout=timeout, metadata=metadata
        )
        return [_file_info(f) for f in found]

    def download_artifacts(
        self,
        run_id: str,
        path: str = "",
        dst_path: str | os.PathLike[str] | None = None,
        *,
        progress: Progress | None = None,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> str:
        """Downloads the file or directory at ``path`` ("" for all the run's artifacts) into
        ``dst_path`` (created if missing; a new temporary directory when None) and returns
        the local path of what it downloaded: ``<dst_path>/<name of path>``, or ``dst_path``
        itself for "". NotFound (ARTIFACT_NOT_FOUND) when there is nothing at ``path``."""
        path = _dir_path(path)
        root = Path(dst_path) if dst_path is not None else Path(tempfile.mkdtemp(prefix="tl-"))
        root.mkdir(parents=True, exist_ok=True)
        found = self.list_artifacts(
            run_id, path, recursive=True, timeout=timeout, metadata=metadata
        )
        if path and len(found) == 1 and found[0].path == path:  # a file
            target = root / posixpath.basename(path)
            jobs = [(found[0], target)]
        elif path and not found:
            raise NotFound(
                f"run {run_id!r} has no artifact at {path!r}",
                grpc.StatusCode.NOT_FOUND,
                "ARTIFACT_NOT_FOUND",
            )
        else:
            target = root / posixpath.basename(path) if path else root
            target.mkdir(parents=True, exist_ok=True)
            jobs = [(f, local_target(target, f.path[len(path) :].lstrip("/"))) for f in found]
        in_parallel(
            lambda job: self._download(run_id, job[0], job[1], progress, timeout, metadata),
            jobs,
        )
        return str(target)

    def delete_artifacts(
        self, run_id: str, path: str = "", *, timeout: float | None = None, metadata: Metadata = ()
    ) -> int:
        """Deletes the file or directory at ``path`` ("" for every artifact of the run) and
        returns how many files went; NotFound (ARTIFACT_NOT_FOUND) when there is nothing."""
        req = apb.DeleteArtifactRequest(run_id=run_id, path=_dir_path(path))
        resp = self.artifact_calls.DeleteArtifact(req, timeout=timeout, metadata=metadata)
        return resp.deleted_files

    def transfer_timeout(self, size: int, timeout: float | None) -> float | None:
        """The deadline of one attempt to move ``size`` bytes: ``timeout`` when given, else
        the client's timeout plus the time ``size`` takes at ``SLOWEST_RATE``."""
        if timeout is not None:
            return timeout
        base = self.transport.timeout
        return None if base is None else base + size / SLOWEST_RATE

    def _upload(
        self,
        run_id: str,
        local: str,
        path: str,
        progress: Progress | None,
        timeout: float | None,
        metadata: Metadata,
    ) -> None:
        size, sha256 = file_digest(local)
        if progress is not None:
            progress.expect(size)
        if size >= self.presigned_threshold and self.presigned_available:
            direct = _presigned.DirectTransfer(self, run_id, path, progress, metadata)
            if direct.upload(local, size, sha256):
                return
        header = apb.UploadArtifactHeader(
            run_id=run_id, path=path, size=size, sha256=sha256, request_id=uuid.uuid4().hex
        )
        sent = [0]  # bytes the current attempt gave gRPC, taken back when it is retried

        def send(first: apb.UploadArtifactRequest, **kwargs: object) -> apb.UploadArtifactResponse:
            if progress is not None and sent[0]:
                progress.advance(-sent[0])
            sent[0] = 0
            stub = self.transport.stubs.artifacts
            return stub.UploadArtifact(_upload_requests(first, local, progress, sent), **kwargs)  # type: ignore[no-any-return]

        self.transport.call(
            send,
            apb.UploadArtifactRequest(header=header),
            retry=True,
            timeout=self.transfer_timeout(size, timeout),
            metadata=metadata,
        )

    def _download(
        self,
        run_id: str,
        info: FileInfo,
        target: Path,
        progress: Progress | None,
        timeout: float | None,
        metadata: Metadata,
    ) -> None:
        size = info.file_size or 0
        target.parent.mkdir(parents=True, exist_ok=True)
        if progress is not None:
            progress.expect(size)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part")
        try:
            with open(partial, "wb") as out:
                direct = _presigned.DirectTransfer(self, run_id, info.path, progress, metadata)
                wanted = size >= self.presigned_threshold and self.presigned_available
                if not (wanted and direct.download(out)):
                    self._receive(run_id, info.path, out, progress, timeout, metadata)
            os.replace(partial, target)
        finally:
            if partial.exists():
                partial.unlink()

    def _receive(
        self,
        run_id: str,
        path: str,
        out: IO[bytes],
        progress: Progress | None,
        timeout: float | None,
        metadata: Metadata,
    ) -> None:
        """Downloads ``path`` into ``out`` through the server, opening the stream again from
        the bytes received after a break (for up to the client's ``retry_seconds`` without
        progress), and checks what arrived against the file's size and SHA-256. A file
        replaced between two attempts is downloaded again from its start."""
        received = _Received(out, progress)
        backoff = BACKOFF_START
        deadline = time.monotonic() + self.transport.retry_seconds
        while True:
            req = apb.DownloadArtifactRequest(run_id=run_id, path=path, offset=received.offset)
            try:
                stream = self.artifact_calls.DownloadArtifact(
                    req, timeout=self.transfer_timeout(received.left, timeout), metadata=metadata
                )
                with stream:
                    for resp in stream:
                        received.add(resp)
                break
            except TracklineError as err:
                if received.progressed():
                    backoff = BACKOFF_START
                    deadline = time.monotonic() + self.transport.retry_seconds
                left = deadline - time.monotonic()
                if not retryable(err) or left <= 0:
                    raise
                time.sleep(min(left, backoff * (0.5 + random.random())))
                backoff = min(backoff * 2, BACKOFF_MAX)
            except _Replaced:
                received.restart()
        received.check(path)


class _Replaced(Exception):
    """The file changed between two attempts of a download."""


class _Received:
    """What a download received so far: its bytes written to ``out`` and hashed."""

    def __init__(self, out: IO[bytes], progress: Progress | None) -> None:
        self.out = out
        self.progress = progress
        self.file: apb.ArtifactFile | None = None
        self.digest = hashlib.sha256()
        self.offset = self.at_last_look = 0

    def restart(self) -> None:
        """Forgets everything received, to download the file again from its start."""
        if self.progress is not None:
            self.progress.advance(-self.offset)
        self.out.seek(0)
        self.out.truncate()
        self.file = None
        self.digest = hashlib.sha256()
        self.offset = self.at_last_look = 0

    @property
    def left(self) -> int:
        return (self.file.size if self.file is not None else 0) - self.offset

    def add(self, resp: apb.DownloadArtifactResponse) -> None:
        if resp.HasField("file"):
            if self.file is not None and (resp.file.size, resp.file.sha256) != (
                self.file.size,
                self.file.sha256,
            ):
                raise _Replaced
            self.file = resp.file
        if resp.offset != self.offset:
            raise TracklineError(
                f"the server sent bytes from {resp.offset} where {self.offset} was due",
                grpc.StatusCode.DATA_LOSS,
            )
        self.out.write(resp.chunk)
        self.digest.update(resp.chunk)
        self.offset += len(resp.chunk)
        if self.progress is not None:
            self.progress.advance(len(resp.chunk))

    def progressed(self) -> bool:
        """Whether bytes arrived since the last look."""
        moved, self.at_last_look = self.offset != self.at_last_look, self.offset
        return moved

    def check(self, path: str) -> None:
        if self.file is None or (self.offset, self.digest.hexdigest()) != (
            self.file.size,
            self.file.sha256,
        ):
            raise TracklineError(
                f"the download of {path!r} does not match its size and SHA-256",
                grpc.StatusCode.DATA_LOSS,
                "ARTIFACT_CHECKSUM_MISMATCH",
            )


def _upload_requests(
    first: apb.UploadArtifactRequest, local: str, progress: Progress | None, sent: list[int]
) -> Iterator[apb.UploadArtifactRequest]:
    """The header, then the file's bytes in chunks read as gRPC takes them."""
    yield first
    with open(local, "rb") as src:
        while chunk := src.read(CHUNK_BYTES):
            yield apb.UploadArtifactRequest(chunk=chunk)
            sent[0] += len(chunk)
            if progress is not None:
                progress.advance(len(chunk))


def _join(artifact_path: str | None, name: str) -> str:
    return f"{artifact_path.rstrip('/')}/{name}" if artifact_path else name


def _dir_path(path: str | None) -> str:
    """A path as the server takes it: trailing '/'s dropped (the rest is the server's to
    check: "/" stays, and is refused)."""
    return (path or "").rstrip("/") or (path or "")


def _file_info(f: apb.ArtifactFile) -> FileInfo:
    if f.is_dir:
        return FileInfo(f.path, True, None, None)
    return FileInfo(f.path, False, f.size, f.sha256)


__all__ = ["ArtifactCalls", "ArtifactMethods", "FileInfo"]
