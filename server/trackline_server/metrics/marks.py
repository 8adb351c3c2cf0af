"""The writers' stored state, in SQL: high-water marks, epochs and rejections.

Each writer's row (``ingest_writers``) holds its high-water sequence, the hash of its key,
its owner and its epoch. A handshake (``take_over``) checks the key and owner and moves the
epoch up; a flush reads the marks and epochs of its writers (``read``), moves the marks of the
batches it settled (``move``) and stores its rejections (``remember``), which a handshake
hands back to a client that reconnects. Every function runs in the caller's transaction.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable, Select, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ..clock import now_ms
from ..errors import FailedPrecondition, PermissionDenied
from ..models import ingest_rejections, ingest_writers
from ..sql import Query, among, execute_many, rows

# Rejections a handshake returns, and how long they are kept.
REMEMBERED_REJECTIONS = 1000
REJECTIONS_KEPT_MS = 7 * 24 * 3600 * 1000


@dataclass
class Rejection:
    """Why a batch was refused: an UPPER_SNAKE reason (errors.proto) and a message."""

    reason: str
    message: str


@dataclass
class Handshake:
    """What a stream learns when it opens: the writer's stored high-water sequence, the epoch
    the stream now holds, and the writer's stored rejections (oldest first)."""

    high_water: int
    epoch: int
    rejections: list[tuple[int, Rejection]]


async def take_over(
    conn: AsyncConnection, writer_id: str, key_hash: str, owner: str | None
) -> Handshake:
    """Hands the writer to a new stream, in the caller's write transaction. A new writer id
    is registered to ``key_hash`` (the hex SHA-256 of the stream's writer key) and ``owner``
    (that of its bearer token when the server requires tokens, else None); a known one must
    come with the same key (else FAILED_PRECONDITION WRITER_ID_TAKEN) and owner (else
    PERMISSION_DENIED WRITER_NOT_OWNED). The writer's epoch then moves up by one: batches of
    its older streams that are still queued are refused by their flush instead of committing
    after the new stream learnt the high-water mark."""
    now = now_ms()
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    await conn.execute(
        dialect.insert(ingest_writers)
        .values(writer_id=writer_id, seq=0, updated_time=now, key_hash=key_hash,
                owner=owner, epoch=0)
        .on_conflict_do_nothing(index_elements=[ingest_writers.c.writer_id])
    )  # fmt: skip
    query = select(
        ingest_writers.c.seq,
        ingest_writers.c.key_hash,
        ingest_writers.c.owner,
        ingest_writers.c.epoch,
    ).where(ingest_writers.c.writer_id == writer_id)
    seq, stored_key, stored_owner, epoch = (await conn.execute(_locked(conn, query))).one()
    # A row from before keys (migration 0006) is claimed by the first key it sees.
    if stored_key is not None and not hmac.compare_digest(stored_key, key_hash):
        raise FailedPrecondition(
            "WRITER_ID_TAKEN",
            "this writer id belongs to another writer; choose a new random writer id",
            "writer_id",
        )
    if (
        owner is not None
        and stored_owner is not None
        and not hmac.compare_digest(stored_owner, owner)
    ):
        raise PermissionDenied(
            "WRITER_NOT_OWNED",
            "this writer id was created with another token; choose a new writer id",
            "writer_id",
        )
    epoch = int(epoch) + 1
    await conn.execute(
        update(ingest_writers)
        .where(ingest_writers.c.writer_id == writer_id)
        .values(key_hash=key_hash, owner=stored_owner or owner, epoch=epoch,
                updated_time=now)
    )  # fmt: skip
    rejections = await _rejections(conn, writer_id)
    return Handshake(int(seq), epoch, rejections)


async def mark(conn: AsyncConnection, writer_id: str) -> tuple[int, list[tuple[int, Rejection]]]:
    """The writer's stored high-water sequence and rejections."""
    seq = await conn.scalar(
        select(ingest_writers.c.seq).where(ingest_writers.c.writer_id == writer_id)
    )
    return int(seq or 0), await _rejections(conn, writer_id)


def _read_marks(d: str) -> Select[Any]:
    w = ingest_writers.c
    query = select(w.writer_id, w.seq, w.epoch).where(among(w.writer_id, "ids", d))
    return query.with_for_update() if d == "postgresql" else query  # as ``_locked``


_READ_MARKS = Query(_read_marks)


async def read(conn: AsyncConnection, writer_ids: list[str]) -> list[Any]:
    """The stored (writer id, seq, epoch) rows of the known ones among ``writer_ids``; on
    PostgreSQL locked, so that replicas serialise on a writer's row with its handshakes."""
    return await rows(conn, _READ_MARKS, {"ids": writer_ids})


async def move(conn: AsyncConnection, marks: dict[str, int]) -> None:
    """Moves each writer's high-water mark up to ``marks``' (never down), creating the rows of
    writers that never shook hands."""
    now = now_ms()
    await execute_many(
        conn, _MOVE, [{"writer_id": w, "seq": s, "updated_time": now} for w, s in marks.items()]
    )


def _move(dialect_name: str) -> Executable:
    dialect = sqlite if dialect_name == "sqlite" else postgresql
    stmt = dialect.insert(ingest_writers)
    upsert: Executable = stmt.on_conflict_do_update(
        index_elements=[ingest_writers.c.writer_id],
        set_={"seq": stmt.excluded.seq, "updated_time": stmt.excluded.updated_time},
        where=stmt.excluded.seq > ingest_writers.c.seq,
    )
    return upsert


_MOVE = Query(_move)


async def remember(conn: AsyncConnection, refused: list[tuple[str, int, Rejection]]) -> None:
    """Stores (writer id, seq, rejection) rows, and forgets those older than
    REJECTIONS_KEPT_MS."""
    now = now_ms()
    await conn.execute(
        insert(ingest_rejections),
        [
            {"writer_id": w, "seq": q, "reason": r.reason, "message": r.message[:4096],
             "created_time": now}
            for w, q, r in refused
        ],
    )  # fmt: skip
    await conn.execute(
        delete(ingest_rejections).where(ingest_rejections.c.created_time < now - REJECTIONS_KEPT_MS)
    )


async def _rejections(conn: AsyncConnection, writer_id: str) -> list[tuple[int, Rejection]]:
    """The writer's stored rejections, the newest REMEMBERED_REJECTIONS, oldest first: a
    client that reconnects learns about batches refused while it was away instead of taking
    them for stored."""
    found = await conn.execute(
        select(ingest_rejections.c.seq, ingest_rejections.c.reason, ingest_rejections.c.message)
        .where(ingest_rejections.c.writer_id == writer_id)
        .order_by(ingest_rejections.c.seq.desc())
        .limit(REMEMBERED_REJECTIONS)
    )
    return [(int(q), Rejection(r, m)) for q, r, m in found][::-1]


def _locked(conn: AsyncConnection, query: Select[Any]) -> Select[Any]:
    """``query`` FOR UPDATE on PostgreSQL (SQLite writers are serialised anyway)."""
    return query.with_for_update() if conn.dialect.name == "postgresql" else query
