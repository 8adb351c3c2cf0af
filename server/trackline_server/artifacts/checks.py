"""Checks of an artifact request's numbers and checksums, beside the path rules
(``paths.py``); each names the field it refuses."""

from __future__ import annotations

import math
import re

from .. import limits, page_tokens
from ..errors import InvalidArgument, shown

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def check_sha256(digest: str, field_name: str = "sha256") -> str:
    """The digest in lowercase; INVALID_CHECKSUM unless it is 64 hex digits."""
    if not _SHA256.fullmatch(digest):
        raise InvalidArgument(
            "INVALID_CHECKSUM",
            f"{field_name} {shown(digest)} is not a SHA-256: 64 hex digits",
            field_name,
        )
    return digest.lower()


def check_size(size: int, field_name: str = "size") -> int:
    if not 0 <= size <= limits.MAX_ARTIFACT_BYTES:
        raise InvalidArgument(
            "ARTIFACT_SIZE_MISMATCH",
            f"{field_name} {size} is not a file size from 0 to {limits.MAX_ARTIFACT_BYTES}"
            " bytes (5 TiB)",
            field_name,
        )
    return size


def part_size_for(size: int, asked: int) -> int:
    """The part size of a direct upload: ``asked`` (5 MiB to 5 GiB, at most 10,000 parts),
    or for 0 the one proxied uploads use: ARTIFACT_S3_PART_BYTES, or whole MiB enough
    for MAX_ARTIFACT_PARTS parts. INVALID_UPLOAD_PARTS
    otherwise."""
    if asked == 0:
        mib = 1024 * 1024
        needed = math.ceil(size / limits.MAX_ARTIFACT_PARTS / mib) * mib
        return max(limits.ARTIFACT_S3_PART_BYTES, needed)
    low, high = limits.MIN_ARTIFACT_PART_BYTES, limits.MAX_ARTIFACT_PART_BYTES
    if not low <= asked <= high:
        raise InvalidArgument(
            "INVALID_UPLOAD_PARTS",
            f"part_size {asked} is not from {low} (5 MiB) to {high} (5 GiB) bytes",
            "part_size",
        )
    if math.ceil(size / asked) > limits.MAX_ARTIFACT_PARTS:
        raise InvalidArgument(
            "INVALID_UPLOAD_PARTS",
            f"part_size {asked} cuts the file in more than {limits.MAX_ARTIFACT_PARTS} parts",
            "part_size",
        )
    return asked


def page_size(asked: int) -> int:
    """0 -> DEFAULT_ARTIFACT_PAGE; INVALID_PAGE_SIZE outside 1 to MAX_ARTIFACT_PAGE."""
    if asked == 0:
        return limits.DEFAULT_ARTIFACT_PAGE
    if not 1 <= asked <= limits.MAX_ARTIFACT_PAGE:
        raise InvalidArgument(
            "INVALID_PAGE_SIZE",
            f"page_size must be from 1 to {limits.MAX_ARTIFACT_PAGE}, not {asked}",
            "page_size",
        )
    return asked


def page_offset(token: str, run_id: str, directory: str, recursive: bool) -> tuple[int, str]:
    """Where a listing's page starts (0 without a token) and the fingerprint its next
    token carries."""
    made_for = page_tokens.fingerprint("ListArtifacts", run_id, directory, recursive)
    if not token:
        return 0, made_for
    (offset,) = page_tokens.decode(
        token, made_for, ("o",), "ListArtifacts", "run_id, path and recursive"
    )
    if offset < 0:
        raise InvalidArgument(
            "INVALID_PAGE_TOKEN", "page_token was not returned by ListArtifacts", "page_token"
        )
    return offset, made_for
