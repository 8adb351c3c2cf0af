"""Where a run's artifact files live, behind one interface, open to more backends.

A run's root is a URI (``Run.artifact_uri``): a local path or ``file://`` URI (``local.py``)
or ``s3://bucket/prefix`` (``s3.py``). ``Storages.at(uri)`` gives the ``RunStorage`` of one
run's root; the service (``service.py``) checks paths, sizes and checksums and keeps the
index of visible files (``index.py``), a backend only moves bytes. Backends run their
blocking calls on the artifact thread pool, never on the event loop.
"""

from __future__ import annotations

import abc
import os
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from .. import limits
from ..errors import FailedPrecondition, InvalidArgument, Unavailable, shown

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

S3_SCHEMES = ("s3",)


class Upload(abc.ABC):
    """One file being written: nothing of it is visible until ``commit``; ``abort`` (after
    any failure) leaves the path as it was."""

    @abc.abstractmethod
    async def write(self, chunk: bytes) -> None:
        """Appends the next bytes, in order."""

    @abc.abstractmethod
    async def commit(self) -> None:
        """Makes the file visible at its path, replacing what was there atomically."""

    @abc.abstractmethod
    async def abort(self) -> None:
        """Drops what was written. Safe after a failed ``write`` or ``commit``."""


@dataclass(frozen=True)
class PresignedPart:
    part_number: int
    url: str
    offset: int
    size: int


@dataclass(frozen=True)
class DirectUpload:
    """A multipart upload started in storage: ``storage_id`` names it there."""

    storage_id: str
    parts: list[PresignedPart]


class RunStorage(abc.ABC):
    """The files under one run's artifact root. Paths are checked (``paths.check_path``)
    before they get here."""

    @abc.abstractmethod
    async def open_upload(self, path: str, size: int) -> Upload:
        """Starts writing the file at ``path`` (``size`` bytes will follow)."""

    @abc.abstractmethod
    def read(self, path: str, offset: int) -> AsyncIterator[bytes]:
        """The file's bytes from ``offset`` on, in chunks of at most ARTIFACT_CHUNK_BYTES."""

    @abc.abstractmethod
    async def delete(self, paths: Sequence[str]) -> None:
        """Deletes the files at ``paths``; one already gone is no error."""

    def presigned(self) -> bool:
        """Whether this storage hands out presigned URLs."""
        return False

    async def start_direct_upload(
        self, path: str, size: int, part_size: int, expires_s: int
    ) -> DirectUpload:
        """Starts a multipart upload with a presigned URL per part."""
        raise presigned_unavailable()

    async def part_urls(
        self, path: str, storage_id: str, size: int, part_size: int, expires_s: int
    ) -> list[PresignedPart]:
        """The presigned part URLs of an open direct upload again (a retried create)."""
        raise presigned_unavailable()

    async def complete_direct_upload(
        self, path: str, storage_id: str, size: int, part_size: int, etags: Sequence[str]
    ) -> None:
        """Checks every part arrived with its size and makes the file visible."""
        raise presigned_unavailable()

    async def abort_direct_upload(self, path: str, storage_id: str) -> None:
        """Frees the parts stored so far."""
        raise presigned_unavailable()

    async def download_url(self, path: str, expires_s: int) -> str:
        """A presigned GET of the file."""
        raise presigned_unavailable()


def presigned_unavailable() -> FailedPrecondition:
    return FailedPrecondition(
        "PRESIGNED_URLS_UNAVAILABLE",
        "this run's artifact storage hands out no presigned URLs; transfer through"
        " UploadArtifact and DownloadArtifact",
    )


def part_layout(size: int, part_size: int) -> list[tuple[int, int]]:
    """(offset, size) of each part of a ``size``-byte file cut in ``part_size`` parts; one
    (empty) part for an empty file, as S3 needs at least one."""
    if size == 0:
        return [(0, 0)]
    return [(o, min(part_size, size - o)) for o in range(0, size, part_size)]


@dataclass(frozen=True)
class Root:
    """A parsed artifact root: ``scheme`` "file" with ``location`` a local absolute path, or
    "s3" with ``location`` the bucket and ``prefix`` the key prefix (no trailing '/')."""

    scheme: str
    location: str
    prefix: str = ""


def parse_root(uri: str) -> Root | None:
    """The root ``uri`` names, or None for a scheme no backend serves."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in S3_SCHEMES:
        return Root("s3", parsed.netloc, parsed.path.strip("/"))
    if scheme == "file":
        return Root("file", os.path.abspath(unquote(parsed.path)))
    if len(scheme) > 1:  # a drive letter (C:) is a local path
        return None
    return Root("file", os.path.abspath(uri))


def check_location(location: str, server_root: str, field_name: str = "artifact_location") -> None:
    """An experiment's own artifact location: s3:// (with a bucket), or a local path (or
    file:// URI) under the server's local artifact root, since the server writes nowhere
    else on its disk. INVALID_ARTIFACT_LOCATION otherwise."""
    root = parse_root(location)
    if root is None:
        raise InvalidArgument(
            "INVALID_ARTIFACT_LOCATION",
            f"artifact_location {shown(location)} has a scheme no artifact storage serves;"
            " use s3://bucket/prefix or a path under the server's artifact root",
            field_name,
        )
    if root.scheme == "s3":
        if not root.location:
            raise InvalidArgument(
                "INVALID_ARTIFACT_LOCATION",
                f"artifact_location {shown(location)} names no bucket: s3://bucket/prefix",
                field_name,
            )
        return
    server = parse_root(server_root)
    if server is None or server.scheme != "file" or not _under(root.location, server.location):
        raise InvalidArgument(
            "INVALID_ARTIFACT_LOCATION",
            f"artifact_location {shown(location)} is not under the server's artifact root;"
            " a local location must lie inside it (or use s3://bucket/prefix)",
            field_name,
        )


def _under(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


class Storages:
    """The backends of one server process, and the thread pool their blocking calls run on.
    ``s3_endpoint_url`` (None: boto3's own settings) and the AWS environment configure S3;
    ``presigned_urls`` turns presigned URLs on or off."""

    def __init__(self, s3_endpoint_url: str | None = None, presigned_urls: bool = True) -> None:
        self.s3_endpoint_url = s3_endpoint_url
        self.presigned_urls = presigned_urls
        self.executor = ThreadPoolExecutor(
            max_workers=limits.ARTIFACT_IO_THREADS, thread_name_prefix="artifacts"
        )
        self._s3: S3Client | None = None

    def at(self, uri: str) -> RunStorage:
        """The storage of the run whose root is ``uri`` (its ``artifact_uri``)."""
        root = parse_root(uri)
        if root is None:
            raise Unavailable(
                "ARTIFACT_STORE_UNAVAILABLE",
                f"the run's artifact root {shown(uri)} has a scheme this server has no storage for",
            )
        if root.scheme == "s3":
            from . import s3  # boto3 is imported only by a server that stores in S3

            if self._s3 is None:
                self._s3 = s3.new_client(self.s3_endpoint_url)
            return s3.S3RunStorage(
                self._s3, root.location, root.prefix, self.executor, self.presigned_urls
            )
        from .local import LocalRunStorage

        return LocalRunStorage(Path(root.location), self.executor)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
