"""The storage backends of one server process: ``Storages.at(uri)`` gives the
``RunStorage`` of a run's root, local (``local.py``) or S3 (``s3.py``, whose boto3 client is
made once, on first use), and the thread pool their blocking calls share."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from .. import limits
from ..artifact_roots import parse_root
from ..errors import Unavailable, shown
from .local import LocalRunStorage
from .storage import RunStorage

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


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
        return LocalRunStorage(Path(root.location), self.executor)

    def prepare(self, uri: str) -> None:
        """Makes the backend of the root ``uri`` ready now (for S3: boto3 imported and its
        client made, some 40 MB of modules), so the first transfer does not wait for it."""
        self.at(uri)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
