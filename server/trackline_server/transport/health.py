"""The health service (``grpc.health.v1.Health``): grpcio-health-checking's asyncio servicer,
with ``List`` answered too.

The health.proto that grpcio-health-checking ships defines ``List`` and reflection describes
it, but the servicer it ships answers only ``Check`` and ``Watch``: ``List`` was
UNIMPLEMENTED, a method the server offered and did not serve.
"""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health, health_pb2


class ServiceHealth(health.aio.HealthServicer):  # type: ignore[misc]
    """Every status that was set, by service name ("" for the server as a whole); Check,
    Watch and graceful shutdown are grpcio-health-checking's."""

    async def List(
        self, request: health_pb2.HealthListRequest, context: Any
    ) -> health_pb2.HealthListResponse:
        """Every service with a status and its status now (the servicer's own table, which
        ``set`` and ``enter_graceful_shutdown`` keep, read in one step)."""
        statuses = dict(self._server_status)
        return health_pb2.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in statuses.items()
            }
        )
