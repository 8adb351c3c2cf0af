"""ArtifactService: a run's files, uploaded and downloaded through the server (proxied) or
straight to storage with presigned URLs (``direct.py``), written once for every transport
(``transport/grpc_server.py`` serves it).

Every method is ``@own_transactions``: a transfer must not hold a transaction while bytes
flow, so each opens short ones of its own (shielded: a client that goes away mid-call does
not cut a statement short). A file becomes visible in two steps: storage makes it visible
atomically (``Upload.commit``) once its size and SHA-256 are checked, then the index
(``index.py``) records it; listings read the index. The run's root is its ``artifact_uri``,
so an experiment's own artifact location is honoured. A soft-deleted run's artifacts are
read-only (FAILED_PRECONDITION RUN_DELETED).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import TypeVar

from trackline.v1 import artifacts_pb2 as apb

from .. import idempotency, page_tokens, validation
from ..clock import now_ms
from ..database import Database
from ..errors import InvalidArgument, shown
from ..shield import shielded
from ..tracking import runs
from ..transport import Call, own_transactions
from . import index
from .backends import Storages
from .checks import check_sha256, check_size, page_offset, page_size
from .direct import DirectUploads
from .index import FileRow, check_place, file_message, is_directory, not_found
from .locks import PathLocks
from .paths import check_path, join
from .storage import Upload

T = TypeVar("T")
UPLOAD = "UploadArtifact"


def malformed(why: str) -> InvalidArgument:
    return InvalidArgument("MALFORMED_REQUEST", f"the UploadArtifact stream {why}")


def size_mismatch(path: str, declared: int, received: int) -> InvalidArgument:
    return InvalidArgument(
        "ARTIFACT_SIZE_MISMATCH",
        f"{shown(path)}: the header declares {declared} bytes, the stream sent"
        f" {'more' if received > declared else received}; nothing was stored",
        "header.size",
    )


def _resource(run_id: str, file: FileRow) -> str:
    """What an upload's request id records: enough to answer a retry with the first
    upload's result, and to tell a retry of another file (REQUEST_ID_REUSED)."""
    digest = hashlib.sha256(file.path.encode()).hexdigest()[:16]
    return f"{run_id}:{file.update_time}:{file.sha256}:{digest}:{file.size}"


class ArtifactService:
    def __init__(self, db: Database, storages: Storages) -> None:
        self.db = db
        self.storages = storages
        self.direct = DirectUploads(db, storages)
        self.path_locks = PathLocks()

    async def _read(self, run_id: str, path: str) -> tuple[runs.RunRow, FileRow | None, bool]:
        """The run, its file at ``path`` (None when absent) and whether ``path`` is one of
        its directories instead."""
        async with self.db.read() as conn:
            run = await runs.get_row(conn, run_id)
            file = await index.get(conn, run_id, path) if path else None
            directory = file is None and await index.has_files_under(conn, run_id, path)
            return run, file, directory

    async def _file(self, run_id: str, path: str) -> tuple[runs.RunRow, FileRow]:
        """The run and its file at ``path``: ARTIFACT_IS_DIRECTORY for a directory,
        ARTIFACT_NOT_FOUND when there is nothing."""
        run, file, directory = await shielded(self._read(run_id, path))
        if directory:
            raise is_directory(path)
        if file is None:
            raise not_found(run_id, path)
        return run, file

    @own_transactions
    async def upload_artifact(
        self, requests: AsyncIterator[apb.UploadArtifactRequest], call: Call
    ) -> apb.UploadArtifactResponse:
        stream = aiter(requests)
        first = await anext(stream, None)
        if first is None or first.WhichOneof("body") != "header":
            raise malformed("must start with the header")
        head = first.header
        path = check_path(head.path, "header.path")
        sha256 = check_sha256(head.sha256, "header.sha256")
        size = check_size(head.size, "header.size")
        rid = head.request_id
        validation.check_request_id(rid, "header.request_id")
        run, done = await shielded(self._start_upload(head.run_id, path, rid))
        if done is not None:
            return apb.UploadArtifactResponse(file=done)
        upload = await self.storages.at(run.artifact_uri).open_upload(path, size)
        loop = asyncio.get_running_loop()
        digest = hashlib.sha256()
        received = 0
        try:
            async for message in stream:
                if message.WhichOneof("body") != "chunk":
                    raise malformed("has a second header; send one file per call")
                chunk = message.chunk
                del message  # its bytes are another copy of the chunk's
                received += len(chunk)
                if received > size:
                    raise size_mismatch(path, size, received)
                # Hashing (hashlib lets go of the GIL) beside the write, on two threads.
                hashed = loop.run_in_executor(self.storages.executor, digest.update, chunk)
                await asyncio.gather(hashed, upload.write(chunk))
                del chunk, hashed  # held while the next message arrives, they would add up
            if received != size:
                raise size_mismatch(path, size, received)
            if digest.hexdigest() != sha256:
                raise InvalidArgument(
                    "ARTIFACT_CHECKSUM_MISMATCH",
                    f"{shown(path)}: the bytes received do not hash to the header's sha256;"
                    " nothing was stored",
                    "header.sha256",
                )
        except BaseException:
            await upload.abort()
            raise
        file = FileRow(path, size, sha256, now_ms())
        async with self.path_locks.hold(head.run_id, path):
            await shielded(self._commit_upload(upload, head.run_id, file, rid))
        return apb.UploadArtifactResponse(file=file_message(file))

    async def _commit_upload(self, upload: Upload, run_id: str, file: FileRow, rid: str) -> None:
        """Makes the upload's file visible in storage, then in the index (one path at a time:
        ``PathLocks``)."""
        try:
            await upload.commit()
        except BaseException:
            await upload.abort()
            raise
        await self._record_upload(run_id, file, rid)

    async def _start_upload(
        self, run_id: str, path: str, rid: str
    ) -> tuple[runs.RunRow, apb.ArtifactFile | None]:
        """The run (live), and the first result of an upload with request id ``rid`` when
        there was one."""
        async with self.db.write() as conn:
            run = await runs.get_active(conn, run_id)
            done = rid and await idempotency.applied(conn, rid, UPLOAD)
            if done:
                owner, update_time, sha256, digest, size = done.split(":")
                if owner != run_id or digest != hashlib.sha256(path.encode()).hexdigest()[:16]:
                    raise idempotency.reused(rid, "an upload of another file")
                stored = apb.ArtifactFile(
                    path=path, size=int(size), sha256=sha256, update_time=int(update_time)
                )
                return run, stored
            await check_place(conn, run_id, path, "header.path")
            return run, None

    async def _record_upload(self, run_id: str, file: FileRow, rid: str) -> None:
        async with self.db.write() as conn:
            await index.put(conn, run_id, file)
            if rid:
                await idempotency.record(conn, rid, UPLOAD, _resource(run_id, file))

    @own_transactions
    async def download_artifact(
        self, request: apb.DownloadArtifactRequest, call: Call
    ) -> AsyncIterator[apb.DownloadArtifactResponse]:
        path = check_path(request.path)
        run, file = await self._file(request.run_id, path)
        offset = request.offset
        if not 0 <= offset <= file.size:
            raise InvalidArgument(
                "INVALID_OFFSET",
                f"offset {offset} is not from 0 to the file's size, {file.size}",
                "offset",
            )
        # The file goes with the first chunk (alone for a download from its end).
        described: apb.ArtifactFile | None = file_message(file)
        if offset == file.size:
            yield apb.DownloadArtifactResponse(file=described, offset=offset)
            return
        async for chunk in self.storages.at(run.artifact_uri).read(path, offset):
            yield apb.DownloadArtifactResponse(file=described, chunk=chunk, offset=offset)
            described = None
            offset += len(chunk)
            del chunk  # not held while the next one is read

    @own_transactions
    async def list_artifacts(
        self, request: apb.ListArtifactsRequest, call: Call
    ) -> apb.ListArtifactsResponse:
        directory = check_path(request.path, allow_root=True)
        limit = page_size(request.page_size)
        start, made_for = page_offset(
            request.page_token, request.run_id, directory, request.recursive
        )
        run, entries, more = await shielded(
            self._entries(request.run_id, directory, request.recursive, start, limit)
        )
        reply = apb.ListArtifactsResponse(root_uri=run.artifact_uri)
        reply.files.extend(entries)
        if more:
            reply.next_page_token = page_tokens.encode({"o": start + limit}, made_for)
        return reply

    async def _entries(
        self, run_id: str, directory: str, recursive: bool, start: int, limit: int
    ) -> tuple[runs.RunRow, list[apb.ArtifactFile], bool]:
        """A page of the listing: files (and, one level deep, directories) by path, from
        entry ``start`` on, and whether more follow. A recursive page is read as a page
        from the index; one level deep, every file under the directory is read to gather
        its directories."""
        async with self.db.read() as conn:
            run = await runs.get_row(conn, run_id)
            exact = await index.get(conn, run_id, directory) if directory else None
            if exact is not None:
                return run, [file_message(exact)][start : start + limit], False
            if recursive:
                files = await index.page_under(conn, run_id, directory, start, limit + 1)
                found = [file_message(f) for f in files[:limit]]
                return run, found, len(files) > limit
            files = await index.under(conn, run_id, directory)
        cut = len(directory) + 1 if directory else 0
        entries: dict[str, apb.ArtifactFile] = {}
        for f in files:
            name, below, _ = f.path[cut:].partition("/")
            if below:
                entries.setdefault(name, apb.ArtifactFile(path=join(directory, name), is_dir=True))
            else:
                entries[name] = file_message(f)
        page = [entries[name] for name in sorted(entries)[start : start + limit]]
        return run, page, start + limit < len(entries)

    @own_transactions
    async def delete_artifact(
        self, request: apb.DeleteArtifactRequest, call: Call
    ) -> apb.DeleteArtifactResponse:
        path = check_path(request.path, allow_root=True)
        run, removed = await shielded(self._unindex(request.run_id, path))
        if removed:
            await shielded(self.storages.at(run.artifact_uri).delete(removed))
        return apb.DeleteArtifactResponse(deleted_files=len(removed))

    async def _unindex(self, run_id: str, path: str) -> tuple[runs.RunRow, list[str]]:
        """Takes the files at or under ``path`` out of the index (they are no longer
        visible once this commits) and returns their paths, for storage to delete."""
        async with self.db.write() as conn:
            run = await runs.get_active(conn, run_id)
            removed = await index.remove(conn, run_id, path)
            if path and not removed:
                raise not_found(run_id, path)
            return run, removed

    @own_transactions
    async def create_artifact_upload_urls(
        self, request: apb.CreateArtifactUploadUrlsRequest, call: Call
    ) -> apb.CreateArtifactUploadUrlsResponse:
        return await self.direct.create(request)

    @own_transactions
    async def complete_artifact_upload(
        self, request: apb.CompleteArtifactUploadRequest, call: Call
    ) -> apb.CompleteArtifactUploadResponse:
        file = await self.direct.complete(request)
        return apb.CompleteArtifactUploadResponse(file=file_message(file))

    @own_transactions
    async def abort_artifact_upload(
        self, request: apb.AbortArtifactUploadRequest, call: Call
    ) -> apb.AbortArtifactUploadResponse:
        await self.direct.abort(request.upload_id)
        return apb.AbortArtifactUploadResponse()

    @own_transactions
    async def create_artifact_download_url(
        self, request: apb.CreateArtifactDownloadUrlRequest, call: Call
    ) -> apb.CreateArtifactDownloadUrlResponse:
        path = check_path(request.path)
        run, file = await self._file(request.run_id, path)
        url, expire_time = await self.direct.download_url(run.artifact_uri, path)
        return apb.CreateArtifactDownloadUrlResponse(
            url=url, expire_time=expire_time, file=file_message(file)
        )
