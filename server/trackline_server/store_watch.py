"""Watching the store under a running server: a SQLite file deleted, replaced or made
read-only, a PostgreSQL server gone or read-only. The checks ``Database`` runs after every
commit and once a second (``StoreWatch``), and the start-up checks that refuse a store the
server could not write to in one line (``open_store``). What a driver's failure means is
decided once, in ``errors.store_reason``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncpg  # type: ignore[import-untyped]
from grpc_health.v1 import health, health_pb2
from sqlalchemy import text

from .config import StartupError
from .errors import Unavailable, store_failure, store_reason

if TYPE_CHECKING:
    from .database import Database

log = logging.getLogger("trackline.store")


def store_lost(what: str) -> Unavailable:
    return Unavailable(
        "STORE_LOST",
        f"the server's database file {what} while the server ran; nothing written since is"
        " stored. An operator must restart the server (restore the file from a backup first,"
        " or it starts over with an empty database)",
    )


def store_read_only(what: str) -> Unavailable:
    return Unavailable(
        "STORE_READ_ONLY",
        f"{what}; writes are refused until an operator makes it writable again (reads go on)",
    )


class SqliteFiles:
    """The SQLite database file the server opened, told apart from whatever its path names
    now: a file deleted (with or without its -wal) or replaced under a running server takes
    every later commit with it, while SQLite goes on writing to the inode it holds open."""

    def __init__(self, path: str) -> None:
        self.path = os.path.realpath(path)
        self.directory = os.path.dirname(self.path)
        self._identity: tuple[int, int] | None = None
        self._wal = False

    def record(self) -> None:
        """Takes the file now at the path as the one the server holds; after ``create_schema``,
        when it exists and (in WAL mode) has its -wal beside it."""
        st = os.stat(self.path)
        self._identity = (st.st_dev, st.st_ino)
        self._wal = os.path.exists(self.path + "-wal")

    def lost(self) -> Unavailable | None:
        """STORE_LOST when the path no longer names the opened file, or its -wal is gone (a
        committed WAL transaction leaves the -wal in place while a connection is open: the
        pool's are). A stat or two: cheap enough to run after every commit."""
        if self._identity is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return store_lost("was deleted")
        if (st.st_dev, st.st_ino) != self._identity:
            return store_lost("was replaced by another file")
        if self._wal and not os.path.exists(self.path + "-wal"):
            return store_lost("lost its -wal file (it was deleted)")
        return None

    def holds_deleted(self) -> Unavailable | None:
        """STORE_LOST when this process holds a deleted database, -wal or -shm file open (a
        -wal deleted and already created anew by another connection, which ``lost`` cannot
        see). Linux only (/proc); a listing of this process's descriptors."""
        names = {f"{self.path}{suffix} (deleted)" for suffix in ("", "-wal", "-shm")}
        with contextlib.suppress(OSError):
            for fd in os.listdir("/proc/self/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/self/fd/{fd}") in names:
                        return store_lost("or one of its -wal and -shm files was deleted")
        return None

    def read_only(self) -> Unavailable | None:
        """STORE_READ_ONLY when the file, its -wal or -shm, or its directory (where SQLite
        creates them) cannot be written. ``os.access`` also answers for root, whom file modes
        do not stop: an immutable file (chattr +i) or a read-only mount."""
        for path in (self.path, self.path + "-wal", self.path + "-shm"):
            if os.path.exists(path) and not os.access(path, os.W_OK):
                return store_read_only("the database file is read-only")
        if not os.access(self.directory, os.W_OK | os.X_OK):
            return store_read_only("the directory holding the database file is not writable")
        return None


_READ_ONLY_QUERY = "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')"
_PG_READ_ONLY = (
    "the PostgreSQL server accepts reads only (a standby, or default_transaction_read_only is on)"
)


async def probe_postgres(db: Database) -> Unavailable | None:
    """STORE_READ_ONLY for a standby or a read-only session, STORE_UNAVAILABLE when the
    server does not answer within a few seconds."""
    try:
        read_only = await _postgres_read_only(db)
    except Exception as exc:
        reason = store_reason(exc)
        if reason is None and not isinstance(exc, TimeoutError | OSError):
            raise
        if reason == "STORE_READ_ONLY":
            return store_read_only(_PG_READ_ONLY)
        return Unavailable(
            "STORE_UNAVAILABLE", "the database server cannot be reached; retry once it is back"
        )
    return store_read_only(_PG_READ_ONLY) if read_only else None


async def _postgres_read_only(db: Database) -> bool:
    async with asyncio.timeout(5), db.engine.connect() as conn:
        in_recovery, read_only = (await conn.execute(text(_READ_ONLY_QUERY))).one()
    return bool(in_recovery) or read_only == "on"


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
        read_only = await _postgres_read_only(db)
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
        return f"{_PG_READ_ONLY} at {where}: point --store-uri at a writable primary"
    return None


def _where(db: Database) -> str:
    url = db.engine.url
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"
