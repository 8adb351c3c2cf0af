"""Builds and runs the grpc.aio server: servicers, health, reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from trackline.v1 import tracking_pb2, tracking_pb2_grpc

from . import limits, store
from .api import TrackingServicer
from .auth import BearerTokenInterceptor
from .config import Settings
from .database import Database


async def build(settings: Settings) -> tuple[grpc.aio.Server, Database, int]:
    """Returns the started server, its database and the port it bound."""
    os.makedirs(settings.artifact_root, exist_ok=True)
    db = Database(settings.store_uri)
    await db.create_schema()
    async with db.write() as conn:
        await store.ensure_default_experiment(conn, settings.artifact_root)
    opts = [
        ("grpc.max_receive_message_length", limits.MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", limits.MAX_MESSAGE_BYTES),
    ]
    interceptors = [BearerTokenInterceptor(settings.auth_tokens)] if settings.auth_tokens else []
    server = grpc.aio.server(options=opts, interceptors=interceptors)
    tracking_pb2_grpc.add_TrackingServiceServicer_to_server(
        TrackingServicer(db, settings.artifact_root), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [
            tracking_pb2.DESCRIPTOR.services_by_name["TrackingService"].full_name,
            reflection.SERVICE_NAME,
            health.SERVICE_NAME,
        ],
        server,
    )
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    await server.start()
    return server, db, port


async def serve(settings: Settings) -> None:
    server, db, port = await build(settings)
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
    await server.stop(grace=10)
    await db.close()
