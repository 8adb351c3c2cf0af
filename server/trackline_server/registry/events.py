"""The registry's event log: every change appends a row in the change's own transaction
(``append``), and watchers read what follows the last id they saw (``after``).

Ids come from registry_counters' 'events' row, bumped last in the change's transaction: its
row lock holds every other transaction that records an event until this one commits or rolls
back, so ids have no gaps and commit in order (on PostgreSQL as on SQLite, several replicas
included). A watcher that saw id n has seen every id below it, and ``after(n)`` is complete.
Events older than the retention are pruned oldest first, so the ids kept are contiguous.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline.v1 import registry_pb2 as rpb

from .. import limits
from ..clock import now_ms
from ..errors import OutOfRange
from ..models import registry_counters, registry_events
from ..sql import Query, Reader, first, rows

_EV = registry_events.c
_COUNTER = registry_counters.c
_EVENTS = "events"
_NEXT_ID = (
    update(registry_counters)
    .where(_COUNTER.name == _EVENTS)
    .values(value=_COUNTER.value + 1)
    .returning(_COUNTER.value)
)
_AFTER = Query(
    lambda _: (
        select(
            _EV.event_id,
            _EV.time,
            _EV.type,
            _EV.name,
            _EV.version,
            _EV.alias,
            _EV.key,
            _EV.stage,
            _EV.status,
            _EV.previous_name,
            _EV.actor,
        )  # fmt: skip
        .where(_EV.event_id > bindparam("after"))
        .order_by(_EV.event_id)
        .limit(bindparam("limit"))
    )
)
_RANGE = Query(
    lambda _: select(
        select(func.min(_EV.event_id)).scalar_subquery(),
        select(_COUNTER.value).where(_COUNTER.name == _EVENTS).scalar_subquery(),
    )
)
# time.monotonic() before which the log is not pruned again (per server process).
_next_prune = 0.0


@dataclass(frozen=True)
class Change:
    """What one event says, beside its id and time (ModelEvent's fields)."""

    type: int  # a ModelEventType value
    name: str
    version: int = 0
    alias: str = ""
    key: str = ""
    stage: int = 0
    status: int = 0
    previous_name: str = ""


async def append(conn: AsyncConnection, change: Change, retention_s: float, actor: str) -> int:
    """Records ``change``, made by ``actor`` (a token's name, "" without tokens), in the
    caller's transaction and returns its id. Call it after the change's other statements: the
    counter's lock is held from here to the commit."""
    await _prune(conn, retention_s)
    event_id = int((await conn.execute(_NEXT_ID)).scalar_one())
    await conn.execute(
        insert(registry_events).values(
            event_id=event_id,
            time=now_ms(),
            type=int(change.type),
            name=change.name,
            version=change.version,
            alias=change.alias,
            key=change.key,
            stage=change.stage,
            status=change.status,
            previous_name=change.previous_name,
            actor=actor,
        )
    )
    return event_id


async def last_id(reader: Reader) -> int:
    """The id of the last event committed (0 before the first)."""
    return int((await _range(reader))[1])


async def check_resume(reader: Reader, after: int) -> None:
    """OUT_OF_RANGE EVENT_ID_OUT_OF_RANGE unless every event after ``after`` is still kept
    and ``after`` is no later than the last event."""
    oldest, last = await _range(reader)
    if after > last:
        raise OutOfRange(
            "EVENT_ID_OUT_OF_RANGE",
            f"after {after} is above the last event id recorded, {last}",
            "after",
        )
    if after < oldest - 1:
        raise OutOfRange(
            "EVENT_ID_OUT_OF_RANGE",
            f"events after {after} were pruned; the oldest kept is {oldest}: read the"
            f" registry's state again, then watch after {oldest - 1}",
            "after",
        )


async def after(reader: Reader, event_id: int, limit: int) -> list[rpb.ModelEvent]:
    """Up to ``limit`` events after ``event_id``, in id order."""
    found = await rows(reader, _AFTER, {"after": event_id, "limit": limit})
    return [
        rpb.ModelEvent(
            id=i,
            time=t,
            type=ty,
            name=n,
            version=v,
            alias=a,
            key=k,
            stage=st,
            status=s,
            previous_name=p,
            actor=who,
        )  # fmt: skip
        for i, t, ty, n, v, a, k, st, s, p, who in found
    ]


async def _range(reader: Reader) -> tuple[int, int]:
    """(oldest id kept, last id given out); the oldest is last + 1 when none is kept."""
    row = await first(reader, _RANGE)
    last = int(row[1]) if row is not None and row[1] is not None else 0
    oldest = int(row[0]) if row is not None and row[0] is not None else last + 1
    return oldest, last


async def _prune(conn: AsyncConnection, retention_s: float) -> None:
    """Deletes up to REGISTRY_EVENT_BATCH of the oldest events recorded before the retention,
    at most once per REGISTRY_EVENT_PRUNE_INTERVAL_S unless the last round found a full
    batch. By id, up to the newest one that is old enough: clocks of several replicas may
    disagree, and the ids kept must stay contiguous."""
    global _next_prune
    now = time.monotonic()
    if now < _next_prune:
        return
    cutoff = now_ms() - int(retention_s * 1000)
    old = (
        select(_EV.event_id)
        .where(_EV.time < cutoff)
        .order_by(_EV.event_id)
        .limit(limits.REGISTRY_EVENT_BATCH)
        .subquery()
    )
    newest = select(func.max(old.c.event_id)).scalar_subquery()
    pruned = (await conn.execute(delete(registry_events).where(_EV.event_id <= newest))).rowcount
    full = pruned >= limits.REGISTRY_EVENT_BATCH
    _next_prune = now if full else now + limits.REGISTRY_EVENT_PRUNE_INTERVAL_S
