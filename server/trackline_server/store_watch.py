"""Watching the store under a running server (``StoreWatch``: the checks of
``store_checks.py`` once a second, reflected in the health service), and the start-up checks
that refuse a store the server could not write to, in one line (``open_store``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence

import asyncpg  # type: ignore[import-untyped]
from grpc_health.v1 import health, health_pb2

from . import store_checks
from .config import StartupError
from .database import Database
from .errors import Unavailable, store_failure

log = logging.getLogger("trackline.store")


class StoreWatch:
    """Checks the store every ``interval`` seconds (``Database.check_store``) and keeps the
    health of ``services`` NOT_SERVING while it is broken, SERVING once it recovers."""

    def __init__(
        self,
        db: Database,
        health_servicer: health.aio.HealthServicer,
        services: Sequence[str],
        interval: float = 1.0,
    ) -> None:
        self.db = db
        self.health = health_servicer
        self.services = services
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._reason: str | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="store-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                problem = await self.db.check_store()
            except Exception:  # a check that itself failed proves nothing either way
                log.warning("store check failed", exc_info=True)
                continue
            await self.apply(problem)

    async def apply(self, problem: Unavailable | None) -> None:
        """Sets health for ``problem`` (None: the store is fine), logging each change once."""
        reason = problem.reason if problem is not None else None
        if reason == self._reason:
            return
        self._reason = reason
        if problem is None:
            log.warning("the store is writable again: serving")
            status = health_pb2.HealthCheckResponse.SERVING
        else:
            log.error("store problem %s: %s; health is NOT_SERVING", reason, problem.message)
            status = health_pb2.HealthCheckResponse.NOT_SERVING
        for service in self.services:
            await self.health.set(service, status)


async def open_store(db: Database) -> None:
    """Checks that the store can be written, then creates or upgrades its schema; a store the
    server could not serve is a StartupError with one line for the operator."""
    files = db.files
    if files is not None:
        if not os.path.isdir(files.directory):
            raise StartupError(
                f"the directory for the SQLite database does not exist: {files.directory}"
                " (create it, or fix --store-uri)"
            )
        if os.path.isdir(files.path):
            raise StartupError(f"the SQLite database path is a directory: {files.path}")
        problem = files.read_only()
        if problem is not None:
            raise StartupError(f"{problem.message.split(';')[0]}: {files.path}")
    else:
        refusal = await _postgres_at_start(db)
        if refusal is not None:
            raise StartupError(refusal)
    try:
        await db.create_schema()
    except Exception as exc:
        err = store_failure(exc, "opening the store")
        if err is None:
            raise
        where = files.path if files is not None else _where(db)
        raise StartupError(f"{err.message.split(';')[0]}: {where}") from None


async def _postgres_at_start(db: Database) -> str | None:
    """Why the PostgreSQL store cannot be served, in one line, or None when it can."""
    url = db.engine.url
    where = _where(db)
    try:
        read_only = await store_checks.postgres_read_only(db.engine)
    except asyncpg.InvalidPasswordError:
        return f"PostgreSQL refused the password of user {url.username!r} ({where})"
    except asyncpg.InvalidCatalogNameError:
        return f"the PostgreSQL database {url.database!r} does not exist ({where})"
    except asyncpg.PostgresError as exc:  # no such role, no pg_hba.conf entry, ...
        return f"PostgreSQL refused the connection ({where}): {exc}"
    except socket.gaierror:
        return f"the PostgreSQL host {url.host!r} is not known"
    except (OSError, TimeoutError):
        return f"cannot connect to PostgreSQL at {where} (is it running, and is the port right?)"
    if read_only:
        return f"{store_checks.PG_READ_ONLY} at {where}: point --store-uri at a writable primary"
    return None


def _where(db: Database) -> str:
    url = db.engine.url
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"
