"""Whether runs may take metric points: the run check the group-commit writer is given
(``metrics.writer.RunCheck``), so that the series engine stores points only for live runs
without reading tracking's tables itself."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import lifecycle
from ..database import among, fetch_all
from ..errors import shown
from ..metrics.writer import Rejection
from ..models import experiments, runs


async def refused_runs(conn: AsyncConnection, run_ids: Sequence[str]) -> dict[str, Rejection]:
    """The runs among ``run_ids`` that may not be written, each with why: RUN_NOT_FOUND,
    RUN_DELETED, or EXPERIMENT_DELETED (the run's experiment is deleted). One query in the
    caller's transaction, however many runs (a flush may name tens of thousands)."""
    wanted = list(run_ids)
    join = runs.join(experiments, runs.c.experiment_id == experiments.c.experiment_id)
    found = await fetch_all(
        conn,
        select(runs.c.run_id, runs.c.lifecycle_stage, experiments.c.lifecycle_stage)
        .select_from(join)
        .where(await among(conn, runs.c.run_id, wanted)),
    )
    refused: dict[str, Rejection] = {}
    for run_id, stage, experiment_stage in found:
        if stage != lifecycle.ACTIVE:
            refused[run_id] = Rejection(
                "RUN_DELETED", f"run {shown(run_id)} is deleted; restore it first"
            )
        elif experiment_stage != lifecycle.ACTIVE:
            refused[run_id] = Rejection(
                "EXPERIMENT_DELETED",
                f"the experiment of run {shown(run_id)} is deleted; restore it first",
            )
    if len(found) < len(set(wanted)):
        stored = {run_id for run_id, _, _ in found}
        for run_id in wanted:
            if run_id not in stored:
                refused[run_id] = Rejection("RUN_NOT_FOUND", f"no run with id {shown(run_id)}")
    return refused
