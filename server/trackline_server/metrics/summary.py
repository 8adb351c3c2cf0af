"""Chunk summaries: what a chart view needs of a chunk, without its points.

The points of a chunk, sorted by (step, timestamp) with ties kept in arrival order, are cut
into blocks of BLOCK points (the last block may be shorter). Per block the summary keeps the
first step, and three points as (step, timestamp, value, position in the chunk): the first
point with the minimum value and the first with the maximum value (NaN ignored; absent, with
position -1, when every value of the block is NaN), and the last point (highest step, then
latest timestamp, then arrival). That is the downsampler's per-bucket rule applied to the
block, so a reader can take whole blocks in place of their points: 92 bytes per 512 points,
about 1/130 of the points' size.

Stored form (little-endian): a 16-byte header (format version, BLOCK, block count), then
ten 8-byte columns (first step; min step, timestamp, value; max ...; last ...) and three
int32 columns (min, max and last positions), every column 8-aligned.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Positions = npt.NDArray[np.int32]
Index = npt.NDArray[np.intp]
Bools = npt.NDArray[np.bool_]

BLOCK = 512
# Smaller chunks get no summary: summarising costs the writer a fixed ~0.1 ms whatever the
# size, and a chart view reads such chunks whole at little cost (they are 96 KiB at most).
MIN_POINTS = 4096

_VERSION = 1
_HEADER = struct.Struct("<B3xII4x")


@dataclass(frozen=True)
class Points:
    """One chosen point per block (position -1: none, for min and max of all-NaN blocks)."""

    steps: Ints
    stamps: Ints
    values: Floats
    pos: Positions


@dataclass(frozen=True)
class Summary:
    first: Ints  # the lowest step of each block
    mins: Points
    maxs: Points
    lasts: Points

    def __len__(self) -> int:
        return len(self.first)


def summarize(steps: Ints, stamps: Ints, values: Floats) -> bytes | None:
    """The stored summary of one chunk's columns (in arrival order), or None when the chunk
    has fewer than MIN_POINTS points."""
    n = len(values)
    if n < MIN_POINTS:
        return None
    pos: Index | None = None
    if not _sorted(steps, stamps):
        pos = np.lexsort((stamps, steps))  # stable: ties keep arrival order
        steps, stamps, values = steps[pos], stamps[pos], values[pos]
    starts = np.arange(0, n, BLOCK)
    lo, lo_ok, hi, hi_ok = _block_extremes(values)
    last = np.minimum(starts + BLOCK, n) - 1

    def pick(index: Index, ok: Bools | None = None) -> Points:
        where = index if pos is None else pos[index]
        p = where.astype(np.int32)
        if ok is not None:
            p[~ok] = -1
        return Points(steps[index], stamps[index], values[index], p)

    mins, maxs, lasts = pick(lo, lo_ok), pick(hi, hi_ok), pick(last)
    out = [_HEADER.pack(_VERSION, BLOCK, len(starts)), steps[starts].astype("<i8").tobytes()]
    for p in (mins, maxs, lasts):
        out += [p.steps.astype("<i8").tobytes(), p.stamps.astype("<i8").tobytes(),
                p.values.astype("<f8").tobytes()]  # fmt: skip
    out += [p.pos.astype("<i4").tobytes() for p in (mins, maxs, lasts)]
    return b"".join(out)


def decode(blob: bytes) -> Summary:
    """The summary stored by ``summarize``; arrays are read-only views into ``blob``."""
    version, block, count = _HEADER.unpack_from(blob)
    if version != _VERSION or block != BLOCK:
        raise ValueError(f"unknown chunk summary format {version}/{block}")
    if len(blob) != _HEADER.size + count * (10 * 8 + 3 * 4):
        raise ValueError("chunk summary has the wrong size")
    offset = _HEADER.size

    def column(dtype: str) -> npt.NDArray[np.generic]:
        nonlocal offset
        arr = np.frombuffer(blob, dtype, count, offset)
        offset += arr.nbytes
        return arr

    first = column("<i8").astype(np.int64, copy=False)
    cols = [column("<f8" if i % 3 == 2 else "<i8") for i in range(9)]
    pos = [column("<i4").astype(np.int32, copy=False) for _ in range(3)]

    def points(i: int) -> Points:
        steps, stamps, values = cols[3 * i : 3 * i + 3]
        return Points(steps.astype(np.int64, copy=False), stamps.astype(np.int64, copy=False),
                      values.astype(np.float64, copy=False), pos[i])  # fmt: skip

    return Summary(first, points(0), points(1), points(2))


def _sorted(steps: Ints, stamps: Ints) -> bool:
    """Whether the points are already in (step, timestamp) order."""
    ds = np.diff(steps)
    if (ds < 0).any():
        return False
    tied = np.flatnonzero(ds == 0)
    return not len(tied) or bool((stamps[tied + 1] >= stamps[tied]).all())


def _block_extremes(values: Floats) -> tuple[Index, Bools, Index, Bools]:
    """Per block: the index of the first minimum and of the first maximum, NaN ignored, and
    flags that are False for an all-NaN block."""
    n = len(values)
    blocks = -(-n // BLOCK)
    padded = values
    if n < blocks * BLOCK:  # NaN padding never wins
        padded = np.full(blocks * BLOCK, np.nan)
        padded[:n] = values
    grid = padded.reshape(blocks, BLOCK)
    base = np.arange(blocks) * BLOCK
    lo = np.fmin.reduce(grid, axis=1)
    hi = np.fmax.reduce(grid, axis=1)
    lo_i = base + (grid == lo[:, None]).argmax(axis=1)
    hi_i = base + (grid == hi[:, None]).argmax(axis=1)
    return lo_i, lo == lo, hi_i, hi == hi
