"""In-process group-commit writers over a real database, for tests of the ingest layer."""

from __future__ import annotations

from trackline_server.database import Database
from trackline_server.metrics.writer import GroupCommitWriter
from trackline_server.tracking import store


async def writer_with_a_run(db: Database) -> tuple[GroupCommitWriter, str]:
    """A started group-commit writer over ``db`` (schema created) and the id of a new run in
    it."""
    async with db.write() as conn:
        exp = await store.create_experiment(conn, "e", "", {}, "/artifacts")
        run = await store.create_run(conn, exp.experiment_id, "r", 0, {}, "")
    writer = GroupCommitWriter(db, linger=0.001)
    writer.start()
    return writer, run.run_id
