"""Schema migrations: upgrading gives exactly models.py's schema on SQLite and PostgreSQL, is
idempotent and reversible, and adopts databases made with create_all before migrations."""

from __future__ import annotations

import array
import asyncio
import math
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, ForeignKeyConstraint, UniqueConstraint, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline import TracklineClient
from trackline_server import migrate
from trackline_server.database import Database
from trackline_server.models import metadata

from tests.support.old_schemas import add_experiment_and_run
from tests.support.servers import start_server

T = TypeVar("T")


def with_db(url: str, fn: Callable[[Database], Awaitable[T]]) -> T:
    """Runs fn on a Database of its own: each step sees only what earlier steps committed."""

    async def go() -> T:
        db = Database(url)
        try:
            return await fn(db)
        finally:
            await db.close()

    return asyncio.run(go())


def upgrade(url: str) -> None:
    with_db(url, lambda db: db.create_schema())


def read(url: str, fn: Callable[[Connection], T]) -> T:
    async def go(db: Database) -> T:
        async with db.read() as conn:
            return await conn.run_sync(fn)

    return with_db(url, go)


def write(url: str, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    async def go(db: Database) -> T:
        async with db.write() as conn:
            return await fn(conn)

    return with_db(url, go)


def revision(url: str) -> str | None:
    return with_db(url, lambda db: migrate.current_revision(db.engine))


def schema_diff(conn: Connection) -> list[Any]:
    return compare_metadata(MigrationContext.configure(conn), metadata)


def table_names(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def constraint_names(conn: Connection) -> dict[str, tuple[Any, ...]]:
    """Per table: the names of its primary key, foreign keys, unique constraints and indexes."""
    insp = inspect(conn)
    return {
        table: (
            insp.get_pk_constraint(table)["name"],
            sorted(str(fk["name"]) for fk in insp.get_foreign_keys(table)),
            sorted(str(uq["name"]) for uq in insp.get_unique_constraints(table)),
            # PostgreSQL lists the index behind a unique constraint too.
            sorted(
                str(ix["name"])
                for ix in insp.get_indexes(table)
                if "duplicates_constraint" not in ix
            ),
        )
        for table in metadata.tables
    }


def expected_constraint_names() -> dict[str, tuple[Any, ...]]:
    # The model's names, with the naming convention applied (what the migration must create).
    return {
        name: (
            table.primary_key.name,
            sorted(str(c.name) for c in table.constraints if isinstance(c, ForeignKeyConstraint)),
            sorted(str(c.name) for c in table.constraints if isinstance(c, UniqueConstraint)),
            sorted(str(ix.name) for ix in table.indexes),
        )
        for name, table in metadata.tables.items()
    }


def run_alembic(url: str, fn: Callable[[Any], None]) -> None:
    """Runs an Alembic command (given the config) in one committed write transaction."""

    def in_sync(conn: Connection) -> None:
        cfg = migrate.make_config()
        cfg.attributes["connection"] = conn
        fn(cfg)

    async def go(conn: AsyncConnection) -> None:
        await conn.run_sync(in_sync)

    write(url, go)


def test_upgrade_creates_the_models_schema(database_url: str) -> None:
    upgrade(database_url)
    assert revision(database_url) == migrate.head_revision()
    assert read(database_url, schema_diff) == []
    assert read(database_url, constraint_names) == expected_constraint_names()
    # Names follow the naming convention, not the database's defaults.
    assert expected_constraint_names()["runs"][:2] == (
        "pk_runs",
        ["fk_runs_experiment_id_experiments"],
    )
    assert expected_constraint_names()["experiments"][2] == ["uq_experiments_name"]


def test_upgrade_twice_is_a_no_op_and_downgrade_reverses(database_url: str) -> None:
    upgrade(database_url)
    run_id = write(database_url, add_experiment_and_run)
    upgrade(database_url)
    assert revision(database_url) == migrate.head_revision()
    assert read(
        database_url, lambda c: c.execute(text("SELECT run_id FROM runs")).scalars().all()
    ) == [run_id]

    run_alembic(database_url, lambda cfg: command.downgrade(cfg, "base"))
    assert revision(database_url) is None
    assert read(database_url, table_names) == {"alembic_version"}

    upgrade(database_url)
    assert revision(database_url) == migrate.head_revision()
    assert read(database_url, schema_diff) == []


def test_create_all_database_is_stamped_and_served(database_url: str, tmp_path: Path) -> None:
    """A database of the first release (its tables made by create_all, no alembic_version),
    holding metric chunks in that release's packed-array format, is adopted and converted."""

    def first_release_schema(conn: Connection) -> None:
        cfg = migrate.make_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text("DROP TABLE alembic_version"))

    async def create_all(conn: AsyncConnection) -> str:
        await conn.run_sync(first_release_schema)
        run_id = await add_experiment_and_run(conn)
        await conn.execute(
            text(
                "INSERT INTO metric_chunks (run_id, key, n, min_step, max_step, steps,"
                " timestamps, \"values\") VALUES (:r, 'old', 3, 0, 2, :s, :t, :v)"
            ),
            {
                "r": run_id,
                "s": array.array("q", [0, 1, 2]).tobytes(),
                "t": array.array("q", [10, 11, 12]).tobytes(),
                "v": array.array("d", [0.5, float("nan"), float("inf")]).tobytes(),
            },
        )
        return run_id

    run_id = write(database_url, create_all)
    assert "alembic_version" not in read(database_url, table_names)

    srv = start_server(tmp_path, database_url)
    client = TracklineClient(srv.address, retry_seconds=5)
    try:
        exp = client.get_experiment_by_name("before")
        old = list(client.get_metric_history(run_id, "old"))
        assert [(st, ts) for st, ts, _ in old] == [(0, 10), (1, 11), (2, 12)]
        assert old[0][2] == 0.5 and math.isnan(old[1][2]) and old[2][2] == math.inf
        assert client.get_run(run_id).run_name == "r1"
        client.log_metric(run_id, "loss", 0.5, step=1)
        new = client.create_run(exp.experiment_id, run_name="after")
        assert client.get_run(new.run_id).experiment_id == exp.experiment_id
    finally:
        client.close()
        srv.stop()

    assert revision(database_url) == migrate.head_revision()
    assert read(database_url, schema_diff) == []


def test_table_rebuilding_migration_keeps_data_and_foreign_keys(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later revision that rebuilds a referenced table (batch mode on SQLite) runs over data,
    and foreign keys are enforced again afterwards."""
    upgrade(database_url)
    run_id = write(database_url, add_experiment_and_run)

    async def add_param(conn: AsyncConnection) -> None:
        await conn.execute(text("INSERT INTO params VALUES (:r, 'k', 'v')"), {"r": run_id})

    write(database_url, add_param)

    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.SCRIPT_LOCATION, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    head = migrate.head_revision()
    (scripts / "versions" / "9999_widen_run_name.py").write_text(
        "import sqlalchemy as sa\n"
        "from alembic import op\n\n"
        'revision = "9999"\n'
        f'down_revision = "{head}"\n\n\n'
        "def upgrade() -> None:\n"
        '    with op.batch_alter_table("runs") as batch_op:\n'
        '        batch_op.alter_column("run_name", type_=sa.String(600))\n'
    )
    monkeypatch.setattr(migrate, "SCRIPT_LOCATION", scripts)
    upgrade(database_url)
    assert revision(database_url) == "9999"
    assert read(database_url, lambda c: c.execute(text("SELECT * FROM params")).all()) == [
        (run_id, "k", "v")
    ]

    async def add_orphan(conn: AsyncConnection) -> None:
        await conn.execute(text("INSERT INTO params VALUES ('no-such-run', 'k', 'v')"))

    with pytest.raises(IntegrityError):
        write(database_url, add_orphan)


def test_applied_request_ids_keep_their_runs_through_0008(database_url: str) -> None:
    """LogBatch request ids stored before 0008 stay LogBatch ids of the same run after it, so a
    retry that spans the upgrade is still applied once; downgrading keeps them too."""
    run_alembic(database_url, lambda cfg: command.upgrade(cfg, "0007"))

    async def add_id(conn: AsyncConnection) -> None:
        await conn.execute(
            text(
                "INSERT INTO applied_requests (request_id, run_id, applied_time)"
                " VALUES ('rid-1', 'abc', 5)"
            )
        )

    write(database_url, add_id)
    upgrade(database_url)
    rows = read(
        database_url,
        lambda c: c.execute(
            text("SELECT request_id, resource, method, applied_time FROM applied_requests")
        ).all(),
    )
    assert [tuple(r) for r in rows] == [("rid-1", "abc", "LogBatch", 5)]
    run_alembic(database_url, lambda cfg: command.downgrade(cfg, "0007"))
    rows = read(
        database_url,
        lambda c: c.execute(text("SELECT request_id, run_id FROM applied_requests")).all(),
    )
    assert [tuple(r) for r in rows] == [("rid-1", "abc")]


def test_point_blobs_are_compressed_with_lz4_on_postgres(postgres_url: str) -> None:
    """0009: chunk and log blobs use lz4 on PostgreSQL (pglz held dense ingest to a tenth of
    its rate), a stored chunk reads back the same, and downgrading restores the default."""

    def compression(c: Connection) -> dict[str, str]:
        found = c.execute(
            text(
                "SELECT attrelid::regclass::text || '.' || attname, attcompression::text"
                " FROM pg_attribute WHERE (attrelid, attname) IN"
                " (('metric_chunks'::regclass, 'points'), ('metric_chunks'::regclass, 'summary'),"
                " ('metric_log'::regclass, 'body'))"
            )
        ).all()
        return {name: kind for name, kind in found}

    upgrade(postgres_url)
    want = {"metric_chunks.points": "l", "metric_chunks.summary": "l", "metric_log.body": "l"}
    assert read(postgres_url, compression) == want
    body = bytes(range(256)) * 400  # past the TOAST threshold, and compressible

    async def add_log(conn: AsyncConnection) -> None:
        await conn.execute(
            text("INSERT INTO metric_log (points, body) VALUES (1, :b)"), {"b": body}
        )

    write(postgres_url, add_log)
    stored = read(postgres_url, lambda c: c.execute(text("SELECT body FROM metric_log")).scalar())
    assert stored == body
    run_alembic(postgres_url, lambda cfg: command.downgrade(cfg, "0008"))
    assert set(read(postgres_url, compression).values()) == {""}
