"""Flags and environment variables -> one Settings object."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from . import limits


@dataclass(frozen=True)
class Settings:
    store_uri: str
    artifact_root: str
    host: str
    port: int
    auth_tokens: tuple[str, ...] = ()
    ingest_max_points: int = limits.INGEST_MAX_POINTS
    ingest_max_bytes: int = limits.INGEST_MAX_BYTES
    ingest_linger_ms: float = limits.INGEST_LINGER_MS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument(
        "--store-uri",
        default=env("TRACKLINE_STORE_URI", "sqlite+aiosqlite:///trackline.db"),
        help="SQLAlchemy URL (env TRACKLINE_STORE_URI); sqlite+aiosqlite or postgresql+asyncpg",
    )
    parser.add_argument(
        "--artifact-root",
        default=env("TRACKLINE_ARTIFACT_ROOT", "./trackline-artifacts"),
        help="where run artifacts go (env TRACKLINE_ARTIFACT_ROOT)",
    )
    parser.add_argument(
        "--host",
        default=env("TRACKLINE_HOST", "127.0.0.1"),
        help="address to bind (env TRACKLINE_HOST)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(env("TRACKLINE_PORT", "50051")),
        help="port to bind, 0 for any free port (env TRACKLINE_PORT)",
    )

    parser.add_argument(
        "--auth-token",
        action="append",
        default=None,
        help="require 'authorization: Bearer <token>' on every call; repeat to accept several"
        " tokens while rotating (env TRACKLINE_AUTH_TOKENS, comma-separated). Off by default",
    )
    parser.add_argument(
        "--ingest-max-points",
        type=int,
        default=int(env("TRACKLINE_INGEST_MAX_POINTS", str(limits.INGEST_MAX_POINTS))),
        help="points the ingest queue holds before streams wait and LogBatch gets"
        " RESOURCE_EXHAUSTED (env TRACKLINE_INGEST_MAX_POINTS)",
    )
    parser.add_argument(
        "--ingest-max-bytes",
        type=int,
        default=int(env("TRACKLINE_INGEST_MAX_BYTES", str(limits.INGEST_MAX_BYTES))),
        help="encoded bytes the ingest queue holds (env TRACKLINE_INGEST_MAX_BYTES)",
    )
    parser.add_argument(
        "--ingest-linger-ms",
        type=float,
        default=float(env("TRACKLINE_INGEST_LINGER_MS", str(limits.INGEST_LINGER_MS))),
        help="how long a flush gathers writes before its transaction"
        " (env TRACKLINE_INGEST_LINGER_MS)",
    )


def from_args(ns: argparse.Namespace) -> Settings:
    tokens = ns.auth_token or [
        t.strip() for t in os.environ.get("TRACKLINE_AUTH_TOKENS", "").split(",") if t.strip()
    ]
    if any(not t.strip() for t in ns.auth_token or []):
        # Most likely `--auth-token "$UNSET_VARIABLE"`: refuse rather than serve unprotected.
        raise SystemExit("trackline: --auth-token must not be empty")
    return Settings(
        store_uri=ns.store_uri,
        artifact_root=os.path.abspath(ns.artifact_root),
        host=ns.host,
        port=ns.port,
        auth_tokens=tuple(tokens),
        ingest_max_points=ns.ingest_max_points,
        ingest_max_bytes=ns.ingest_max_bytes,
        ingest_linger_ms=ns.ingest_linger_ms,
    )
