"""Opaque page tokens shared by every paged call: urlsafe base64 of a small JSON object of
integers plus a fingerprint of the query that made the token, so a token replayed against
another query is refused instead of returning the wrong page."""

from __future__ import annotations

import base64
import hashlib
import json

from .errors import InvalidArgument

_INT64 = range(-(2**63), 2**63)


def fingerprint(*parts: object) -> str:
    """A short digest of the query's defining parts (JSON-serialisable values)."""
    return hashlib.sha256(json.dumps(parts, default=list).encode()).hexdigest()[:16]


def encode(fields: dict[str, int], made_for: str) -> str:
    text = json.dumps({**fields, "f": made_for}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(token: str, made_for: str, names: tuple[str, ...], call: str, query: str) -> list[int]:
    """The integer fields ``names`` of ``token``, in that order. INVALID_PAGE_TOKEN when the
    token is malformed (not returned by ``call``) or belongs to another query (the caller must
    repeat ``query``, the parts the fingerprint covers)."""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        values = [data[n] for n in names]
        valid = all(type(v) is int and v in _INT64 for v in values) and isinstance(data["f"], str)
    except (ValueError, TypeError, KeyError, RecursionError):  # RecursionError: deep nesting
        valid = False
    if not valid:
        raise InvalidArgument(
            "INVALID_PAGE_TOKEN", f"page_token was not returned by {call}", "page_token"
        )
    if data["f"] != made_for:
        raise InvalidArgument(
            "INVALID_PAGE_TOKEN",
            f"page_token belongs to a different query; repeat the same {query}",
            "page_token",
        )
    return values
