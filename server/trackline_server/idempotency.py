"""Request ids that make a retried write apply once (AIP-155): LogBatch, LogInputs, CreateRun
and CreateExperiment today, every create of the registry next.

The id is recorded in the request's own transaction with the method and the id of what it
wrote or created, so a retry after a lost reply finds it, and gets the first attempt's result
instead of a second application. Ids are remembered for limits.APPLIED_REQUEST_RETENTION_S.
"""

from __future__ import annotations

import time

from sqlalchemy import bindparam, delete, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from . import limits
from .clock import now_ms
from .errors import Aborted, InvalidArgument, shown
from .models import applied_requests
from .sql import Query, Writer, among, execute, execute_many, rows

# time.monotonic() before which applied_requests is not pruned again (per server process).
_next_prune = 0.0
_A = applied_requests.c
_APPLIED_OF = Query(
    lambda d: select(_A.request_id, _A.resource, _A.method).where(among(_A.request_id, "ids", d))
)
_RECORD = Query(lambda _: insert(applied_requests))
# The oldest ids recorded before :cutoff, a batch at a time.
_PRUNE = Query(
    lambda _: delete(applied_requests).where(
        _A.request_id.in_(
            select(_A.request_id)
            .where(_A.applied_time < bindparam("cutoff"))
            .order_by(_A.applied_time)
            .limit(limits.APPLIED_REQUEST_PRUNE_BATCH)
        )
    )
)
# PostgreSQL: the ids of a flush in one statement, skipping (and not returning) those that a
# concurrent transaction stored first.
_RECORD_NEW = Query(
    lambda _: text(
        "INSERT INTO applied_requests (request_id, resource, method, applied_time)"
        " SELECT r, s, CAST(:method AS TEXT), CAST(:now AS BIGINT)"
        " FROM unnest(CAST(:ids AS TEXT[]), CAST(:resources AS TEXT[])) AS u(r, s)"
        " ON CONFLICT DO NOTHING RETURNING request_id"
    )
)


async def applied(conn: AsyncConnection, request_id: str, method: str) -> str | None:
    """The resource an earlier request with ``request_id`` wrote or created, or None when the
    id is new (or past its retention). An id used by another method is INVALID_ARGUMENT
    REQUEST_ID_REUSED. Prunes old ids on the way (``_prune``)."""
    found = (await applied_many(conn, [request_id])).get(request_id)
    if found is None:
        return None
    resource, by = found
    if by != method:
        raise reused(request_id, f"a {by} call")
    return resource


async def applied_many(conn: Writer, request_ids: list[str]) -> dict[str, tuple[str, str]]:
    """(resource, method) of each of ``request_ids`` that an earlier request recorded: the
    check of a whole flush's calls in one query (``applied`` checks one). Prunes on the way."""
    if not request_ids:
        return {}
    await _prune(conn)
    found = await rows(conn, _APPLIED_OF, {"ids": request_ids})
    return {rid: (resource, method) for rid, resource, method in found}


def in_flight(request_id: str) -> Aborted:
    return Aborted(
        "REQUEST_ID_IN_FLIGHT",
        f"another call with request_id {shown(request_id)} was applied meanwhile; retry to"
        " get its result",
    )


async def record_many(conn: Writer, method: str, done: dict[str, str]) -> set[str]:
    """Remembers each request id of ``done`` as applying ``method`` to its resource, and
    returns those that a concurrent attempt recorded first (PostgreSQL lets both look before
    either writes): their calls must not apply (``in_flight``). On SQLite the write lock
    makes that impossible."""
    if not done:
        return set()
    now = now_ms()
    new = [
        {"request_id": rid, "resource": res, "method": method, "applied_time": now}
        for rid, res in done.items()
    ]
    if conn.dialect.name == "sqlite":
        await execute_many(conn, _RECORD, new)
        return set()
    ids, resources = list(done), list(done.values())
    stored = await rows(
        conn, _RECORD_NEW, {"ids": ids, "resources": resources, "method": method, "now": now}
    )
    return set(ids) - {row[0] for row in stored}


def reused(request_id: str, by: str) -> InvalidArgument:
    return InvalidArgument(
        "REQUEST_ID_REUSED",
        f"request_id {shown(request_id)} was already used for {by}",
        "request_id",
    )


async def record(conn: AsyncConnection, request_id: str, method: str, resource: str) -> None:
    """Remembers that ``request_id`` applied ``method`` to ``resource``. When a concurrent
    attempt with the same id committed first (PostgreSQL lets both look before either
    writes), this attempt is ABORTED REQUEST_ID_IN_FLIGHT and rolls back: its retry gets the
    first attempt's result."""
    try:
        await conn.execute(
            insert(applied_requests).values(
                request_id=request_id, resource=resource, method=method, applied_time=now_ms()
            )
        )
    except IntegrityError:
        raise in_flight(request_id) from None


async def _prune(conn: Writer) -> None:
    """Deletes up to APPLIED_REQUEST_PRUNE_BATCH request ids older than the retention, at most
    once per APPLIED_REQUEST_PRUNE_INTERVAL_S unless the last round found a full batch (then
    again at the next call, until the backlog is gone). A range scan of ix_applied_requests_
    applied_time, in the caller's transaction."""
    global _next_prune
    now = time.monotonic()
    if now < _next_prune:
        return
    cutoff = now_ms() - limits.APPLIED_REQUEST_RETENTION_S * 1000
    pruned = await execute(conn, _PRUNE, {"cutoff": cutoff})
    full = pruned >= limits.APPLIED_REQUEST_PRUNE_BATCH
    _next_prune = now if full else now + limits.APPLIED_REQUEST_PRUNE_INTERVAL_S
