"""Rows written into databases at an old schema revision (the migration tests'), in the columns
every revision has: today's write code writes columns that later revisions added."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline_server.tracking import experiments


async def add_experiment_and_run(
    conn: AsyncConnection, experiment: str = "before", run_tags: dict[str, str] | None = None
) -> str:
    """An experiment (tagged team=cv) holding a run (with ``run_tags``, default t=v); the run's
    id. The experiments table is the first release's still, so it is written as today."""
    exp_id = await experiments.create(conn, experiment, "", {"team": "cv"}, "/artifacts")
    run_id = uuid.uuid4().hex
    await conn.execute(
        text(
            "INSERT INTO runs (run_id, experiment_id, run_name, status, start_time,"
            " lifecycle_stage, artifact_uri) VALUES (:r, :e, 'r1', 1, 1000, 1, '/artifacts/r')"
        ),
        {"r": run_id, "e": exp_id},
    )
    for key, value in ({"t": "v"} if run_tags is None else run_tags).items():
        await conn.execute(
            text("INSERT INTO tags (run_id, key, value) VALUES (:r, :k, :v)"),
            {"r": run_id, "k": key, "v": value},
        )
    return run_id
