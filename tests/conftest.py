"""The shared fixtures. Their helpers live in ``support/`` (used by the benchmarks too); the
teardown of every server and test stream a test starts is here, in ``_stop_servers``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from trackline import TracklineClient

from tests.support.databases import (
    PG_URL,
    drop_created_databases,
    fresh_postgres_database,
    on_test_postgres,
    store_url,
)
from tests.support.fluent import end_fluent_session
from tests.support.s3 import s3_bucket, s3_endpoint  # noqa: F401 (fixtures for every test)
from tests.support.servers import ServerProcess, start_server, stop_started_servers
from tests.support.streams import close_open_streams

# Property tests draw new examples on every local run; CI (.ci/run sets HYPOTHESIS_PROFILE=ci)
# draws the same ones every time, so that main's result depends on its code alone.
settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stops the run at once, with the reason, when TRACKLINE_TEST_PG_URL is set but PostgreSQL
    cannot be reached; otherwise every PostgreSQL test would fail on its own with the same
    error."""
    if not PG_URL:
        return
    try:
        on_test_postgres(timeout=10)
    except Exception as exc:
        raise pytest.UsageError(
            f"TRACKLINE_TEST_PG_URL={PG_URL!r} cannot be reached: {exc}"
        ) from exc


def pytest_sessionfinish(session: pytest.Session) -> None:
    drop_created_databases()


@pytest.fixture(autouse=True)
def _stop_servers() -> Iterator[None]:
    """Closes, after each test, every test stream it left open, and stops every server it
    started and left running."""
    yield
    close_open_streams()
    stop_started_servers()


@pytest.fixture(autouse=True)
def _end_fluent_session(_stop_servers: None) -> Iterator[None]:
    """Ends the module-level API's session after each test, before its servers stop."""
    yield
    end_fluent_session()


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> ServerProcess:
    """A real server per test, on SQLite and on PostgreSQL (each test gets its own database)."""
    return start_server(tmp_path, store_url(request.param, tmp_path))


@pytest.fixture
def client(server: ServerProcess) -> Iterator[TracklineClient]:
    c = TracklineClient(server.address, retry_seconds=5)
    yield c
    c.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store for tests of the database layer itself (no server)."""
    return store_url(request.param, tmp_path)


@pytest.fixture
def postgres_url() -> str:
    """A fresh, empty database on the test PostgreSQL, for PostgreSQL-only behaviour."""
    return fresh_postgres_database()
