"""Points as columns: the form every write takes once checked (``blocks.py`` decodes it from
the wire), and the form the metric log stores.

A write (a stream batch, or the metrics of a unary LogBatch) becomes one ``Segments``: a
segment is a run of consecutive points of one series (run, key, rank), and the points of all
segments share three numpy columns. Checking and storing then cost a few numpy calls per
batch instead of Python work per point, and only a little per segment.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

Series = tuple[str, str, int]  # (run_id, key, rank)
_T = TypeVar("_T", bound=Hashable)


@dataclass
class Segments:
    """Points of one write. Segment i belongs to series ``series[seg_series[i]]`` and owns
    ``lengths[i]`` points (at least 1), stored after those of the segments before it. Each
    distinct series is listed once, so per-series work is per series, not per segment."""

    series: list[Series]
    seg_series: Ints
    lengths: Ints
    steps: Ints
    stamps: Ints
    values: Floats

    @property
    def points(self) -> int:
        return len(self.values)

    @property
    def nbytes(self) -> int:
        """About the memory held, for the ingest queue's byte bound."""
        return 24 * len(self.values) + 16 * len(self.lengths) + 96 * len(self.series)

    @property
    def run_ids(self) -> list[str]:
        """The distinct run ids, in order of first appearance."""
        return list(dict.fromkeys(s[0] for s in self.series))


def numbered(
    run_ids: Iterable[str],
    keys: Iterable[str],
    ranks: Iterable[int],
    lengths: Ints,
    steps: Ints,
    stamps: Ints,
    values: Floats,
    *,
    distinct: bool = False,
) -> Segments:
    """Segments from per-segment names, numbering the distinct series; ``distinct`` says
    the caller knows every segment is a series of its own."""
    names = list(zip(run_ids, keys, ranks, strict=True))
    if distinct:
        return Segments(names, np.arange(len(names), dtype=np.int64), lengths, steps, stamps,
                        values)  # fmt: skip
    series, ids = number(names)
    return Segments(series, ids, lengths, steps, stamps, values)


def number(names: list[_T]) -> tuple[list[_T], Ints]:
    """The distinct names in order of first appearance, and each name's index among them
    (C-level iteration only: this runs for every segment of every batch)."""
    distinct = list(dict.fromkeys(names))
    if len(distinct) == len(names):
        return distinct, np.arange(len(names), dtype=np.int64)
    position = {s: i for i, s in enumerate(distinct)}
    return distinct, np.fromiter(map(position.__getitem__, names), np.int64, len(names))


def empty() -> Segments:
    return Segments([], np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64),
                    np.empty(0, np.int64), np.empty(0, np.float64))  # fmt: skip


def concat(parts: Iterable[Segments]) -> Segments:
    """Joins writes into one, in order, numbering their series anew."""
    parts = [p for p in parts if len(p.lengths)]
    if not parts:
        return empty()
    if len(parts) == 1:
        return parts[0]
    names = [s for p in parts for s in p.series]
    series, ids = number(names)
    offsets = np.cumsum([0] + [len(p.series) for p in parts[:-1]])
    local = np.concatenate([p.seg_series + off for p, off in zip(parts, offsets, strict=True)])
    return Segments(
        series,
        ids[local],
        np.concatenate([p.lengths for p in parts]),
        np.concatenate([p.steps for p in parts]),
        np.concatenate([p.stamps for p in parts]),
        np.concatenate([p.values for p in parts]),
    )


def split_long(segs: Segments, min_points: int) -> tuple[Segments, Segments]:
    """Splits ``segs`` into the series with at least ``min_points`` points and the rest."""
    if not len(segs.lengths):
        return segs, segs
    per_series = np.bincount(segs.seg_series, weights=segs.lengths, minlength=len(segs.series))
    long = (per_series >= min_points)[segs.seg_series]
    return _subset(segs, long), _subset(segs, ~long)


def _subset(segs: Segments, keep: npt.NDArray[np.bool_]) -> Segments:
    """The segments where ``keep`` is true, their series numbered anew."""
    if keep.all():
        return segs
    if not keep.any():
        return empty()
    points = np.repeat(keep, segs.lengths)
    used, seg_series = np.unique(segs.seg_series[keep], return_inverse=True)
    return Segments([segs.series[i] for i in used.tolist()], seg_series.astype(np.int64),
                    segs.lengths[keep], segs.steps[points], segs.stamps[points],
                    segs.values[points])  # fmt: skip
