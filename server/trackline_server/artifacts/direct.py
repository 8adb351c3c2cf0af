"""Direct transfers with presigned URLs, for storage that hands them out (S3): the client
PUTs a file's parts straight to storage, then completes the upload through the server, which
checks every part and makes the file visible; or GETs a file with a presigned URL.

An open upload is a row of ``artifact_uploads``, so any replica can complete or abort it; a
retried create with the same request id returns the same upload (with fresh URLs) while it
is open. The declared SHA-256 is recorded with the file: the bytes never pass the server.
"""

from __future__ import annotations

import uuid

from trackline.v1 import artifacts_pb2 as apb

from .. import idempotency, limits, validation
from ..clock import now_ms
from ..database import Database
from ..errors import InvalidArgument, NotFound, shown
from ..shield import shielded
from ..tracking import runs
from . import index
from .checks import check_sha256, check_size, part_size_for
from .index import FileRow, UploadRow, check_place
from .paths import check_path
from .storage import PresignedPart, RunStorage, Storages, part_layout, presigned_unavailable

CREATE = "CreateArtifactUploadUrls"


def upload_not_found(upload_id: str) -> NotFound:
    return NotFound(
        "UPLOAD_NOT_FOUND",
        f"no open direct upload has id {shown(upload_id)} (completed, aborted or expired);"
        " start again",
        "upload_id",
    )


def _parts(parts: list[PresignedPart]) -> list[apb.UploadPart]:
    return [
        apb.UploadPart(part_number=p.part_number, url=p.url, offset=p.offset, size=p.size)
        for p in parts
    ]


class DirectUploads:
    def __init__(self, db: Database, storages: Storages) -> None:
        self.db = db
        self.storages = storages

    def _presigning(self, run: runs.RunRow) -> RunStorage:
        storage = self.storages.at(run.artifact_uri)
        if not storage.presigned():
            raise presigned_unavailable()
        return storage

    async def create(
        self, request: apb.CreateArtifactUploadUrlsRequest
    ) -> apb.CreateArtifactUploadUrlsResponse:
        path = check_path(request.path)
        sha256 = check_sha256(request.sha256)
        size = check_size(request.size)
        part_size = part_size_for(size, request.part_size)
        rid = request.request_id
        validation.check_request_id(rid)
        run, open_upload = await shielded(self._start(request.run_id, path, rid))
        storage = self._presigning(run)
        ttl = limits.ARTIFACT_DIRECT_UPLOAD_TTL_S
        if open_upload is not None:
            parts = await storage.part_urls(
                path, open_upload.storage_id, open_upload.size, open_upload.part_size, ttl
            )
            return apb.CreateArtifactUploadUrlsResponse(
                upload_id=open_upload.upload_id,
                parts=_parts(parts),
                expire_time=open_upload.expire_time,
            )
        direct = await storage.start_direct_upload(path, size, part_size, ttl)
        upload = UploadRow(
            uuid.uuid4().hex,
            request.run_id,
            path,
            size,
            sha256,
            part_size,
            direct.storage_id,
            now_ms() + ttl * 1000,
        )
        await shielded(self._open(upload, rid))
        return apb.CreateArtifactUploadUrlsResponse(
            upload_id=upload.upload_id, parts=_parts(direct.parts), expire_time=upload.expire_time
        )

    async def _start(
        self, run_id: str, path: str, rid: str
    ) -> tuple[runs.RunRow, UploadRow | None]:
        """The run (live), and the upload an earlier create with ``rid`` opened if it is
        still open."""
        async with self.db.write() as conn:
            run = await runs.get_active(conn, run_id)
            done = rid and await idempotency.applied(conn, rid, CREATE)
            if done:
                upload = await index.get_upload(conn, done)
                if upload is not None and upload.expire_time > now_ms():
                    if upload.run_id != run_id or upload.path != path:
                        raise idempotency.reused(rid, "a direct upload of another file")
                    return run, upload
            await check_place(conn, run_id, path, "path")
            return run, None

    async def _open(self, upload: UploadRow, rid: str) -> None:
        async with self.db.write() as conn:
            await index.add_upload(conn, upload)
            if rid:
                await idempotency.record(conn, rid, CREATE, upload.upload_id)

    async def _open_upload(self, upload_id: str) -> tuple[UploadRow, runs.RunRow]:
        """The open, unexpired upload and its run (live: RUN_DELETED otherwise)."""
        async with self.db.write() as conn:
            upload = await index.get_upload(conn, upload_id) if upload_id else None
            if upload is None or upload.expire_time <= now_ms():
                raise upload_not_found(upload_id)
            return upload, await runs.get_active(conn, upload.run_id)

    async def complete(self, request: apb.CompleteArtifactUploadRequest) -> FileRow:
        upload, run = await shielded(self._open_upload(request.upload_id))
        layout = part_layout(upload.size, upload.part_size)
        numbers = [p.part_number for p in request.parts]
        if numbers != list(range(1, len(layout) + 1)):
            raise InvalidArgument(
                "INVALID_UPLOAD_PARTS",
                f"the upload has {len(layout)} parts; list each, numbered 1 to {len(layout)}"
                " in order, with the ETag its PUT returned",
                "parts",
            )
        storage = self._presigning(run)
        await storage.complete_direct_upload(
            upload.path,
            upload.storage_id,
            upload.size,
            upload.part_size,
            [p.etag for p in request.parts],
        )
        file = FileRow(upload.path, upload.size, upload.sha256, now_ms())
        await shielded(self._close(upload, file))
        return file

    async def _close(self, upload: UploadRow, file: FileRow) -> None:
        async with self.db.write() as conn:
            if await index.remove_upload(conn, upload.upload_id):
                await index.put(conn, upload.run_id, file)

    async def abort(self, upload_id: str) -> None:
        upload, run = await shielded(self._open_upload(upload_id))
        await self._presigning(run).abort_direct_upload(upload.path, upload.storage_id)
        async with self.db.write() as conn:
            await index.remove_upload(conn, upload_id)

    async def download_url(self, root_uri: str, path: str) -> tuple[str, int]:
        """A presigned GET of the file and when it expires (ms since the epoch)."""
        storage = self.storages.at(root_uri)
        if not storage.presigned():
            raise presigned_unavailable()
        ttl = limits.ARTIFACT_DOWNLOAD_URL_TTL_S
        return await storage.download_url(path, ttl), now_ms() + ttl * 1000
