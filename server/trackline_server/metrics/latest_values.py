"""Each series' latest value, as tracking shows it on a run (GetRun, SearchRuns): the reads of
``latest_metrics``, which the writer's flushes keep current."""

from __future__ import annotations

import math

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..models import latest_metrics

_LM = latest_metrics.c
# Built once (statement construction showed in profiles of GetRun); takes {"ids": [...]}.
_OF_RUNS = select(_LM.run_id, _LM.key, _LM.value, _LM.step, _LM.timestamp).where(
    _LM.run_id.in_(bindparam("ids", expanding=True))
)


async def of_runs(
    conn: AsyncConnection, run_ids: list[str]
) -> list[tuple[str, tuple[str, float, int, int]]]:
    """(run id, (key, value, step, timestamp)) of the latest point of every metric of
    ``run_ids``; a NaN value (stored as NULL) comes back as NaN."""
    if not run_ids:
        return []
    rows = await conn.execute(_OF_RUNS, {"ids": run_ids})
    return [
        (run_id, (key, math.nan if value is None else value, step, ts))
        for run_id, key, value, step, ts in rows
    ]
