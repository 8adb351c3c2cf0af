"""Soft delete and restore, written once for every resource that has a ``lifecycle_stage``
column (experiments and runs now; registered models next).

A deleted resource stays in its table with stage LIFECYCLE_STAGE_DELETED: reads still find
it, writes to it (or to anything inside it) are FAILED_PRECONDITION until it is restored.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Table, update
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline.v1 import resources_pb2 as pb

from .errors import FailedPrecondition

ACTIVE = int(pb.LIFECYCLE_STAGE_ACTIVE)
DELETED = int(pb.LIFECYCLE_STAGE_DELETED)


def stage_name(stage: int) -> str:
    return "deleted" if stage == DELETED else "active"


def inactive(stage: int, reason: str, what: str) -> FailedPrecondition | None:
    """FAILED_PRECONDITION ``reason`` (e.g. RUN_DELETED) when ``stage`` is not active, else
    None; ``what`` names the resource for the message ("run 'abc'")."""
    if stage == ACTIVE:
        return None
    return FailedPrecondition(reason, f"{what} is deleted; restore it first")


def require_active(stage: int, reason: str, what: str) -> None:
    """Raises ``inactive``'s error when ``stage`` is not active."""
    if (error := inactive(stage, reason, what)) is not None:
        raise error


async def move(
    conn: AsyncConnection,
    table: Table,
    key: Column[Any],
    value: object,
    current: int,
    stage: int,
    what: str,
    **also: object,
) -> None:
    """Moves the row of ``table`` whose ``key`` is ``value`` from stage ``current`` to
    ``stage`` (setting the columns in ``also`` with it). Asking for the stage it already has
    is FAILED_PRECONDITION WRONG_LIFECYCLE_STAGE, so a caller learns its view was stale."""
    if current == stage:
        raise FailedPrecondition("WRONG_LIFECYCLE_STAGE", f"{what} is already {stage_name(stage)}")
    await conn.execute(update(table).where(key == value).values(lifecycle_stage=stage, **also))
