"""Work that a cancelled caller cannot cut short.

grpc.aio cancels a call's task when its client goes away (a deadline, a cancelled stream, a
client that forks and so ends its stream). Cancelled while a statement runs on aiosqlite's
thread, a unit of work could hand its connection back to the pool with SQLite's write lock
still held: every later write then waited out the busy timeout and failed with "database is
locked" (reproduced by cancelling metric-stream handshakes in a loop). Database work that a
client can cancel therefore runs in a task of its own: the caller still gets CancelledError
at once, and the transaction commits or rolls back as it would have.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")
_left_running: set[asyncio.Task[Any]] = set()  # keeps them alive until they end


async def shielded(work: Awaitable[T]) -> T:
    """Awaits ``work`` in its own task, which goes on to its end if the caller is cancelled."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        _left_running.add(task)
        task.add_done_callback(_done)
        raise


def _done(task: asyncio.Task[Any]) -> None:
    _left_running.discard(task)
    retrieve(task)


def retrieve(fut: asyncio.Future[Any]) -> None:
    """Marks a failure of ``fut`` as seen (a done-callback for futures that may end up with
    nobody awaiting them): asyncio would log "exception was never retrieved" for each."""
    if not fut.cancelled():
        fut.exception()
