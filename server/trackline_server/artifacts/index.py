"""The index of each run's visible artifact files (``artifact_files``) and of the open
direct uploads (``artifact_uploads``). Functions take a connection inside an open
transaction and never commit.

Listings read the index, not the storage: a file is in it only once all of its bytes are
stored and checked, so a partial upload never shows, and S3 needs no listing calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ColumnElement
from trackline.v1 import artifacts_pb2 as apb

from ..errors import FailedPrecondition, NotFound, shown
from ..models import artifact_files, artifact_uploads
from .paths import ancestors, invalid_path

_F = artifact_files.c
_U = artifact_uploads.c


@dataclass(frozen=True)
class FileRow:
    path: str
    size: int
    sha256: str
    update_time: int


@dataclass(frozen=True)
class UploadRow:
    upload_id: str
    run_id: str
    path: str
    size: int
    sha256: str
    part_size: int
    storage_id: str
    expire_time: int


def _under(directory: str) -> ColumnElement[bool]:
    """The files under ``directory`` ("" is the run's root: every file)."""
    if not directory:
        return _F.path.is_not(None)
    prefix = directory + "/"
    return func.substr(_F.path, 1, len(prefix)) == prefix


async def get(conn: AsyncConnection, run_id: str, path: str) -> FileRow | None:
    row = (
        await conn.execute(
            select(_F.path, _F.size, _F.sha256, _F.update_time).where(
                _F.run_id == run_id, _F.path == path
            )
        )
    ).first()
    return None if row is None else FileRow(*row)


async def file_above(conn: AsyncConnection, run_id: str, directories: list[str]) -> str | None:
    """The first of ``directories`` that is a file of the run, or None."""
    if not directories:
        return None
    found = await conn.scalars(select(_F.path).where(_F.run_id == run_id, _F.path.in_(directories)))
    return min(found, key=len, default=None)


async def has_files_under(conn: AsyncConnection, run_id: str, path: str) -> bool:
    """Whether the run has files under ``path``."""
    found = await conn.scalar(select(_F.path).where(_F.run_id == run_id, _under(path)).limit(1))
    return found is not None


async def under(conn: AsyncConnection, run_id: str, directory: str) -> list[FileRow]:
    """The files under ``directory``, ordered by path (code point order, as Python sorts:
    the database's collation may differ)."""
    result = await conn.execute(
        select(_F.path, _F.size, _F.sha256, _F.update_time).where(
            _F.run_id == run_id, _under(directory)
        )
    )
    return sorted((FileRow(*row) for row in result), key=lambda f: f.path)


async def put(conn: AsyncConnection, run_id: str, file: FileRow) -> None:
    """Records ``file`` as visible, replacing the row of its path."""
    await conn.execute(delete(artifact_files).where(_F.run_id == run_id, _F.path == file.path))
    await conn.execute(
        insert(artifact_files).values(
            run_id=run_id,
            path=file.path,
            size=file.size,
            sha256=file.sha256,
            update_time=file.update_time,
        )
    )


async def remove(conn: AsyncConnection, run_id: str, path: str) -> list[str]:
    """Deletes the rows of the file at ``path`` or of every file under it ("" for all of
    the run's); returns their paths."""
    where = and_(_F.run_id == run_id, or_(_F.path == path, _under(path)))
    paths = list(await conn.scalars(select(_F.path).where(where)))
    if paths:
        await conn.execute(delete(artifact_files).where(where))
    return paths


async def add_upload(conn: AsyncConnection, upload: UploadRow) -> None:
    await conn.execute(insert(artifact_uploads).values(**upload.__dict__))


async def get_upload(conn: AsyncConnection, upload_id: str) -> UploadRow | None:
    row = (
        await conn.execute(
            select(
                _U.upload_id, _U.run_id, _U.path, _U.size, _U.sha256, _U.part_size,
                _U.storage_id, _U.expire_time,
            ).where(_U.upload_id == upload_id)
        )
    ).first()  # fmt: skip
    return None if row is None else UploadRow(*row)


async def remove_upload(conn: AsyncConnection, upload_id: str) -> bool:
    """Deletes the upload's row; False when another call did first."""
    result = await conn.execute(delete(artifact_uploads).where(_U.upload_id == upload_id))
    return bool(result.rowcount)


def file_message(file: FileRow) -> apb.ArtifactFile:
    return apb.ArtifactFile(
        path=file.path, size=file.size, sha256=file.sha256, update_time=file.update_time
    )


async def check_place(conn: AsyncConnection, run_id: str, path: str, field_name: str) -> None:
    """A file may go to ``path``: no file of the run is where a directory of it would be,
    and ``path`` is not a directory of the run's."""
    blocking = await file_above(conn, run_id, ancestors(path))
    if blocking is not None:
        raise invalid_path(path, f"lies under {shown(blocking)}, which is a file", field_name)
    if await has_files_under(conn, run_id, path):
        raise is_directory(path)


def is_directory(path: str) -> FailedPrecondition:
    return FailedPrecondition(
        "ARTIFACT_IS_DIRECTORY",
        f"artifact path {shown(path)} is a directory; list it, then use its files",
    )


def not_found(run_id: str, path: str) -> NotFound:
    return NotFound(
        "ARTIFACT_NOT_FOUND", f"run {shown(run_id)} has no artifact at {shown(path)}", "path"
    )
