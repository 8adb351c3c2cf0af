"""One lock per artifact path, so that a file's bytes and its index row always come from the
same upload: two uploads of one path that finish together commit to storage and record in
the index one after the other, never interleaved (storage from one, checksum from the other).

The locks are this process's: replicas over one store do not share them (see the README's
artifact notes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class PathLocks:
    """Locks by key, each dropped when nobody holds or waits for it, so the table holds only
    the paths being committed."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, run_id: str, path: str) -> AsyncIterator[None]:
        key = (run_id, path)
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
