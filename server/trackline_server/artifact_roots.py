"""Artifact roots as URIs: a local folder (a path or file:// URI) or s3://bucket/prefix,
parsed once here for the configuration, the experiments (whose own artifact location must
be one the server may write to) and the artifact storage (``artifacts/``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from .errors import InvalidArgument, shown

S3_SCHEMES = ("s3",)


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
