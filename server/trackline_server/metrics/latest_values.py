"""Each series' latest value, as tracking shows it on a run (GetRun, SearchRuns): the reads of
``latest_metrics``, which the writer's flushes keep current."""

from __future__ import annotations

import math

from sqlalchemy import select

from ..models import latest_metrics
from ..sql import Query, Reader, among, by_code_point, rows

_LM = latest_metrics.c
_OF_RUNS = Query(
    lambda d: (
        select(_LM.run_id, _LM.key, _LM.value, _LM.step, _LM.timestamp)
        .where(among(_LM.run_id, "ids", d))
        .order_by(by_code_point(_LM.key, d))
    )
)


async def of_runs(
    reader: Reader, run_ids: list[str]
) -> list[tuple[str, tuple[str, float, int, int]]]:
    """(run id, (key, value, step, timestamp)) of the latest point of every metric of
    ``run_ids``, in key order; a NaN value (stored as NULL) comes back as NaN."""
    if not run_ids:
        return []
    return [
        (run_id, (key, math.nan if value is None else value, step, ts))
        for run_id, key, value, step, ts in await rows(reader, _OF_RUNS, {"ids": run_ids})
    ]
