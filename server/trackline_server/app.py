"""Builds and runs the grpc.aio server: servicers, health, reflection, TLS, graceful shutdown."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import os
import signal
import socket
import sys
from dataclasses import dataclass

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from trackline.v1 import (
    artifacts_pb2,
    auth_pb2,
    ingest_pb2,
    projects_pb2,
    registry_pb2,
    tracking_pb2,
)

from . import limits
from .artifact_roots import parse_root
from .artifacts.backends import Storages
from .artifacts.service import ArtifactService
from .auth.authenticator import Authenticator
from .auth.interceptor import AuthInterceptor
from .auth.permissions import RULES, AccessGuard
from .auth.scopes import Resources
from .auth.service import TokenService
from .budget import Budget, BudgetInterceptor, limit_malloc_arenas
from .config import Settings, StartupError, from_args
from .database import Database
from .errors import Unavailable
from .metrics.compactor import Compactor
from .metrics.stream import IngestService
from .metrics.writer import GroupCommitWriter
from .projects.service import ProjectService
from .registry.service import RegistryService
from .store_watch import StoreWatch, open_store
from .tracking import experiments, writable
from .tracking.service import TrackingService
from .transport import reflection
from .transport.grpc_server import add_service
from .transport.health import ServiceHealth
from .transport.tls import ServerTls, TlsFileError, is_loopback

TRACKING = tracking_pb2.DESCRIPTOR.services_by_name["TrackingService"]
INGEST = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"]
REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
PROJECTS = projects_pb2.DESCRIPTOR.services_by_name["ProjectService"]
ARTIFACTS = artifacts_pb2.DESCRIPTOR.services_by_name["ArtifactService"]
TOKENS = auth_pb2.DESCRIPTOR.services_by_name["TokenService"]
SERVICES = (
    TRACKING.full_name,
    INGEST.full_name,
    REGISTRY.full_name,
    ARTIFACTS.full_name,
    PROJECTS.full_name,
    TOKENS.full_name,
)
# Health answers for the server as a whole ("") and for each service it serves, by name; the
# store's health is that of the server and of the services over the store (SERVICES).
SERVED = (*SERVICES, health.SERVICE_NAME, *reflection.SERVICE_NAMES)


@dataclass
class Running:
    server: grpc.aio.Server
    db: Database
    writer: GroupCommitWriter
    compactor: Compactor
    ingest: IngestService
    registry: RegistryService
    projects: ProjectService
    storages: Storages
    health: ServiceHealth
    watch: StoreWatch
    authenticator: Authenticator
    port: int
    tls: ServerTls | None = None  # None: plaintext

    async def stop(self) -> None:
        """Graceful: health turns NOT_SERVING, streams stop reading and watches end, the
        writer commits and acks everything queued, then calls get a few seconds to finish
        before the server closes."""
        await self.health.enter_graceful_shutdown()
        await self.watch.close()
        self.ingest.begin_shutdown()
        self.registry.begin_shutdown()
        self.projects.begin_shutdown()
        await self.projects.close()
        await self.writer.close()
        await self.server.stop(grace=5)
        await self.compactor.close()
        self.storages.close()
        await self.db.close()


async def build(settings: Settings) -> Running:
    """Starts the server on its port; the caller stops it with ``Running.stop``. A port or
    store the server cannot use is a StartupError (nothing is left running)."""
    root = parse_root(settings.artifact_root)
    if root is not None and root.scheme == "file":
        try:
            os.makedirs(settings.artifact_root, exist_ok=True)
        except OSError as exc:
            raise StartupError(
                f"cannot create the artifact root {settings.artifact_root}: {exc.strerror}"
            ) from None
    opts = [
        ("grpc.max_receive_message_length", limits.MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", limits.MAX_MESSAGE_BYTES),
        # Against abuse (limits.py says why each value). Pings: streaming clients ping every
        # 20 s to notice dead connections, also with no call open; admit one per 10 s, and
        # close the connection of a peer that pings faster. (This is the string of gRPC's
        # GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS; "min_recv_ping_..." is no
        # argument of gRPC's, and left its 5-minute default in force.)
        ("grpc.http2.min_ping_interval_without_data_ms", limits.MIN_PING_INTERVAL_MS),
        ("grpc.http2.max_ping_strikes", limits.MAX_PING_STRIKES),
        ("grpc.keepalive_permit_without_calls", 1),
        # Request headers: soft and hard limit equal, so a refusal does not depend on luck.
        ("grpc.max_metadata_size", limits.MAX_METADATA_BYTES),
        ("grpc.absolute_max_metadata_size", limits.MAX_METADATA_BYTES),
        ("grpc.max_concurrent_streams", limits.MAX_CONCURRENT_STREAMS),
        ("grpc.server_handshake_timeout_ms", limits.HANDSHAKE_TIMEOUT_MS),
        # gRPC sets SO_REUSEPORT by default: a second server on the port would start and
        # take half of the connections, to its own database.
        ("grpc.so_reuseport", 0),
        # A fixed flow-control window of 4 MiB per stream instead of gRPC's bandwidth-delay
        # probing, which on a fast link let the transport buffer tens of MB of a 2 GB
        # artifact upload ahead of the service (peak RSS +40 to +90 MB; +20 MB with this).
        # 4 MiB in flight per stream still fills a 20 ms round trip at 200 MB/s.
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", limits.STREAM_WINDOW_BYTES),
    ]
    db = Database(settings.store_uri)
    authenticator = Authenticator(db, settings.auth_tokens)
    interceptors = [
        AuthInterceptor(authenticator, RULES),  # first: a call it refuses is never parsed
        BudgetInterceptor(Budget(settings.max_inflight_bytes)),
    ]
    tls = _server_tls(settings)
    server = grpc.aio.server(options=opts, interceptors=interceptors)
    port = _bind(server, settings.host, settings.port, tls)
    try:
        await open_store(db)
        async with db.write() as conn:
            await experiments.ensure_default(conn, settings.artifact_root)
    except Unavailable as err:
        await db.close()
        raise StartupError(err.message.split(";")[0]) from None
    except BaseException:
        await db.close()
        raise
    db.start_checkpoints()
    compactor = Compactor(db)
    writer = GroupCommitWriter(
        db,
        writable.refused_runs,
        on_logged=compactor.poke,
        max_points=settings.ingest_max_points,
        max_bytes=settings.ingest_max_bytes,
        linger=settings.ingest_linger_ms / 1000,
    )
    writer.start()
    compactor.start()
    ingest = IngestService(writer)
    resources = Resources(db)
    guard = AccessGuard(resources, authenticator)
    # One line per domain: each service is served as its proto service through the edge.
    tracking = TrackingService(
        db, writer, compactor, settings.artifact_root, on_rename=resources.forget_names
    )
    add_service(server, tracking, TRACKING, db, guard)
    add_service(server, ingest, INGEST, db, guard)
    registry = RegistryService(db, event_retention_s=settings.registry_event_retention_s)
    add_service(server, registry, REGISTRY, db, guard)
    projects = ProjectService(db, lease_check_s=settings.project_lease_check_s)
    add_service(server, projects, PROJECTS, db, guard)
    projects.start()
    storages = Storages(settings.s3_endpoint_url, settings.presigned_urls)
    storages.prepare(settings.artifact_root)
    add_service(server, ArtifactService(db, storages), ARTIFACTS, db, guard)
    tokens = TokenService(db, on_change=authenticator.invalidate)
    add_service(server, tokens, TOKENS, db, guard)
    health_servicer = ServiceHealth()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in ("", *SERVED):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    watch = StoreWatch(db, health_servicer, ("", *SERVICES))
    watch.start()
    reflection.add_reflection(server, (*SERVICES, health.SERVICE_NAME))
    await server.start()
    return Running(
        server,
        db,
        writer,
        compactor,
        ingest,
        registry,
        projects,
        storages,
        health_servicer,
        watch,
        authenticator,
        port,
        tls,
    )


def _server_tls(settings: Settings) -> ServerTls | None:
    """The TLS credentials of ``settings.tls``, read and checked; None for plaintext."""
    if settings.tls is None:
        return None
    try:
        return ServerTls(settings.tls)
    except TlsFileError as err:
        raise StartupError(str(err)) from None


def _bind(server: grpc.aio.Server, host: str, port: int, tls: ServerTls | None) -> int:
    """Binds ``host:port`` (exclusively), with TLS unless ``tls`` is None, and returns the port
    bound. The port is tried with a plain socket first: gRPC would log its own multi-line
    error before failing."""
    why = _why_not_bound(host, port) if port else None
    if why is None:
        address = f"{host}:{port}"
        try:
            if tls is None:
                bound = server.add_insecure_port(address)
            else:
                bound = server.add_secure_port(address, tls.credentials)
        except RuntimeError:
            bound = 0
        if bound:
            return int(bound)
        why = _why_not_bound(host, port) or f"cannot bind port {port} on {host}"
    raise StartupError(why)


def _why_not_bound(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound, found by binding a plain socket the way gRPC does
    (SO_REUSEADDR, so a port a previous server left in TIME_WAIT is not taken for used);
    None when it can be."""
    try:
        addresses = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return f"the address to bind, {host!r}, is not known (--host)"
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return f"port {port} on {host} is already in use"
                return f"cannot bind port {port} on {host}: {exc.strerror}"
    return None


def _reload_tls(tls: ServerTls) -> None:
    """SIGHUP: new connections get the certificate, key and client CA the files hold now; open
    ones keep theirs. Files that do not serve leave the previous ones in service."""
    try:
        tls.reload()
    except TlsFileError as err:
        print(
            f"trackline: SIGHUP: kept the previous TLS certificate: {err}",
            file=sys.stderr,
            flush=True,
        )
        return
    print(
        f"trackline: SIGHUP: reloaded the TLS certificate from {tls.files.cert}",
        file=sys.stderr,
        flush=True,
    )


def _tune_garbage_collection() -> None:
    """Under streaming load the cyclic garbage collector took about a tenth of the event
    loop's time, in pauses of up to 100 ms that stalled every stream. What exists once the
    server is built lives as long as the server (modules, tables, gRPC's and SQLAlchemy's
    machinery): frozen, no collection walks it again. And a batch's objects live for a flush
    (a few hundred ms), long enough to outlast several youngest-generation collections at
    the default of 700 allocations and be promoted, only to die in the oldest generation and
    fill its collections; at 10,000 they die young."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)


def run(args: argparse.Namespace) -> None:
    """Serves the parsed command line (``config.add_arguments``) until SIGINT or SIGTERM. A
    failure to start (a bad setting, a store or port the server cannot use) is one line on
    stderr, ``trackline: <why>``, and exit status 2."""
    limit_malloc_arenas()
    try:
        settings = from_args(args)
        if settings.event_loop == "uvloop":
            uvloop.run(serve(settings))
        else:
            asyncio.run(serve(settings))
    except StartupError as err:
        print(f"trackline: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


async def serve(settings: Settings) -> None:
    running = await build(settings)
    _tune_garbage_collection()
    port = running.port
    loop = asyncio.get_running_loop()
    loop_name = type(loop).__module__.split(".")[0]  # the loop it runs on: uvloop or asyncio
    transport = "plaintext" if running.tls is None else running.tls.files.mode
    if running.tls is None and not is_loopback(settings.host):
        print(
            f"trackline: warning: serving plaintext on {settings.host}, which is not a loopback"
            " address: tokens and data cross the network unencrypted (give --tls-cert and"
            " --tls-key)",
            file=sys.stderr,
            flush=True,
        )
    required = await running.authenticator.required()
    auth = "tokens" if required else "off (no token is configured: every call is admitted)"
    print(
        f"trackline: listening on {settings.host}:{port}; transport {transport};"
        f" store {settings.shown_store_uri}; artifacts {settings.artifact_root}; auth"
        f" {auth}; event loop {loop_name}",
        flush=True,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if running.tls is not None:
        loop.add_signal_handler(signal.SIGHUP, _reload_tls, running.tls)
    await stop.wait()
    print("trackline: shutting down", file=sys.stderr, flush=True)
    await running.stop()
