"""Issue 9 (errors), the store's side and the call's envelope: request ids past their
retention, a store turned read-only under the server, duplicate authorization headers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from trackline import TracklineClient
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb
from trackline.v1 import tracking_pb2_grpc
from trackline_server.models import applied_requests, params

from tests.support.databases import PG_URL
from tests.support.refusals import new_run, refused
from tests.support.servers import ServerProcess, start_server


@pytest.fixture
def secured(tmp_path: Path) -> ServerProcess:
    srv = start_server(tmp_path, extra_args=["--auth-token", "s3cr3t"])
    return srv


@pytest.mark.parametrize(
    "headers",
    [
        [("authorization", "Bearer s3cr3t"), ("authorization", "Bearer wrong")],
        [("authorization", "Bearer wrong"), ("authorization", "Bearer s3cr3t")],
        [("authorization", "Bearer s3cr3t"), ("authorization", "Bearer s3cr3t")],
    ],
)
def test_duplicate_authorization_headers_are_refused(
    secured: ServerProcess, headers: list[tuple[str, str]]
) -> None:
    request = tpb.GetExperimentRequest(experiment_id="0")
    with grpc.insecure_channel(secured.address) as channel:
        stub = tracking_pb2_grpc.TrackingServiceStub(channel)
        one = [("authorization", "Bearer s3cr3t")]
        assert stub.GetExperiment(request, metadata=one).experiment.name == "Default"
        result = refused(secured, stub.GetExperiment, request, metadata=headers)
        assert result == (grpc.StatusCode.UNAUTHENTICATED, "MALFORMED_TOKEN")
        with pytest.raises(grpc.RpcError) as info:
            stub.GetExperiment(request, timeout=30, metadata=headers)
        assert "exactly one authorization header" in info.value.details()


def _on_store(server: ServerProcess, work: Callable[[Any], Any]) -> Any:
    """Runs ``work(conn)`` in a committed transaction on the server's own store."""

    async def go() -> Any:
        engine = create_async_engine(server.store_uri)
        try:
            async with engine.begin() as conn:
                return await work(conn)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_applied_requests_are_pruned_after_the_retention(
    server: ServerProcess, client: TracklineClient
) -> None:
    _, run_id = new_run(client)
    day_ms = 24 * 3600 * 1000

    async def age(conn: Any) -> None:
        await conn.execute(
            insert(applied_requests),
            [
                {"request_id": f"old-{i}", "resource": run_id, "applied_time": 1_000 + i}
                for i in range(2_500)
            ]
            + [{"request_id": "young", "resource": run_id, "applied_time": 0}],
        )
        await conn.execute(
            text("UPDATE applied_requests SET applied_time = :t WHERE request_id = 'young'"),
            {"t": int(time.time() * 1000) - day_ms + 3_600_000},
        )

    _on_store(server, age)
    # A retry of an id past the retention is applied again (the documented trade-off); each
    # call prunes a bounded round, and rounds follow each other while a backlog remains.
    client.stub.LogBatch(
        tpb.LogBatchRequest(
            run_id=run_id, request_id="old-0", params=[pb.Param(key="p", value="1")]
        )
    )
    for request_id in ("more-0", "more-1", "more-2", "recent"):
        client.stub.LogBatch(tpb.LogBatchRequest(run_id=run_id, request_id=request_id))

    async def left(conn: Any) -> list[str]:
        found = await conn.execute(select(applied_requests.c.request_id))
        return sorted(found.scalars())

    remaining = _on_store(server, left)
    assert remaining == ["more-0", "more-1", "more-2", "old-0", "recent", "young"]

    async def param(conn: Any) -> list[str]:
        return list((await conn.execute(select(params.c.value))).scalars())

    assert _on_store(server, param) == ["1"]


def test_read_only_postgresql_gives_store_read_only(postgres_url: str, tmp_path: Path) -> None:
    """A database turned read-only under a running server: writes get UNAVAILABLE
    STORE_READ_ONLY (the first may get STORE_UNAVAILABLE, for its dropped connection), reads
    keep working."""
    name = postgres_url.rsplit("/", 1)[-1]

    async def on_cluster(*statements: str) -> None:
        admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as conn:
                for statement in statements:
                    await conn.execute(text(statement))
        finally:
            await admin.dispose()

    srv = start_server(tmp_path, postgres_url)
    client = TracklineClient(srv.address, retry_seconds=0)
    try:
        exp = client.create_experiment("before")
        asyncio.run(
            on_cluster(
                f'ALTER DATABASE "{name}" SET default_transaction_read_only = on',
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                f" WHERE datname = '{name}' AND pid <> pg_backend_pid()",
            )
        )
        reasons = []
        for i in range(6):
            request = tpb.CreateExperimentRequest(name=f"after-{i}")
            code, reason = refused(srv, client.stub.CreateExperiment, request)
            assert code == grpc.StatusCode.UNAVAILABLE
            reasons.append(reason)
        # Each pooled connection whose backend was terminated fails once (the request's and
        # the store watch's: at most two), then every write is refused as read-only.
        first = reasons.index("STORE_READ_ONLY")
        assert first <= 2 and set(reasons[:first]) <= {"STORE_UNAVAILABLE"}, reasons
        assert reasons[first:] == ["STORE_READ_ONLY"] * (6 - first), reasons
        assert client.get_experiment(exp.experiment_id).name == "before"
    finally:
        client.close()
        asyncio.run(on_cluster(f'ALTER DATABASE "{name}" RESET default_transaction_read_only'))
