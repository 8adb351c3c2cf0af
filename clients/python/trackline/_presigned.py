"""Direct transfers of big files between the client and the storage (S3) through presigned
URLs the server hands out, with ``urllib`` (no HTTP library beyond the standard one).

An upload asks for one URL per part (CreateArtifactUploadUrls), PUTs the parts a few at a
time, streaming each from the file, and completes the upload with their ETags
(CompleteArtifactUpload); any failure aborts it (AbortArtifactUpload), so nothing becomes
visible. A download GETs the file from its URL into the caller's file and checks its size
and SHA-256. When the server offers no presigned URLs (FAILED_PRECONDITION
PRESIGNED_URLS_UNAVAILABLE) or the storage cannot be reached from here, the transfer answers
False, the caller goes through the server instead, and the client stops asking
(``presigned_available``).
"""

from __future__ import annotations

import hashlib
import logging
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING

import grpc

from trackline.v1 import artifacts_pb2 as apb

from ._exceptions import FailedPrecondition, TracklineError
from ._progress import Progress
from ._transport import Metadata

if TYPE_CHECKING:
    from ._artifacts import ArtifactMethods

PARALLEL_PARTS = 4
READ_BYTES = 1024 * 1024
HTTP_TIMEOUT = 60.0  # seconds a socket operation of a PUT or GET may wait
logger = logging.getLogger("trackline")


class DirectTransfer:
    """One file's transfer straight to or from storage, for ``client`` (its
    ``artifact_calls``; ``presigned_available`` turns False when this cannot work)."""

    def __init__(
        self,
        client: ArtifactMethods,
        run_id: str,
        path: str,
        progress: Progress | None,
        metadata: Metadata,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.path = path
        self.progress = progress
        self.metadata = metadata
        self.moved = 0  # bytes reported to progress, taken back when falling back

    def upload(self, local: str, size: int, sha256: str) -> bool:
        """Uploads ``local`` (of ``size`` bytes hashing to ``sha256``) to the run's ``path``;
        False, with nothing stored, when it must go through the server instead."""
        calls = self.client.artifact_calls
        req = apb.CreateArtifactUploadUrlsRequest(
            run_id=self.run_id, path=self.path, size=size, sha256=sha256
        )
        try:
            started = calls.CreateArtifactUploadUrls(req, metadata=self.metadata)
        except FailedPrecondition as err:
            return self._unavailable(err)
        abort = apb.AbortArtifactUploadRequest(upload_id=started.upload_id)
        try:
            with ThreadPoolExecutor(PARALLEL_PARTS, "trackline-parts") as pool:
                etags = list(pool.map(lambda part: self._put(local, part), started.parts))
        except OSError as err:  # urllib's URLError and HTTPError included
            calls.AbortArtifactUpload(abort, metadata=self.metadata)
            return self._unreachable(err)
        except BaseException:
            calls.AbortArtifactUpload(abort, metadata=self.metadata)
            raise
        done = [
            apb.CompletedPart(part_number=part.part_number, etag=etag)
            for part, etag in zip(started.parts, etags, strict=True)
        ]
        complete = apb.CompleteArtifactUploadRequest(upload_id=started.upload_id, parts=done)
        calls.CompleteArtifactUpload(complete, metadata=self.metadata)
        return True

    def download(self, out: IO[bytes]) -> bool:
        """Downloads the run's ``path`` into ``out`` (empty) and checks it; False, with
        ``out`` emptied again, when it must go through the server instead."""
        req = apb.CreateArtifactDownloadUrlRequest(run_id=self.run_id, path=self.path)
        try:
            got = self.client.artifact_calls.CreateArtifactDownloadUrl(req, metadata=self.metadata)
        except FailedPrecondition as err:
            return self._unavailable(err)
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(got.url, timeout=HTTP_TIMEOUT) as resp:
                while chunk := resp.read(READ_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    self._advance(len(chunk))
        except OSError as err:
            out.seek(0)
            out.truncate()
            return self._unreachable(err)
        if (out.tell(), digest.hexdigest()) != (got.file.size, got.file.sha256):
            raise TracklineError(
                f"the download of {self.path!r} from storage does not match its size and SHA-256",
                grpc.StatusCode.DATA_LOSS,
                "ARTIFACT_CHECKSUM_MISMATCH",
            )
        return True

    def _put(self, local: str, part: apb.UploadPart) -> str:
        """PUTs one part, streamed from the file; the ETag storage answered."""
        with open(local, "rb") as src:
            src.seek(part.offset)
            body = _FileSlice(src, part.size, self._advance)
            request = urllib.request.Request(
                part.url, data=body, method="PUT", headers={"Content-Length": str(part.size)}
            )
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as resp:
                return str(resp.headers.get("ETag", ""))

    def _advance(self, nbytes: int) -> None:
        self.moved += nbytes
        if self.progress is not None:
            self.progress.advance(nbytes)

    def _unavailable(self, err: FailedPrecondition) -> bool:
        if err.reason != "PRESIGNED_URLS_UNAVAILABLE":
            raise err
        self.client.presigned_available = False
        return False

    def _unreachable(self, err: OSError) -> bool:
        logger.warning(
            "trackline: the artifact storage cannot be reached from here (%s); transferring"
            " through the server from now on",
            err,
        )
        self.client.presigned_available = False
        if self.progress is not None and self.moved:
            self.progress.advance(-self.moved)
        self.moved = 0
        return False


class _FileSlice:
    """``size`` bytes of an open file from where it stands, read as ``http.client`` sends a
    body. It hands out at least ``READ_BYTES`` per read, more than the 8 KiB blocks
    ``http.client`` asks for, which it sends as they come."""

    def __init__(self, src: IO[bytes], size: int, advance: Callable[[int], None]) -> None:
        self.src = src
        self.left = size
        self.advance = advance

    def read(self, n: int = -1) -> bytes:
        want = self.left if n < 0 else min(self.left, max(n, READ_BYTES))
        chunk = self.src.read(want)
        self.left -= len(chunk)
        self.advance(len(chunk))
        return chunk


__all__ = ["DirectTransfer"]
