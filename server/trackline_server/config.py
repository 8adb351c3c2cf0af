"""Flags and environment variables -> one Settings object.

A setting the server cannot start with is a ``StartupError``: ``app.run`` prints its message
as one line, ``trackline: <message>``, on stderr and exits with status 2 (the status argparse
uses for a bad command line)."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from . import limits
from .artifact_roots import parse_root
from .transport.tls import TlsFiles

EVENT_LOOPS = ("uvloop", "asyncio")


class StartupError(Exception):
    """The server cannot start; the message is the one line the operator sees."""


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
    max_inflight_bytes: int = limits.MAX_INFLIGHT_BYTES
    event_loop: str = "uvloop"
    registry_event_retention_s: float = limits.REGISTRY_EVENT_RETENTION_S
    project_lease_check_s: float = limits.PROJECT_LEASE_CHECK_S
    s3_endpoint_url: str | None = None
    presigned_urls: bool = True
    tls: TlsFiles | None = None  # None: plaintext

    @property
    def shown_store_uri(self) -> str:
        """The store URI without its password, for the log."""
        return make_url(self.store_uri).render_as_string(hide_password=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server's flags. Numbers are parsed in ``from_args`` (one line on a bad value, and
    a bad environment variable does not break the client commands sharing this parser)."""
    env = os.environ.get
    parser.add_argument(
        "--store-uri",
        default=env("TRACKLINE_STORE_URI", "sqlite:///trackline.db"),
        help="where the data goes (env TRACKLINE_STORE_URI): sqlite:///PATH (or a plain file"
        " path) or postgresql://USER:PASSWORD@HOST:PORT/DATABASE, as MLflow spells them",
    )
    parser.add_argument(
        "--artifact-root",
        default=env("TRACKLINE_ARTIFACT_ROOT", "./trackline-artifacts"),
        help="where run artifacts go (env TRACKLINE_ARTIFACT_ROOT): a local folder (or"
        " file:// URI) or s3://BUCKET/PREFIX",
    )
    parser.add_argument(
        "--s3-endpoint-url",
        default=env("TRACKLINE_S3_ENDPOINT_URL")
        or env("AWS_ENDPOINT_URL_S3")
        or env("AWS_ENDPOINT_URL"),
        help="the S3 endpoint, for MinIO and other S3-compatible stores (env"
        " TRACKLINE_S3_ENDPOINT_URL, else AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL); region"
        " and credentials come from the usual AWS settings",
    )
    parser.add_argument(
        "--presigned-urls",
        default=env("TRACKLINE_PRESIGNED_URLS", "on"),
        help="on (the default) or off: whether clients may get presigned URLs to move"
        " artifacts straight to and from S3 (env TRACKLINE_PRESIGNED_URLS)",
    )
    parser.add_argument(
        "--host",
        default=env("TRACKLINE_HOST", "127.0.0.1"),
        help="address to bind (env TRACKLINE_HOST)",
    )
    parser.add_argument(
        "--port",
        default=env("TRACKLINE_PORT", "50051"),
        help="port to bind, 0 to 65535; 0 for any free port (env TRACKLINE_PORT)",
    )
    parser.add_argument(
        "--tls-cert",
        default=env("TRACKLINE_TLS_CERT"),
        help="serve TLS with this PEM certificate chain, the server's certificate first (env"
        " TRACKLINE_TLS_CERT); needs --tls-key. Reloaded with the key on SIGHUP. Off by default",
    )
    parser.add_argument(
        "--tls-key",
        default=env("TRACKLINE_TLS_KEY"),
        help="the unencrypted PEM private key of --tls-cert (env TRACKLINE_TLS_KEY)",
    )
    parser.add_argument(
        "--tls-client-ca",
        default=env("TRACKLINE_TLS_CLIENT_CA"),
        help="mutual TLS: refuse, at the handshake, clients without a certificate signed by one"
        " of these PEM CA certificates (env TRACKLINE_TLS_CLIENT_CA); needs --tls-cert",
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
        default=env("TRACKLINE_INGEST_MAX_POINTS", str(limits.INGEST_MAX_POINTS)),
        help="points the ingest queue holds before streams wait and LogBatch gets"
        " RESOURCE_EXHAUSTED (env TRACKLINE_INGEST_MAX_POINTS)",
    )
    parser.add_argument(
        "--ingest-max-bytes",
        default=env("TRACKLINE_INGEST_MAX_BYTES", str(limits.INGEST_MAX_BYTES)),
        help="encoded bytes the ingest queue holds (env TRACKLINE_INGEST_MAX_BYTES)",
    )
    parser.add_argument(
        "--ingest-linger-ms",
        default=env("TRACKLINE_INGEST_LINGER_MS", str(limits.INGEST_LINGER_MS)),
        help="how long a flush gathers stream batches before its transaction; unary calls"
        " alone do not wait (env TRACKLINE_INGEST_LINGER_MS)",
    )
    parser.add_argument(
        "--max-inflight-bytes",
        default=env("TRACKLINE_MAX_INFLIGHT_BYTES", str(limits.MAX_INFLIGHT_BYTES)),
        help="request bytes being parsed and served at once; a call beyond it gets"
        " RESOURCE_EXHAUSTED (reason SERVER_BUSY) with a retry delay, a stream message"
        " waits (env TRACKLINE_MAX_INFLIGHT_BYTES)",
    )
    parser.add_argument(
        "--registry-event-retention-days",
        default=env(
            "TRACKLINE_REGISTRY_EVENT_RETENTION_DAYS",
            f"{limits.REGISTRY_EVENT_RETENTION_S / 86400:g}",
        ),
        help="how long registry events are kept for WatchModelEvents to resume from, in days"
        " (fractions allowed); a watcher resuming after an older one gets OUT_OF_RANGE"
        " (env TRACKLINE_REGISTRY_EVENT_RETENTION_DAYS)",
    )
    parser.add_argument(
        "--project-lease-check-seconds",
        default=env("TRACKLINE_PROJECT_LEASE_CHECK_SECONDS", f"{limits.PROJECT_LEASE_CHECK_S:g}"),
        help="how often the server looks for project run leases their workers stopped renewing"
        " (the run is queued again or fails), in seconds above 0"
        " (env TRACKLINE_PROJECT_LEASE_CHECK_SECONDS)",
    )
    parser.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default=env("TRACKLINE_EVENT_LOOP", "uvloop"),
        help="the asyncio event loop: uvloop (the default) or asyncio's own, to compare or"
        " debug (env TRACKLINE_EVENT_LOOP)",
    )


def from_args(ns: argparse.Namespace) -> Settings:
    """The settings of a parsed command line; a bad one is a StartupError."""
    return Settings(
        store_uri=store_url(ns.store_uri),
        artifact_root=artifact_root(ns.artifact_root),
        host=ns.host,
        port=_integer(ns.port, "--port", "TRACKLINE_PORT", 0, 65535),
        auth_tokens=_tokens(ns.auth_token),
        ingest_max_points=_integer(
            ns.ingest_max_points, "--ingest-max-points", "TRACKLINE_INGEST_MAX_POINTS", 1
        ),
        ingest_max_bytes=_integer(
            ns.ingest_max_bytes, "--ingest-max-bytes", "TRACKLINE_INGEST_MAX_BYTES", 1
        ),
        ingest_linger_ms=_number(ns.ingest_linger_ms, "--ingest-linger-ms"),
        max_inflight_bytes=_integer(
            ns.max_inflight_bytes, "--max-inflight-bytes", "TRACKLINE_MAX_INFLIGHT_BYTES", 1
        ),
        event_loop=_event_loop(ns.event_loop),
        registry_event_retention_s=_days_in_seconds(
            ns.registry_event_retention_days,
            "--registry-event-retention-days",
            "TRACKLINE_REGISTRY_EVENT_RETENTION_DAYS",
        ),
        project_lease_check_s=_seconds(
            ns.project_lease_check_seconds,
            "--project-lease-check-seconds",
            "TRACKLINE_PROJECT_LEASE_CHECK_SECONDS",
        ),
        s3_endpoint_url=ns.s3_endpoint_url or None,
        presigned_urls=_on_off(ns.presigned_urls, "--presigned-urls", "TRACKLINE_PRESIGNED_URLS"),
        tls=_tls_files(ns.tls_cert, ns.tls_key, ns.tls_client_ca),
    )


def artifact_root(value: str) -> str:
    """The artifact root: s3://BUCKET/PREFIX as given (without a trailing '/'), a local
    folder (or file:// URI) as an absolute path."""
    root = parse_root(value)
    if root is None or not value.strip():
        raise StartupError(
            f"--artifact-root {value!r} is neither a local folder nor s3://BUCKET/PREFIX"
        )
    if root.scheme == "s3":
        if not root.location:
            raise StartupError(f"--artifact-root {value!r} names no bucket: s3://BUCKET/PREFIX")
        return f"s3://{root.location}/{root.prefix}".rstrip("/")
    return root.location


def _tls_files(cert: str | None, key: str | None, client_ca: str | None) -> TlsFiles | None:
    """The TLS files named, None for plaintext. A flag given empty (most likely an unset shell
    variable) refuses to start rather than serve plaintext; the files themselves are read and
    checked when the server builds its credentials (``transport.tls``)."""
    named = {"--tls-cert": cert, "--tls-key": key, "--tls-client-ca": client_ca}
    for flag, value in named.items():
        if value is not None and not value.strip():
            env = "TRACKLINE_" + flag[2:].upper().replace("-", "_")
            raise StartupError(f"{flag} (env {env}) is empty; it must name a PEM file")
    if cert is None and key is None:
        if client_ca is not None:
            raise StartupError("--tls-client-ca needs --tls-cert and --tls-key as well")
        return None
    if cert is None or key is None:
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        raise StartupError(f"{given} needs {missing} as well")
    return TlsFiles(cert, key, client_ca)


def _on_off(value: str, flag: str, env: str) -> bool:
    if value.lower() not in ("on", "off"):
        raise StartupError(f"{flag} (env {env}) must be on or off, not {value!r}")
    return value.lower() == "on"


def _event_loop(name: str) -> str:
    """argparse checks the flag's choices, not its default from the environment."""
    if name not in EVENT_LOOPS:
        raise StartupError(
            f"TRACKLINE_EVENT_LOOP must be one of {', '.join(EVENT_LOOPS)}, not {name!r}"
        )
    return name


def _tokens(flags: list[str] | None) -> tuple[str, ...]:
    """The accepted bearer tokens; () for none. A flag or the variable that is given but
    holds no token (most likely an unset shell variable) refuses to start rather than serve
    unprotected."""
    if flags is not None:
        if any(not t.strip() for t in flags):
            raise StartupError("--auth-token must not be empty")
        return tuple(t.strip() for t in flags)
    raw = os.environ.get("TRACKLINE_AUTH_TOKENS")
    if raw is None:
        return ()
    tokens = tuple(t.strip() for t in raw.split(",") if t.strip())
    if not tokens:
        raise StartupError(
            "TRACKLINE_AUTH_TOKENS is set but holds no token; unset it to serve without"
            " authentication"
        )
    return tokens


def _integer(value: str, flag: str, env: str, low: int, high: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        span = f"from {low} to {high}" if high is not None else f"of {low} or more"
        raise StartupError(f"{flag} (env {env}) must be an integer {span}, not {value!r}")
    return number


def _number(value: str, flag: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number < float("inf"):
        raise StartupError(f"{flag} must be a number of 0 or more, not {value!r}")
    return number


def _days_in_seconds(value: str, flag: str, env: str) -> float:
    """A positive number of days (fractions allowed), in seconds."""
    try:
        days = float(value)
    except ValueError:
        days = 0.0
    if not 0 < days < float("inf"):
        raise StartupError(f"{flag} (env {env}) must be a number of days above 0, not {value!r}")
    return days * 86400


def _seconds(value: str, flag: str, env: str) -> float:
    """A positive number of seconds."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise StartupError(f"{flag} (env {env}) must be a number of seconds above 0, not {value!r}")
    return seconds


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
_SQLITE_SCHEMES = {"sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"}
_POSTGRES_SCHEMES = {
    "postgresql",
    "postgres",
    "postgresql+asyncpg",
    "postgresql+psycopg2",
    "postgresql+psycopg",
    "postgresql+pg8000",
}
ACCEPTED_STORES = (
    "sqlite:///PATH (or a plain file path) or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
    " (postgres:// and the driver forms postgresql+asyncpg:// and postgresql+psycopg2://"
    " are read the same)"
)


def store_url(value: str) -> str:
    """``value`` (a store URI as MLflow writes them, or a SQLite file path) as the URL of the
    async driver the server uses: sqlite+aiosqlite or postgresql+asyncpg."""
    match = _SCHEME.match(value)
    if match is None:  # no scheme: a SQLite file
        if not value.strip():
            raise StartupError(f"--store-uri is empty; it must be {ACCEPTED_STORES}")
        return f"sqlite+aiosqlite:///{value}"
    scheme = match.group(1).lower()
    rest = value[match.end() :]
    if scheme in _SQLITE_SCHEMES:
        url = f"sqlite+aiosqlite:{rest}"
    elif scheme in _POSTGRES_SCHEMES:
        url = f"postgresql+asyncpg:{rest}"
    else:
        raise StartupError(f"--store-uri has the unknown scheme {scheme!r}: use {ACCEPTED_STORES}")
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StartupError(
            f"--store-uri is not a URI the server can read: use {ACCEPTED_STORES}"
        ) from None
    if scheme in _SQLITE_SCHEMES and parsed.database in (None, "", ":memory:"):
        raise StartupError(
            "--store-uri names an in-memory SQLite database, which keeps nothing: give a file,"
            " sqlite:///PATH"
        )
    if scheme in _POSTGRES_SCHEMES and not parsed.database:
        raise StartupError(
            "--store-uri names no PostgreSQL database:"
            " postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        )
    return url
