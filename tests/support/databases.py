"""Throwaway databases on the test PostgreSQL (``TRACKLINE_TEST_PG_URL``, which ``make test``
and .ci/run start), created per test and dropped at the end of the session."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

PG_URL = os.environ.get("TRACKLINE_TEST_PG_URL", "")

_created_databases: list[str] = []


def on_test_postgres(*statements: str, timeout: float = 60) -> None:
    """Runs ``statements`` on the test PostgreSQL's maintenance database, each in its own
    transaction (CREATE and DROP DATABASE cannot run inside one)."""
    import asyncpg  # the server's dependency; only needed when PostgreSQL is configured

    async def run() -> None:
        dsn = PG_URL.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn, timeout=timeout)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def fresh_postgres_database() -> str:
    """Creates an empty database on the test PostgreSQL and returns its URL; skips the test
    when no test PostgreSQL is configured. ``drop_created_databases`` drops it."""
    if not PG_URL:
        pytest.skip("TRACKLINE_TEST_PG_URL is not set (.ci/run sets it up)")
    name = f"t_{uuid.uuid4().hex[:16]}"
    on_test_postgres(f'CREATE DATABASE "{name}"')
    _created_databases.append(name)
    return PG_URL.rsplit("/", 1)[0] + "/" + name


def sqlite_url(tmp: Path) -> str:
    """The store URL of a SQLite file in ``tmp`` (created on first use)."""
    return f"sqlite+aiosqlite:///{tmp / 'trackline.db'}"


def store_url(backend: str, tmp: Path) -> str:
    """A fresh, empty store for ``backend`` ("sqlite" or "postgresql")."""
    return fresh_postgres_database() if backend == "postgresql" else sqlite_url(tmp)


def drop_created_databases() -> None:
    """Drops the databases ``fresh_postgres_database`` created in this process, so that
    repeated runs do not fill the test cluster's disk. The test session and the benchmarks
    call it at their end."""
    if _created_databases:
        on_test_postgres(
            *(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in _created_databases)
        )
        _created_databases.clear()
