"""Each series' latest value, as tracking shows it on a run (GetRun, SearchRuns): the reads of
``latest_metrics``, which the writer's flushes keep current."""

from __future__ import annotations

import math

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..models import latest_metrics


async def of_runs(
    conn: AsyncConnection, run_ids: list[str]
) -> list[tuple[str, tuple[str, float, int, int]]]:
    """(run id, (key, value, step, timestamp)) of the latest point of every metric of
    ``run_ids``; a NaN value (stored as NULL) comes back as NaN."""
    if not run_ids:
        return []
    lm = latest_metrics.c
    rows = await conn.execute(
        select(lm.run_id, lm.key, lm.value, lm.step, lm.timestamp).where(lm.run_id.in_(run_ids))
    )
    return [
        (run_id, (key, math.nan if value is None else value, step, ts))
        for run_id, key, value, step, ts in rows
    ]
