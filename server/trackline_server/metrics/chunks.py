"""The stored form of metric points, and how the points of a flush become rows.

A chunk row holds points of one series (run, key, rank), in arrival order. Its ``points``
blob is the protobuf wire form of a ``RankedSeries`` carrying only fields 4 (steps,
sfixed64), 5 (timestamps, sfixed64) and 6 (values, double). Chunks written now put 8 bytes
before each column (a padding field 15, then the column's tag and length), so every column
starts 8-aligned and readers get aligned numpy views without copying (``columns``). Older
chunks may hold several concatenated packed runs per column (the protobuf rule for repeated
fields makes that the columns appended); ``columns`` reads both. The API's field numbers
are frozen by ``buf breaking``, which freezes this format with them.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ..database import driver_connection, execute_many
from ..models import latest_metrics
from . import segments, summary

if TYPE_CHECKING:
    from .segments import Segments

# A longer series is stored as several rows, so that no chunk is too large to page through
# or to hold in memory.
MAX_CHUNK_POINTS = 262_144

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

_STEPS, _TIMESTAMPS, _VALUES = 4, 5, 6
_PAD = 15  # an unknown field whose bytes align the next column to 8 bytes
_LEN, _I64 = 2, 1  # wire types: length-delimited (packed), 64-bit (unpacked element)


def columns(blob: bytes) -> tuple[Ints, Ints, Floats]:
    """Decodes a chunk blob into (steps, timestamps, values) arrays; views into ``blob`` when
    each column is one packed run, copies when parts were concatenated."""
    found: dict[int, list[npt.NDArray[np.generic]]] = {_STEPS: [], _TIMESTAMPS: [], _VALUES: []}
    view = memoryview(blob)
    pos, end = 0, len(blob)
    while pos < end:
        tag, pos = _varint(view, pos)
        field, wire = tag >> 3, tag & 7
        if wire == _LEN:
            size, pos = _varint(view, pos)
            if field in found:
                dtype = "<f8" if field == _VALUES else "<i8"
                found[field].append(np.frombuffer(blob, dtype, size // 8, pos))
            pos += size
        elif wire == _I64:
            if field in found:
                dtype = "<f8" if field == _VALUES else "<i8"
                found[field].append(np.frombuffer(blob, dtype, 1, pos))
            pos += 8
        else:
            raise ValueError(f"unexpected wire type {wire} in a metric chunk")

    def join(parts: list[npt.NDArray[np.generic]], dtype: str) -> npt.NDArray[np.generic]:
        if not parts:
            return np.empty(0, dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    steps = join(found[_STEPS], "<i8")
    stamps = join(found[_TIMESTAMPS], "<i8")
    values = join(found[_VALUES], "<f8")
    return (
        steps.astype(np.int64, copy=False),
        stamps.astype(np.int64, copy=False),
        values.astype(np.float64, copy=False),
    )


def _varint(view: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


Latest = dict[tuple[str, str], tuple[int, int, float]]  # (run, key) -> (step, stamp, value)


async def upsert_latest(conn: AsyncConnection, latest: Latest) -> None:
    """Moves each (run, key)'s stored latest value forward to ``latest``'s where that one is
    later (by step, then timestamp; a tie goes to the new one)."""
    await upsert_latest_rows(conn, latest_rows(latest))


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


async def upsert_latest_rows(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """``upsert_latest`` of rows from ``latest_rows``."""
    if not rows:
        return
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(latest_metrics)
    new = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[latest_metrics.c.run_id, latest_metrics.c.key],
        set_={"value": new.value, "step": new.step, "timestamp": new.timestamp},
        where=or_(
            new.step > latest_metrics.c.step,
            and_(new.step == latest_metrics.c.step, new.timestamp >= latest_metrics.c.timestamp),
        ),
    )
    await execute_many(conn, stmt, rows)


@functools.lru_cache(maxsize=4096)
def _headers(n: int) -> tuple[bytes, bytes, bytes]:
    """The 8 bytes before each column of an ``n``-point blob: a padding field, then the
    column's tag and length. Every column then starts 8-aligned in the blob (and in memory:
    CPython keeps a bytes object's data 8-aligned), so readers get aligned numpy views."""
    out = []
    for field in (_STEPS, _TIMESTAMPS, _VALUES):
        col = bytes([field << 3 | _LEN]) + encode_varint(8 * n)
        pad = 6 - len(col)
        out.append(bytes([_PAD << 3 | _LEN, pad]) + bytes(pad) + col)
    return out[0], out[1], out[2]


def encode_varint(value: int) -> bytes:
    """The protobuf varint of one int64 (as two's complement: a negative one takes 10
    bytes)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


Row = tuple[str, str, int, int, int, int, bytes, bytes | None]


async def write_segments(conn: AsyncConnection, segs: Segments) -> None:
    """Stores the points of ``segs`` as chunk rows (``chunk_rows``) in the caller's
    transaction. Latest values are ``move_latest``'s job."""
    await insert_rows(conn, chunk_rows(segs))


async def insert_rows(conn: AsyncConnection, rows: list[Row]) -> None:
    """Inserts chunk rows in the caller's transaction, bypassing SQLAlchemy's per-row
    parameter processing: the driver's executemany on SQLite, COPY on PostgreSQL (asyncpg's
    pipelined executemany stalled here with multi-MB rows)."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        driver = await driver_connection(conn)
        await driver.executemany(_insert_sql(), rows)  # one hop to the driver's thread
        return
    await conn.exec_driver_sql("SELECT 1")  # the adapter opens its transaction on first use
    driver = await driver_connection(conn)
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
        bounds = [np.arange(a, b, MAX_CHUNK_POINTS) for a, b in zip(starts, ends, strict=True)]
        row_starts = np.concatenate(bounds)
        row_series = np.repeat(np.arange(nser), [len(b) for b in bounds])
    row_ends = np.append(row_starts[1:], len(values))
    mins = np.minimum.reduceat(steps, row_starts).tolist()
    maxs = np.maximum.reduceat(steps, row_starts).tolist()
    # Byte views of the columns: each blob below is built with one copy of its points.
    step_bytes, stamp_bytes, value_bytes = (memoryview(np.ascontiguousarray(a).view(np.uint8))  # type: ignore[arg-type]
                                            for a in (steps, stamps, values))  # fmt: skip
    rows: list[Row] = []
    for a, b, s, lo, hi in zip(row_starts.tolist(), row_ends.tolist(), row_series.tolist(), mins,
                               maxs, strict=True):  # fmt: skip
        h_steps, h_stamps, h_values = _headers(b - a)
        blob = b"".join((h_steps, step_bytes[8 * a : 8 * b], h_stamps, stamp_bytes[8 * a : 8 * b],
                         h_values, value_bytes[8 * a : 8 * b]))  # fmt: skip
        run_id, key, rank = series[s]
        brief = (
            summary.summarize(steps[a:b], stamps[a:b], values[a:b])
            if b - a >= summary.MIN_POINTS
            else None
        )
        rows.append((run_id, key, rank, b - a, lo, hi, blob, brief))
    return rows


async def move_latest(conn: AsyncConnection, segs: Segments) -> None:
    """Moves each (run, key)'s latest value forward to ``latest_of(segs)``, in the caller's
    transaction."""
    await upsert_latest(conn, latest_of(segs))


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


_COLUMNS = ("run_id", "key", "rank", "n", "min_step", "max_step", "points", "summary")


@functools.lru_cache(maxsize=1)
def _insert_sql() -> str:
    names = ", ".join(f'"{c}"' for c in _COLUMNS)
    marks = ", ".join("?" * len(_COLUMNS))
    return f"INSERT INTO metric_chunks ({names}) VALUES ({marks})"
