"""The stored form of metric points, and how a group of incoming series becomes rows.

A chunk row holds points of one series (run, key, rank). Its ``points`` blob is the protobuf
wire form of a ``RankedSeries`` with only fields 4 (steps, sfixed64), 5 (timestamps, sfixed64)
and 6 (values, double) set, so an incoming series is stored by serialising it (C speed) and
several parts of one series merge by concatenating their bytes: the protobuf rule for
repeated fields makes the concatenation the message with the columns appended. Readers decode
a blob into numpy arrays without copying (``columns``). The API's field numbers are frozen by
``buf breaking``, which freezes this format with them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, insert, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline.v1 import ingest_pb2 as ipb

from ..models import latest_metrics, metric_chunks

# Parts of one series gathered in one flush are merged up to this many points per row.
MAX_CHUNK_POINTS = 262_144

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

_STEPS, _TIMESTAMPS, _VALUES = 4, 5, 6
_SMALL = 64  # series up to this many points are summarised without numpy
_LEN, _I64 = 2, 1  # wire types: length-delimited (packed), 64-bit (unpacked element)


@dataclass
class Part:
    """Points of one series from one write, encoded and summarised."""

    run_id: str
    key: str
    rank: int
    blob: bytes
    n: int
    min_step: int
    max_step: int
    last: tuple[int, int, float]  # (step, timestamp, value) of the latest point


def part_from_ranked(series: ipb.RankedSeries, now_ms: int) -> Part:
    """Encodes ``series`` (already validated: equal column lengths, at least one value).
    Clears its identity fields: the message belongs to the caller's request and is spent."""
    run_id, key, rank = series.run_id, series.key, series.rank
    n = len(series.values)
    if not series.steps:
        series.steps.extend([0] * n)
    if not series.timestamps:
        series.timestamps.extend([now_ms] * n)
    series.ClearField("run_id")
    series.ClearField("key")
    series.ClearField("rank")
    blob = series.SerializeToString()
    if n <= _SMALL:
        # numpy's per-call overhead dominates for a few points; plain Python is faster, and
        # steps usually ascend, so the last point is the latest without looking further.
        steps = list(series.steps)
        top = max(steps)
        if steps[-1] == top and (n == 1 or steps[-2] < top):
            i = n - 1
        else:
            stamps = list(series.timestamps)
            i = max((j for j in range(n) if steps[j] == top), key=lambda j: (stamps[j], j))
        last = (top, series.timestamps[i], series.values[i])
        return Part(run_id, key, rank, blob, n, min(steps), top, last)
    a_steps, a_stamps, a_values = columns(blob)
    return Part(run_id, key, rank, blob, n, int(a_steps.min()), int(a_steps.max()),
                latest_point(a_steps, a_stamps, a_values))  # fmt: skip


def parts_from_ranked(series: ipb.RankedSeries, now_ms: int) -> list[Part]:
    """Like ``part_from_ranked``, but a series longer than MAX_CHUNK_POINTS becomes several
    parts, so that no chunk is too large to page through or to hold in memory."""
    n = len(series.values)
    if n <= MAX_CHUNK_POINTS:
        return [part_from_ranked(series, now_ms)]
    steps = series.steps or [0] * n
    stamps = series.timestamps or [now_ms] * n
    return [
        part_from_ranked(
            ipb.RankedSeries(
                run_id=series.run_id,
                key=series.key,
                rank=series.rank,
                steps=steps[a : a + MAX_CHUNK_POINTS],
                timestamps=stamps[a : a + MAX_CHUNK_POINTS],
                values=series.values[a : a + MAX_CHUNK_POINTS],
            ),
            now_ms,
        )
        for a in range(0, n, MAX_CHUNK_POINTS)
    ]


def part_from_columns(
    run_id: str,
    key: str,
    rank: int,
    steps: Sequence[int],
    timestamps: Sequence[int],
    values: Sequence[float],
) -> list[Part]:
    """Encodes columns given as sequences (the unary LogBatch path)."""
    msg = ipb.RankedSeries(run_id=run_id, key=key, rank=rank)
    msg.steps.extend(steps)
    msg.timestamps.extend(timestamps)
    msg.values.extend(values)
    return parts_from_ranked(msg, 0)


def latest_point(steps: Ints, stamps: Ints, values: Floats) -> tuple[int, int, float]:
    """The point with the highest step, then the latest timestamp, then written last
    (MLflow's rule for a run's latest metric value)."""
    top = steps.max()
    candidates = np.flatnonzero(steps == top)
    if len(candidates) > 1:
        stamp = stamps[candidates]
        candidates = candidates[stamp == stamp.max()]
    i = int(candidates[-1])
    return int(steps[i]), int(stamps[i]), float(values[i])


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


def merge(parts: Iterable[Part]) -> list[Part]:
    """Merges parts of the same series (run, key, rank) in arrival order into as few parts as
    MAX_CHUNK_POINTS allows: fewer rows is what keeps many small batches cheap."""
    groups: dict[tuple[str, str, int], list[list[Part]]] = {}
    filled: dict[tuple[str, str, int], int] = {}  # points in each series' open group
    for p in parts:
        series = (p.run_id, p.key, p.rank)
        runs = groups.setdefault(series, [[]])
        if runs[-1] and filled[series] + p.n > MAX_CHUNK_POINTS:
            runs.append([])
            filled[series] = 0
        runs[-1].append(p)
        filled[series] = filled.get(series, 0) + p.n
    merged: list[Part] = []
    for chunk_groups in groups.values():
        for g in chunk_groups:
            if len(g) == 1:
                merged.append(g[0])
                continue
            latest = g[0].last
            for p in g[1:]:
                if (p.last[0], p.last[1]) >= (latest[0], latest[1]):
                    latest = p.last
            first = g[0]
            merged.append(
                Part(first.run_id, first.key, first.rank, b"".join(p.blob for p in g),
                     sum(p.n for p in g), min(p.min_step for p in g),
                     max(p.max_step for p in g), latest)
            )  # fmt: skip
    return merged


async def write_parts(conn: AsyncConnection, parts: Sequence[Part]) -> None:
    """Inserts chunk rows for ``parts`` and moves each series' latest value forward, in the
    caller's transaction. Runs must have been checked to exist and be active."""
    if not parts:
        return
    rows = [
        {
            "run_id": p.run_id,
            "key": p.key,
            "rank": p.rank,
            "n": p.n,
            "min_step": p.min_step,
            "max_step": p.max_step,
            "points": p.blob,
        }
        for p in merge(parts)
    ]
    await conn.execute(insert(metric_chunks), rows)
    latest: dict[tuple[str, str], tuple[int, int, float]] = {}
    for p in parts:
        cur = latest.get((p.run_id, p.key))
        if cur is None or (p.last[0], p.last[1]) >= (cur[0], cur[1]):
            latest[(p.run_id, p.key)] = p.last
    await _upsert_latest(conn, latest)


async def _upsert_latest(
    conn: AsyncConnection, latest: dict[tuple[str, str], tuple[int, int, float]]
) -> None:
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
    # NaN is stored as NULL: SQLite has no NaN, and NULL keeps search comparisons IEEE-like.
    await conn.execute(
        stmt,
        [
            {
                "run_id": run_id,
                "key": key,
                "value": None if math.isnan(value) else value,
                "step": step,
                "timestamp": ts,
            }
            for (run_id, key), (step, ts, value) in latest.items()
        ],
    )
