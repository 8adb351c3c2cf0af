"""Artifact URIs, resolved to local files in one place (``download_uri``), for
``download_artifacts``, ``load_text``, ``load_dict`` and the models' ``load_model``:

- ``runs:/<run_id>/<path>``: a run's artifacts, downloaded through the Trackline server;
- ``models:/<name>/<version>``, ``models:/<name>@<alias>``, ``models:/<name>/latest``,
  ``models:/<name>/<stage>``: the version the server resolves it to, then its source (a URI
  of one of the other forms);
- ``s3://<bucket>/<key>``: read straight from S3 with boto3 (``pip install
  'trackline[s3]'``), with the usual AWS settings; the endpoint is ``TRACKLINE_S3_ENDPOINT_URL``,
  else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL`` (for MinIO and other S3-compatible
  stores);
- ``file://<path>`` and plain local paths.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from ._exceptions import InvalidArgument
from ._local_files import local_target

if TYPE_CHECKING:
    from ._client import TracklineClient

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):/")  # two letters at least: not a drive
_FORMS = (
    "runs:/<run_id>/<path>, models:/<name>/<version|stage|latest>, models:/<name>@<alias>,"
    " s3://<bucket>/<key>, file://<path> or a local path"
)
S3_ENDPOINT_VARIABLES = ("TRACKLINE_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def download_uri(
    client: TracklineClient | None, uri: str, dst_path: str | os.PathLike[str] | None = None
) -> str:
    """The local path of the file or directory at ``uri``: downloaded into ``dst_path``
    (created if missing; a new temporary directory when None) as ``<dst_path>/<its name>``,
    except a local path (plain or ``file://``) with no ``dst_path``, which is returned as it
    is, nothing copied. ``client`` talks to the Trackline server for ``runs:/`` and
    ``models:/`` (None: the module-level API's). A URI of another form is InvalidArgument
    naming it; a local path that does not exist is FileNotFoundError."""
    match = _SCHEME.match(uri)
    scheme = match.group(1).lower() if match else ""
    if scheme == "runs":
        run_id, _, path = uri[match.end() if match else 0 :].lstrip("/").partition("/")
        if not run_id:
            raise _invalid(uri, "it names no run")
        return _client(client).download_artifacts(run_id, path, dst_path)
    if scheme == "models":
        source = _client(client).resolve_model_uri(uri).source
        if _SCHEME.match(source) and source.lower().startswith("models:"):
            raise _invalid(uri, f"its version's source {source!r} is a models:/ URI again")
        return download_uri(client, source, dst_path)
    if scheme == "s3":
        return _download_s3(uri, dst_path)
    if scheme == "file":
        parsed = urllib.parse.urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise _invalid(uri, "a file:// URI names no other host")
        return _local(urllib.parse.unquote(parsed.path), dst_path)
    if scheme:
        raise _invalid(uri, f"the scheme {scheme!r} is not one Trackline reads")
    return _local(uri, dst_path)


def is_uri(text: str) -> bool:
    """Whether ``text`` is a URI (``runs:/...``, ``s3://...``) rather than a plain path."""
    return _SCHEME.match(text) is not None


def _client(client: TracklineClient | None) -> TracklineClient:
    if client is not None:
        return client
    from . import _fluent

    return _fluent.client()


def _invalid(uri: str, problem: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid artifact URI {uri!r:.300}: {problem}; use {_FORMS}",
        grpc.StatusCode.INVALID_ARGUMENT,
    )


def _destination(dst_path: str | os.PathLike[str] | None) -> Path:
    root = Path(dst_path) if dst_path is not None else Path(tempfile.mkdtemp(prefix="tl-"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _local(path: str, dst_path: str | os.PathLike[str] | None) -> str:
    """A local file or directory, or a copy of it in ``dst_path``."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file or directory: {path!r}")
    if dst_path is None:
        return path
    target = _destination(dst_path) / os.path.basename(os.path.normpath(path))
    if os.path.isdir(path):
        shutil.copytree(path, target, dirs_exist_ok=True)
    else:
        shutil.copy2(path, target)
    return str(target)


def s3_client() -> Any:
    """A boto3 S3 client with the usual AWS settings and Trackline's endpoint variables."""
    try:
        import boto3
    except ImportError:
        raise ImportError("reading s3:// URIs needs boto3: pip install 'trackline[s3]'") from None
    endpoint = next((os.environ[v] for v in S3_ENDPOINT_VARIABLES if os.environ.get(v)), None)
    return boto3.client("s3", endpoint_url=endpoint)


def _download_s3(uri: str, dst_path: str | os.PathLike[str] | None) -> str:
    """The object at ``s3://bucket/key``, or every object under ``key/`` as a directory."""
    parsed = urllib.parse.urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket:
        raise _invalid(uri, "it names no bucket")
    s3 = s3_client()
    name = posix_basename(key) or bucket
    root = _destination(dst_path)
    if key and not key.endswith("/") and _s3_exists(s3, bucket, key):
        target = root / name
        s3.download_file(bucket, key, str(target))
        return str(target)
    prefix = f"{key.rstrip('/')}/" if key.strip("/") else ""
    target = root / name
    found = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            relative = obj["Key"][len(prefix) :]
            if not relative or relative.endswith("/"):  # a "directory" marker
                continue
            local = local_target(target, relative)
            local.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(local))
            found += 1
    if not found:
        raise FileNotFoundError(f"nothing at {uri!r:.300}")
    return str(target)


def _s3_exists(s3: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def posix_basename(key: str) -> str:
    return key.rstrip("/").rsplit("/", 1)[-1]


__all__ = ["download_uri", "is_uri", "s3_client"]
