"""Artifacts in a local folder: the run's root is a directory, a file is a file under it.

An upload writes a temporary file beside its target (same directory, so the same file
system), fsyncs it and renames it over the target (``os.replace``): a reader sees the old
file or the new one, never a part. Every path is resolved before use and must stay under the
resolved run root, so a symlink (planted in the folder by someone with access to the disk)
cannot lead a write or a read elsewhere. Blocking calls run on the artifact thread pool.
"""

from __future__ import annotations

import asyncio
import errno
import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import TypeVar

from .. import limits
from ..errors import NotFound, ResourceExhausted, TracklineError, Unavailable
from .paths import invalid_path
from .storage import RunStorage, Upload

T = TypeVar("T")


def disk_error(exc: OSError) -> TracklineError:
    """What a caller gets for a failure of the local disk."""
    if exc.errno == errno.ENOENT:
        return NotFound("ARTIFACT_NOT_FOUND", "the file is missing from the artifact storage")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ResourceExhausted(
            "ARTIFACT_STORE_FULL",
            "the server's artifact storage is out of space; uploads fail until an operator"
            " frees space",
        )
    return Unavailable(
        "ARTIFACT_STORE_UNAVAILABLE",
        f"the server's artifact storage failed: {exc.strerror or type(exc).__name__}",
    )


class LocalRunStorage(RunStorage):
    def __init__(self, root: Path, executor: Executor) -> None:
        self.root = root
        self.executor = executor

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        except OSError as exc:
            raise disk_error(exc) from None

    def _inside(self, target: Path, path: str) -> Path:
        """``target`` resolved, refused unless it lies under the resolved run root."""
        resolved = target.resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise invalid_path(path, "leads out of the run's artifact root (a symlink)")
        return resolved

    def _existing(self, path: str) -> Path:
        """The file at ``path``, resolved and checked (``_inside``)."""
        return self._inside(self.root / path, path)

    def _prepare_directory(self, path: str) -> Path:
        """Creates the run root and the directories ``path`` lies in, one at a time, each
        checked (``_inside``) before anything is created under it; returns the resolved
        parent."""
        self.root.mkdir(parents=True, exist_ok=True)
        directory = self.root
        for name in path.split("/")[:-1]:
            directory = directory / name
            try:
                directory.mkdir(exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise invalid_path(path, "lies under a file, not a directory") from None
            directory = self._inside(directory, path)
        return self._inside(directory, path)

    async def open_upload(self, path: str, size: int) -> Upload:
        parent = await self._run(self._prepare_directory, path)
        target = parent / os.path.basename(path)
        temp = parent / f".{target.name}.{uuid.uuid4().hex}.upload"
        fd = await self._run(
            os.open, temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644
        )
        return _LocalUpload(self, path, fd, temp, target)

    async def read(self, path: str, offset: int) -> AsyncIterator[bytes]:
        target = await self._run(self._existing, path)
        fd = await self._run(os.open, target, os.O_RDONLY)
        try:
            while True:
                chunk = await self._run(os.pread, fd, limits.ARTIFACT_CHUNK_BYTES, offset)
                if not chunk:
                    return
                offset += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    async def delete(self, paths: Sequence[str]) -> None:
        await self._run(self._delete_all, list(paths))

    def _delete_all(self, paths: list[str]) -> None:
        """Unlinks each file (not what a symlink points to), then the directories that are
        left empty, up to the run root."""
        emptied: set[Path] = set()
        for path in paths:
            target = self.root / path
            parent = self._inside(target.parent, path)
            try:
                os.unlink(parent / target.name)
            except FileNotFoundError:
                pass
            emptied.add(parent)
        root = self.root.resolve()
        for directory in sorted(emptied, key=lambda p: len(p.parts), reverse=True):
            while directory != root and directory.is_relative_to(root):
                try:
                    directory.rmdir()
                except OSError:  # not empty (or gone)
                    break
                directory = directory.parent


class _LocalUpload(Upload):
    def __init__(
        self, store: LocalRunStorage, path: str, fd: int, temp: Path, target: Path
    ) -> None:
        self.store = store
        self.path = path
        self.fd = fd
        self.temp = temp
        self.target = target
        self.closed = False

    def _write_all(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            view = view[os.write(self.fd, view) :]

    async def write(self, chunk: bytes) -> None:
        await self.store._run(self._write_all, chunk)

    def _finish(self) -> None:
        os.fsync(self.fd)
        os.close(self.fd)
        self.closed = True
        if self.target.is_symlink() or self.target.is_dir():
            # Replacing a symlink would be safe (the link itself goes), a directory cannot
            # be replaced by a file: both mean the folder was changed behind the index.
            os.unlink(self.temp)
            raise invalid_path(self.path, "is a directory or a symlink on the server's disk")
        os.replace(self.temp, self.target)
        dir_fd = os.open(self.target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)

    async def commit(self) -> None:
        await self.store._run(self._finish)

    def _discard(self) -> None:
        if not self.closed:
            os.close(self.fd)
            self.closed = True
        try:
            os.unlink(self.temp)
        except FileNotFoundError:
            pass

    async def abort(self) -> None:
        # Shielded: an upload cancelled mid-stream must still remove its temporary file.
        await asyncio.shield(self.store._run(self._discard))
