"""What a domain's service method sees of its call: a small context and, when the method
declares one, the unit of work the edge opened for it.

A service method is declared with the unit of work it needs: ``@reads`` (a read-only
snapshot on the driver, ``call.reader``, rolled back at its end: ``snapshot.py``),
``@writes`` (a read-write transaction, ``call.conn``, committed when the method returns and
rolled back when it raises) or ``@own_transactions`` (none: a streaming call, a call that
hands its write to the group-commit writer, or a read that must first let the compactor
settle, opens what it needs itself). The edge reads the declaration; a ``@reads``/``@writes``
method never commits.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from ..auth.principal import ANONYMOUS, Principal
from ..snapshot import Snapshot

F = TypeVar("F", bound=Callable[..., Any])
_ATTRIBUTE = "__trackline_unit_of_work__"


class UnitOfWork(enum.Enum):
    READ = "read"
    WRITE = "write"
    NONE = "none"


def _declare(kind: UnitOfWork) -> Callable[[F], F]:
    def mark(fn: F) -> F:
        setattr(fn, _ATTRIBUTE, kind)
        return fn

    return mark


reads = _declare(UnitOfWork.READ)
writes = _declare(UnitOfWork.WRITE)
own_transactions = _declare(UnitOfWork.NONE)


def unit_of_work(fn: Callable[..., Any]) -> UnitOfWork | None:
    """The unit of work ``fn`` declares, or None when it declares none."""
    kind = getattr(fn, _ATTRIBUTE, None)
    return kind if isinstance(kind, UnitOfWork) else None


@dataclass(frozen=True)
class Call:
    """One call, as the service method sees it.

    ``principal`` is who makes the call (``auth.principal``): the token the authentication in
    front of the services admitted, or the anonymous admin of a server without tokens.
    ``deadline`` is the ``time.monotonic()`` by which the caller stops waiting; None when it
    set no deadline."""

    method: str
    deadline: float | None = None
    connection: AsyncConnection | None = None
    snapshot: Snapshot | None = None
    principal: Principal = ANONYMOUS

    @property
    def conn(self) -> AsyncConnection:
        """The open write transaction's connection (``@writes`` methods only)."""
        if self.connection is None:
            raise RuntimeError(f"{self.method} is not @writes, so it has no connection")
        return self.connection

    @property
    def reader(self) -> Snapshot:
        """The open read-only snapshot (``@reads`` methods only)."""
        if self.snapshot is None:
            raise RuntimeError(f"{self.method} is not @reads, so it has no snapshot")
        return self.snapshot

    def time_left(self) -> float | None:
        """Seconds until the deadline (never negative), or None without one."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
