"""Artifacts in S3 (or any S3-compatible store: MinIO, moto) through boto3.

The endpoint URL, region and credentials come from the usual AWS settings (environment,
config files, instance roles), the endpoint also from ``--s3-endpoint-url``. A proxied
upload below the part size is one PUT; above it, a multipart upload whose parts are sent as
the stream fills them (ARTIFACT_S3_PART_BYTES, more for files too large for 10,000 such
parts), so at most one part is held: the object appears only at CompleteMultipartUpload,
and any failure aborts it. Downloads are ranged GETs read in chunks. boto3 blocks, so every
call runs on the artifact thread pool. Its failures become the caller's errors here
(``store_error``): unreachable, refused credentials or no bucket is UNAVAILABLE
ARTIFACT_STORE_UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from .. import limits
from ..errors import InvalidArgument, NotFound, ResourceExhausted, TracklineError, Unavailable
from .checks import part_size_for
from .storage import DirectUpload, PresignedPart, RunStorage, Upload, part_layout

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")
_CREDENTIALS_REFUSED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
}
_BAD_PARTS = {"InvalidPart", "InvalidPartOrder", "EntityTooSmall"}


def new_client(endpoint_url: str | None) -> S3Client:
    """A boto3 S3 client from the usual AWS settings; path-style addressing when an
    endpoint is given (a local MinIO or moto has no per-bucket host names)."""
    import boto3
    from botocore.config import Config

    config = Config(
        max_pool_connections=limits.ARTIFACT_IO_THREADS,
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path"} if endpoint_url else None,
        # The server checks every byte's SHA-256 itself; boto3's default CRC of each body
        # (aws-chunked encoding) only added copies of each part in memory.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


def store_error(exc: Exception, bucket: str) -> TracklineError | None:
    """The caller's error for a failure of boto3, or None for anything else."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            return Unavailable(
                "ARTIFACT_STORE_UNAVAILABLE",
                f"the artifact storage has no bucket {bucket!r}; ask the operator to create it",
            )
        if code in ("NoSuchKey", "404", "NotFound"):
            return NotFound("ARTIFACT_NOT_FOUND", "the file is missing from the artifact storage")
        if code == "NoSuchUpload":
            return NotFound(
                "UPLOAD_NOT_FOUND", "the direct upload is no longer open in the storage"
            )
        if code in _BAD_PARTS:
            return InvalidArgument(
                "INVALID_UPLOAD_PARTS", f"the storage refused the parts ({code})", "parts"
            )
        if code in ("QuotaExceeded", "StorageFull"):
            return ResourceExhausted("ARTIFACT_STORE_FULL", "the artifact storage is full")
        if code in _CREDENTIALS_REFUSED:
            return Unavailable(
                "ARTIFACT_STORE_UNAVAILABLE",
                f"the artifact storage refused the server's credentials ({code})",
            )
        return Unavailable(
            "ARTIFACT_STORE_UNAVAILABLE", f"the artifact storage failed ({code or 'no code'})"
        )
    if isinstance(exc, NoCredentialsError):
        return Unavailable(
            "ARTIFACT_STORE_UNAVAILABLE", "the server has no credentials for its artifact storage"
        )
    if isinstance(exc, BotoCoreError):
        return Unavailable(
            "ARTIFACT_STORE_UNAVAILABLE",
            f"the artifact storage cannot be reached ({type(exc).__name__})",
        )
    return None


class S3RunStorage(RunStorage):
    """The objects under ``s3://<bucket>/<prefix>``, one per file: key ``<prefix>/<path>``."""

    def __init__(
        self, client: S3Client, bucket: str, prefix: str, executor: Executor, presigned: bool
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.executor = executor
        self._presigned = presigned

    def key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the thread pool, with boto3's failures as errors."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))
        except Exception as exc:
            error = store_error(exc, self.bucket)
            if error is None:
                raise
            raise error from None

    async def open_upload(self, path: str, size: int) -> Upload:
        return _S3Upload(self, self.key(path), size)

    async def read(self, path: str, offset: int) -> AsyncIterator[bytes]:
        ranged = {"Range": f"bytes={offset}-"} if offset else {}
        reply = await self.run(
            self.client.get_object, Bucket=self.bucket, Key=self.key(path), **ranged
        )
        body = reply["Body"]
        try:
            while True:
                chunk = await self.run(body.read, limits.ARTIFACT_CHUNK_BYTES)
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    async def delete(self, paths: Sequence[str]) -> None:
        keys = [self.key(p) for p in paths]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes 1,000 keys at most
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            await self.run(
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": batch, "Quiet": True},  # type: ignore[typeddict-item]
            )

    def presigned(self) -> bool:
        return self._presigned

    def _sign_parts(
        self, key: str, storage_id: str, size: int, part_size: int, expires_s: int
    ) -> list[PresignedPart]:
        return [
            PresignedPart(
                number,
                self.client.generate_presigned_url(
                    "upload_part",
                    Params={
                        "Bucket": self.bucket,
                        "Key": key,
                        "UploadId": storage_id,
                        "PartNumber": number,
                    },
                    ExpiresIn=expires_s,
                ),
                offset,
                length,
            )
            for number, (offset, length) in enumerate(part_layout(size, part_size), 1)
        ]

    async def start_direct_upload(
        self, path: str, size: int, part_size: int, expires_s: int
    ) -> DirectUpload:
        key = self.key(path)
        started = await self.run(self.client.create_multipart_upload, Bucket=self.bucket, Key=key)
        storage_id = started["UploadId"]
        parts = await self.run(self._sign_parts, key, storage_id, size, part_size, expires_s)
        return DirectUpload(storage_id, parts)

    async def part_urls(
        self, path: str, storage_id: str, size: int, part_size: int, expires_s: int
    ) -> list[PresignedPart]:
        return await self.run(
            self._sign_parts, self.key(path), storage_id, size, part_size, expires_s
        )

    def _stored_parts(self, key: str, storage_id: str) -> dict[int, int]:
        """Part number -> size of the parts storage holds for the upload."""
        pages = self.client.get_paginator("list_parts").paginate(
            Bucket=self.bucket, Key=key, UploadId=storage_id
        )
        return {p["PartNumber"]: p["Size"] for page in pages for p in page.get("Parts", [])}

    async def complete_direct_upload(
        self, path: str, storage_id: str, size: int, part_size: int, etags: Sequence[str]
    ) -> None:
        key = self.key(path)
        stored = await self.run(self._stored_parts, key, storage_id)
        for number, (_, length) in enumerate(part_layout(size, part_size), 1):
            if stored.get(number) != length:
                got = "missing" if number not in stored else f"{stored[number]} bytes"
                raise InvalidArgument(
                    "INVALID_UPLOAD_PARTS",
                    f"part {number} should be {length} bytes, storage has it {got}",
                    "parts",
                )
        await self.run(
            self.client.complete_multipart_upload,
            Bucket=self.bucket,
            Key=key,
            UploadId=storage_id,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]
            },
        )

    async def abort_direct_upload(self, path: str, storage_id: str) -> None:
        await self.run(
            self.client.abort_multipart_upload,
            Bucket=self.bucket,
            Key=self.key(path),
            UploadId=storage_id,
        )

    async def download_url(self, path: str, expires_s: int) -> str:
        return await self.run(
            self.client.generate_presigned_url,
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.key(path)},
            ExpiresIn=expires_s,
        )


class _S3Upload(Upload):
    """One PUT for a file below the part size, else a multipart upload fed a part at a time."""

    def __init__(self, store: S3RunStorage, key: str, size: int) -> None:
        self.store = store
        self.key = key
        self.part_size = part_size_for(size, 0)
        self.multipart = size > self.part_size
        self.buffer = bytearray()
        self.storage_id: str | None = None
        self.etags: list[str] = []

    async def _send_part(self, body: bytes) -> None:
        s = self.store
        if self.storage_id is None:
            started = await s.run(s.client.create_multipart_upload, Bucket=s.bucket, Key=self.key)
            self.storage_id = started["UploadId"]
        reply = await s.run(
            s.client.upload_part,
            Bucket=s.bucket,
            Key=self.key,
            UploadId=self.storage_id,
            PartNumber=len(self.etags) + 1,
            Body=body,
        )
        self.etags.append(reply["ETag"])

    async def write(self, chunk: bytes) -> None:
        self.buffer += chunk
        while self.multipart and len(self.buffer) >= self.part_size:
            body = bytes(memoryview(self.buffer)[: self.part_size])
            del self.buffer[: self.part_size]
            await self._send_part(body)

    async def commit(self) -> None:
        s = self.store
        if not self.multipart:
            await s.run(s.client.put_object, Bucket=s.bucket, Key=self.key, Body=bytes(self.buffer))
            return
        if self.buffer or not self.etags:
            await self._send_part(bytes(self.buffer))
        self.buffer = bytearray()
        parts = [{"PartNumber": n, "ETag": e} for n, e in enumerate(self.etags, 1)]
        await s.run(
            s.client.complete_multipart_upload,
            Bucket=s.bucket,
            Key=self.key,
            UploadId=self.storage_id,
            MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
        )

    async def abort(self) -> None:
        self.buffer = bytearray()
        if self.storage_id is not None:
            s, storage_id = self.store, self.storage_id
            self.storage_id = None
            await asyncio.shield(
                s.run(
                    s.client.abort_multipart_upload,
                    Bucket=s.bucket,
                    Key=self.key,
                    UploadId=storage_id,
                )
            )
