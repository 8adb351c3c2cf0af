"""Whether runs may take metric points: the run check the group-commit writer is given
(``metrics.writer.RunCheck``), so that the series engine stores points only for live runs
without reading tracking's tables itself."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from ..errors import FailedPrecondition, NotFound
from ..models import experiments, runs
from ..sql import Query, Writer, among, rows
from .runs import not_found, unwritable

_STAGES = Query(
    lambda d: (
        select(
            runs.c.run_id,
            runs.c.experiment_id,
            runs.c.lifecycle_stage,
            experiments.c.lifecycle_stage,
        )
        .select_from(runs.join(experiments, runs.c.experiment_id == experiments.c.experiment_id))
        .where(among(runs.c.run_id, "ids", d))
    )
)


async def refused_runs(
    conn: Writer, run_ids: Sequence[str]
) -> dict[str, NotFound | FailedPrecondition]:
    """The runs among ``run_ids`` that may not be written, each with why: NOT_FOUND
    RUN_NOT_FOUND, FAILED_PRECONDITION RUN_DELETED or EXPERIMENT_DELETED (the run's experiment
    is deleted). One query in the caller's transaction, however many runs (a flush may name
    tens of thousands)."""
    wanted = list(run_ids)
    found = await rows(conn, _STAGES, {"ids": wanted})
    refused: dict[str, NotFound | FailedPrecondition] = {}
    for run_id, experiment_id, stage, experiment_stage in found:
        error = unwritable(run_id, experiment_id, stage, experiment_stage)
        if error is not None:
            refused[run_id] = error
    if len(found) < len(set(wanted)):
        stored = {row[0] for row in found}
        for run_id in wanted:
            if run_id not in stored:
                refused[run_id] = not_found(run_id)
    return refused
