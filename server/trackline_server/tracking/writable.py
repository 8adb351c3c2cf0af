"""Whether runs may take metric points: the run check the group-commit writer is given
(``metrics.writer.RunCheck``), so that the series engine stores points only for live runs
without reading tracking's tables itself."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..database import among, fetch_all
from ..metrics.writer import Rejection
from ..models import experiments, runs
from .runs import not_found, unwritable


async def refused_runs(conn: AsyncConnection, run_ids: Sequence[str]) -> dict[str, Rejection]:
    """The runs among ``run_ids`` that may not be written, each with why: RUN_NOT_FOUND,
    RUN_DELETED, or EXPERIMENT_DELETED (the run's experiment is deleted). One query in the
    caller's transaction, however many runs (a flush may name tens of thousands)."""
    wanted = list(run_ids)
    join = runs.join(experiments, runs.c.experiment_id == experiments.c.experiment_id)
    found = await fetch_all(
        conn,
        select(
            runs.c.run_id,
            runs.c.experiment_id,
            runs.c.lifecycle_stage,
            experiments.c.lifecycle_stage,
        )
        .select_from(join)
        .where(await among(conn, runs.c.run_id, wanted)),
    )
    refused: dict[str, Rejection] = {}
    for run_id, experiment_id, stage, experiment_stage in found:
        error = unwritable(run_id, experiment_id, stage, experiment_stage)
        if error is not None:
            refused[run_id] = Rejection(error.reason, error.message)
    if len(found) < len(set(wanted)):
        stored = {row[0] for row in found}
        for run_id in wanted:
            if run_id not in stored:
                missing = not_found(run_id)
                refused[run_id] = Rejection(missing.reason, missing.message)
    return refused
