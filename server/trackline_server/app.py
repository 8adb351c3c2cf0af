"""Builds and runs the grpc.aio server: servicers, health, reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from trackline.v1 import ingest_pb2, ingest_pb2_grpc, tracking_pb2, tracking_pb2_grpc

from . import limits, store
from .api import TrackingServicer
from .auth import BearerTokenInterceptor
from .config import Settings
from .database import Database
from .ingest.compactor import Compactor
from .ingest.service import IngestServicer
from .ingest.writer import GroupCommitWriter


@dataclass
class Running:
    server: grpc.aio.Server
    db: Database
    writer: GroupCommitWriter
    compactor: Compactor
    ingest: IngestServicer
    port: int

    async def stop(self) -> None:
        """Graceful: streams stop reading, the writer commits and acks everything queued,
        then calls get a few seconds to finish before the server closes."""
        self.ingest.begin_shutdown()
        await self.writer.close()
        await self.server.stop(grace=5)
        await self.compactor.close()
        await self.db.close()


async def build(settings: Settings) -> Running:
    """Starts the server on its port; the caller stops it with ``Running.stop``."""
    os.makedirs(settings.artifact_root, exist_ok=True)
    db = Database(settings.store_uri)
    await db.create_schema()
    db.start_checkpoints()
    async with db.write() as conn:
        await store.ensure_default_experiment(conn, settings.artifact_root)
    opts = [
        ("grpc.max_receive_message_length", limits.MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", limits.MAX_MESSAGE_BYTES),
        # Streaming clients ping every 20 s to notice dead connections; admit that.
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    interceptors = [BearerTokenInterceptor(settings.auth_tokens)] if settings.auth_tokens else []
    server = grpc.aio.server(options=opts, interceptors=interceptors)
    compactor = Compactor(db)
    writer = GroupCommitWriter(
        db,
        on_logged=compactor.poke,
        max_points=settings.ingest_max_points,
        max_bytes=settings.ingest_max_bytes,
        linger=settings.ingest_linger_ms / 1000,
    )
    writer.start()
    compactor.start()
    ingest = IngestServicer(writer, owners=bool(settings.auth_tokens))
    tracking_pb2_grpc.add_TrackingServiceServicer_to_server(
        TrackingServicer(db, writer, compactor, settings.artifact_root), server
    )
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(ingest, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [
            tracking_pb2.DESCRIPTOR.services_by_name["TrackingService"].full_name,
            ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name,
            reflection.SERVICE_NAME,
            health.SERVICE_NAME,
        ],
        server,
    )
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    await server.start()
    return Running(server, db, writer, compactor, ingest, port)


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


async def serve(settings: Settings) -> None:
    running = await build(settings)
    _tune_garbage_collection()
    port = running.port
    print(
        f"trackline: listening on {settings.host}:{port}; store {settings.store_uri};"
        f" artifacts {settings.artifact_root}; auth"
        f" {'bearer token' if settings.auth_tokens else 'off'}",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("trackline: shutting down", file=sys.stderr, flush=True)
    await running.stop()
