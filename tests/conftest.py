"""Shared fixtures: a real server process on an ephemeral loopback port over a temp SQLite file."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings
from trackline import TracklineClient
from trackline_server.database import Database
from trackline_server.metrics.writer import GroupCommitWriter
from trackline_server.tracking import store

PG_URL = os.environ.get("TRACKLINE_TEST_PG_URL", "")

# Property tests draw new examples on every local run; CI (.ci/run sets HYPOTHESIS_PROFILE=ci)
# draws the same ones every time, so that main's result depends on its code alone.
settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    address: str
    store_uri: str
    artifacts: Path

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """Terminates the server if it still runs and closes its pipe."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        if self.proc.stdout:
            self.proc.stdout.close()


_created_databases: list[str] = []


def _on_test_postgres(*statements: str, timeout: float = 60) -> None:
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
    _on_test_postgres(f'CREATE DATABASE "{name}"')
    _created_databases.append(name)
    return PG_URL.rsplit("/", 1)[0] + "/" + name


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stops the run at once, with the reason, when TRACKLINE_TEST_PG_URL is set but PostgreSQL
    cannot be reached; otherwise every PostgreSQL test would fail on its own with the same
    error."""
    if not PG_URL:
        return
    try:
        _on_test_postgres(timeout=10)
    except Exception as exc:
        raise pytest.UsageError(
            f"TRACKLINE_TEST_PG_URL={PG_URL!r} cannot be reached: {exc}"
        ) from exc


def pytest_sessionfinish(session: pytest.Session) -> None:
    drop_created_databases()


def drop_created_databases() -> None:
    """Drops the databases ``fresh_postgres_database`` created in this process, so that
    repeated runs do not fill the test cluster's disk. The test session and the benchmarks
    call it at their end."""
    if _created_databases:
        _on_test_postgres(
            *(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in _created_databases)
        )
        _created_databases.clear()


def start_server(
    tmp: Path, store_uri: str | None = None, extra_args: Sequence[str] = ()
) -> ServerProcess:
    store_uri = store_uri or f"sqlite+aiosqlite:///{tmp / 'trackline.db'}"
    art = tmp / "artifacts"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trackline_server",
            "--port",
            "0",
            "--store-uri",
            store_uri,
            "--artifact-root",
            str(art),
            *extra_args,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on ([\d.]+:\d+)", line)
    if match is None:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
        raise RuntimeError(f"server did not start: {line!r}")
    return ServerProcess(proc, match.group(1), store_uri, art)


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A real server per test, on SQLite and on PostgreSQL (each test gets its own database)."""
    if request.param == "postgresql":
        srv = start_server(tmp_path, fresh_postgres_database())
    else:
        srv = start_server(tmp_path)
    yield srv
    if srv.proc.poll() is None:
        srv.proc.terminate()
        srv.proc.wait(15)
    if srv.proc.stdout:
        srv.proc.stdout.close()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[TracklineClient]:
    c = TracklineClient(server.address, retry_seconds=5)
    yield c
    c.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store for tests of the database layer itself (no server)."""
    if request.param == "postgresql":
        return fresh_postgres_database()
    return f"sqlite+aiosqlite:///{tmp_path / 'trackline.db'}"


@pytest.fixture
def postgres_url() -> str:
    """A fresh, empty database on the test PostgreSQL, for PostgreSQL-only behaviour."""
    return fresh_postgres_database()


async def writer_with_a_run(db: Database) -> tuple[GroupCommitWriter, str]:
    """A started group-commit writer over ``db`` (schema created) and the id of a new run in
    it, for in-process tests of the ingest layer."""
    async with db.write() as conn:
        exp = await store.create_experiment(conn, "e", "", {}, "/artifacts")
        run = await store.create_run(conn, exp.experiment_id, "r", 0, {}, "")
    writer = GroupCommitWriter(db, linger=0.001)
    writer.start()
    return writer, run.run_id
