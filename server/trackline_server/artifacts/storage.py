"""Where a run's artifact files live, behind one interface, open to more backends.

A run's root is a URI (``Run.artifact_uri``, parsed by ``artifact_roots.py``): a local path
or ``file://`` URI (``local.py``) or ``s3://bucket/prefix`` (``s3.py``).
``backends.Storages.at(uri)`` gives the ``RunStorage`` of one run's root; the service
(``service.py``) checks paths, sizes and checksums and keeps the index of visible files
(``index.py``), a backend only moves bytes. Backends run their blocking calls on the
artifact thread pool, never on the event loop.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from ..errors import FailedPrecondition


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
