"""In-process group-commit writers over a real database, for tests of the ingest layer."""

from __future__ import annotations

from trackline_server.database import Database
from trackline_server.metrics.writer import GroupCommitWriter
from trackline_server.tracking import experiments, runs, writable


async def writer_with_a_run(db: Database) -> tuple[GroupCommitWriter, str]:
    """A started group-commit writer over ``db`` (schema created) and the id of a new run in
    it."""
    async with db.write() as conn:
        exp_id = await experiments.create(conn, "e", "", {}, "/artifacts")
        run_id = await runs.create(conn, exp_id, "r", 0, {}, "")
    writer = GroupCommitWriter(db, writable.refused_runs, linger=0.001)
    writer.start()
    return writer, run_id
