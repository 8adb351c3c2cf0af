"""What can go wrong with the store under a running server, looked at directly: a SQLite file
deleted, replaced or made read-only, a PostgreSQL server gone or read-only. ``Database`` runs
these checks after every commit and, through ``store_watch.StoreWatch``, once a second. What
a driver's failure means is decided once, in ``errors.store_reason``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .errors import Unavailable, store_reason

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

    @property
    def recorded(self) -> bool:
        """Whether ``record`` took a file (from then on a missing file is a lost one)."""
        return self._identity is not None

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
PG_READ_ONLY = (
    "the PostgreSQL server accepts reads only (a standby, or default_transaction_read_only is on)"
)


async def probe_postgres(engine: AsyncEngine) -> Unavailable | None:
    """STORE_READ_ONLY for a standby or a read-only session, STORE_UNAVAILABLE when the
    server does not answer within a few seconds."""
    try:
        read_only = await postgres_read_only(engine)
    except Exception as exc:
        reason = store_reason(exc)
        if reason is None and not isinstance(exc, TimeoutError | OSError):
            raise
        if reason == "STORE_READ_ONLY":
            return store_read_only(PG_READ_ONLY)
        return Unavailable(
            "STORE_UNAVAILABLE", "the database server cannot be reached; retry once it is back"
        )
    return store_read_only(PG_READ_ONLY) if read_only else None


async def postgres_read_only(engine: AsyncEngine) -> bool:
    async with asyncio.timeout(5), engine.connect() as conn:
        in_recovery, read_only = (await conn.execute(text(_READ_ONLY_QUERY))).one()
    return bool(in_recovery) or read_only == "on"
