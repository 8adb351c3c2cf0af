"""Stored points in SQL: chunk rows (``metric_chunks``) and each series' latest value
(``latest_metrics``), and how the points of a write become those rows.

A chunk row holds points of one series (run, key, rank), in arrival order, as a blob
(``codec.py``), with its point count, step bounds and, when long enough, a summary for chart
views (``summary.py``). The latest-value row of (run, key) moves forward with every write, so
search sees a point as soon as it is acked.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from sqlalchemy import Executable, and_, or_
from sqlalchemy.dialects import postgresql, sqlite

from ..models import latest_metrics
from ..sql import Query, Writer, driver_in_transaction, execute_many
from . import codec, segments, summary
from .segments import Segments

# A longer series is stored as several rows, so that no chunk is too large to page through
# or to hold in memory.
MAX_CHUNK_POINTS = 262_144

Row = tuple[str, str, int, int, int, int, bytes, bytes | None]


async def insert_rows(conn: Writer, rows: list[Row]) -> None:
    """Inserts chunk rows in the caller's transaction, bypassing SQLAlchemy's per-row
    parameter processing: the driver's executemany on SQLite, COPY on PostgreSQL (asyncpg's
    pipelined executemany stalled here with multi-MB rows)."""
    if not rows:
        return
    driver = await driver_in_transaction(conn)
    if conn.dialect.name != "postgresql":
        await driver.executemany(_insert_sql(), rows)
        return
    await driver.copy_records_to_table("metric_chunks", records=rows, columns=_COLUMNS)


def chunk_rows(segs: Segments) -> list[Row]:
    """The chunk rows of ``segs``: one per series (more for a series over MAX_CHUNK_POINTS),
    points of a series in arrival order, with a summary when the row is long enough. The work
    is a few numpy passes plus a little per series, however many segments a series has."""
    nseg, nser = len(segs.lengths), len(segs.series)
    if nseg == 0:
        return []
    series, seg_series, seg_lengths = segs.series, segs.seg_series, segs.lengths
    steps, stamps, values = segs.steps, segs.stamps, segs.values
    # A caller that passes its only reference (the compactor) lets each column go as soon as
    # its reordered copy exists: a compaction's memory peak is one column lower.
    del segs
    if nser < nseg:  # a series has several segments: gather them, keeping arrival order
        seg_order = np.argsort(seg_series, kind="stable")
        lengths = seg_lengths[seg_order]
        old_starts = (np.cumsum(seg_lengths) - seg_lengths)[seg_order]
        new_starts = np.cumsum(lengths) - lengths
        order = np.repeat(old_starts - new_starts, lengths) + np.arange(len(values))
        steps = steps[order]
        stamps = stamps[order]
        values = values[order]
        del order
    counts = np.bincount(seg_series, weights=seg_lengths, minlength=nser).astype(np.int64)
    ends = np.cumsum(counts)
    starts = ends - counts
    if counts.max() <= MAX_CHUNK_POINTS:
        row_starts, row_series = starts, np.arange(nser)
    else:
        cuts = [np.arange(a, b, MAX_CHUNK_POINTS) for a, b in zip(starts, ends, strict=True)]
        row_starts = np.concatenate(cuts)
        row_series = np.repeat(np.arange(nser), [len(c) for c in cuts])
    mins = np.minimum.reduceat(steps, row_starts).tolist()
    maxs = np.maximum.reduceat(steps, row_starts).tolist()
    bounds = [*row_starts.tolist(), len(values)]
    blobs = codec.chunk_blobs(steps, stamps, values, bounds)
    rows: list[Row] = []
    for a, b, s, lo, hi, blob in zip(bounds[:-1], bounds[1:], row_series.tolist(), mins, maxs,
                                     blobs, strict=True):  # fmt: skip
        run_id, key, rank = series[s]
        brief = (
            summary.summarize(steps[a:b], stamps[a:b], values[a:b])
            if b - a >= summary.MIN_POINTS
            else None
        )
        rows.append((run_id, key, rank, b - a, lo, hi, blob, brief))
    return rows


Latest = dict[tuple[str, str], tuple[int, int, float]]  # (run, key) -> (step, stamp, value)


def latest_of(segs: Segments) -> Latest:
    """Each (run, key)'s latest point in ``segs``, all ranks together: the highest step, then
    the latest timestamp, then the point written last (MLflow's rule)."""
    nseg = len(segs.lengths)
    if nseg == 0:
        return {}
    index, series_rk = segments.number([(r, k) for r, k, _ in segs.series])
    seg_rk = series_rk[segs.seg_series]
    steps, stamps = segs.steps, segs.stamps
    ends = np.cumsum(segs.lengths)
    # When every segment is in (step, timestamp) order, its last point is its latest, and
    # only those need sorting; otherwise every point does.
    d_step, d_stamp = np.diff(steps), np.diff(stamps)
    backwards = (d_step < 0) | ((d_step == 0) & (d_stamp < 0))
    backwards[ends[:-1] - 1] = False  # from one segment to the next does not count
    if backwards.any():
        picks, group = np.arange(len(steps)), np.repeat(seg_rk, segs.lengths)
    else:
        picks, group = ends - 1, seg_rk
    # lexsort is stable: among equal (group, step, timestamp) the point that came last sorts
    # last, so the last entry of each group is its latest point.
    order = np.lexsort((stamps[picks], steps[picks], group))
    last = picks[order[np.cumsum(np.bincount(group, minlength=len(index))) - 1]]
    return {
        rk: (step, stamp, value)
        for rk, step, stamp, value in zip(
            index,
            steps[last].tolist(),
            stamps[last].tolist(),
            segs.values[last].tolist(),
            strict=True,
        )  # fmt: skip
    }


def latest_rows(latest: Latest) -> list[dict[str, Any]]:
    """``latest`` as the rows ``upsert_latest_rows`` takes (Python work per series: a caller
    with many series may build them off the event loop)."""
    # NaN is stored as NULL: SQLite has no NaN, and NULL keeps search comparisons IEEE-like.
    return [
        {
            "run_id": run_id,
            "key": key,
            "value": None if math.isnan(value) else value,
            "step": step,
            "timestamp": ts,
        }
        for (run_id, key), (step, ts, value) in latest.items()
    ]


async def upsert_latest_rows(conn: Writer, rows: list[dict[str, Any]]) -> None:
    """Moves each (run, key)'s stored latest value forward to that of ``rows`` (from
    ``latest_rows``) where that one is later (by step, then timestamp; a tie goes to the new
    one), in the caller's transaction."""
    if rows:
        await execute_many(conn, _UPSERT_LATEST, rows)


def _upsert_latest(dialect_name: str) -> Executable:
    dialect = sqlite if dialect_name == "sqlite" else postgresql
    stmt = dialect.insert(latest_metrics)
    new = stmt.excluded
    upsert: Executable = stmt.on_conflict_do_update(
        index_elements=[latest_metrics.c.run_id, latest_metrics.c.key],
        set_={"value": new.value, "step": new.step, "timestamp": new.timestamp},
        where=or_(
            new.step > latest_metrics.c.step,
            and_(new.step == latest_metrics.c.step, new.timestamp >= latest_metrics.c.timestamp),
        ),
    )
    return upsert


_UPSERT_LATEST = Query(_upsert_latest)


_COLUMNS = ("run_id", "key", "rank", "n", "min_step", "max_step", "points", "summary")


@functools.lru_cache(maxsize=1)
def _insert_sql() -> str:
    names = ", ".join(f'"{c}"' for c in _COLUMNS)
    marks = ", ".join("?" * len(_COLUMNS))
    return f"INSERT INTO metric_chunks ({names}) VALUES ({marks})"
