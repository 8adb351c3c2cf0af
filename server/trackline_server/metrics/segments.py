"""Incoming points as columns: the checked form of one write, whatever its wire form.

A write (a stream batch, or the metrics of a unary LogBatch) becomes one ``Segments``: a
segment is a run of consecutive points of one series (run, key, rank), and the points of all
segments share three numpy columns. Checking and storing then cost a few numpy calls per
batch instead of Python work per point, and only a little per segment.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from trackline.v1 import ingest_pb2 as ipb
from trackline.v1 import resources_pb2 as pb

from .. import limits, validation
from ..errors import InvalidArgument, shown

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

_KNOWN_KEYS: set[str] = set()  # keys that passed check_key: most writes repeat the same keys
_MAX_KNOWN_KEYS = 100_000
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f]")


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


def check_key(key: str, field: str) -> None:
    """``validation.check_key`` with a memory of keys already found valid."""
    if key in _KNOWN_KEYS:
        return
    validation.check_key(key, field)
    if len(_KNOWN_KEYS) >= _MAX_KNOWN_KEYS:
        _KNOWN_KEYS.clear()
    _KNOWN_KEYS.add(key)


def check_run_id(run_id: str, field: str) -> None:
    """Refuses what names no run and could fail a statement that looked it up: an empty id,
    one longer than MAX_RUN_ID_LENGTH, or one with a control character (PostgreSQL cannot
    take NUL in text). The rest is the flush's lookup."""
    if not run_id:
        raise InvalidArgument("RUN_NOT_FOUND", f"{field} is empty", field)
    if len(run_id) > limits.MAX_RUN_ID_LENGTH or _CONTROL_CHARS.search(run_id):
        raise InvalidArgument(
            "RUN_NOT_FOUND",
            f"{field} {shown(run_id)} is no run id (run ids are at most"
            f" {limits.MAX_RUN_ID_LENGTH} characters, without control characters)",
            field,
        )


def _column(values: Iterable[int], n: int, fill: int, field: str) -> Ints:
    """A repeated integer field as an array of ``n`` entries; an empty field becomes
    ``fill``."""
    arr: Ints = np.array(values, dtype=np.int64)
    if len(arr) == n:
        return arr
    if len(arr) == 0:
        return np.full(n, fill, dtype=np.int64)
    raise InvalidArgument(
        "COLUMN_LENGTH_MISMATCH", f"{field} has {len(arr)} entries but values has {n}", field
    )


# Points per series below which a series' columns go through Python lists (one C-level extend
# each); a longer series is converted by numpy at once. A numpy array per one-point series
# cost 4 us a column, several times the rest of the series' work.
_SHORT_SERIES = 64


class _Column:
    """A column of many series' points, in order: short series gathered in a list, long ones
    as arrays."""

    def __init__(self, dtype: type[np.generic]) -> None:
        self.dtype = dtype
        self.parts: list[npt.NDArray[Any]] = []
        self.short: list[Any] = []

    def add(self, values: Sequence[Any]) -> None:
        self.short.extend(values)

    def add_array(self, values: npt.NDArray[Any]) -> None:
        self._cut()
        self.parts.append(values)

    def _cut(self) -> None:
        if self.short:
            self.parts.append(np.array(self.short, dtype=self.dtype))
            self.short = []

    def array(self) -> npt.NDArray[Any]:
        self._cut()
        return self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)


def _mismatch(path: str, name: str, got: int, n: int) -> InvalidArgument:
    return InvalidArgument(
        "COLUMN_LENGTH_MISMATCH",
        f"{path}.{name} has {got} entries but values has {n}",
        f"{path}.{name}",
    )


def from_series(
    series: Sequence[ipb.RankedSeries | pb.MetricSeries],
    now_ms: int,
    field: str,
    run_id: str = "",
) -> Segments:
    """Checks and converts series messages (RankedSeries of a stream; MetricSeries of a
    LogBatch, all of ``run_id``). Series without values are skipped. The work per series
    is a few attribute reads and list appends: a batch of many one-point series is common.
    The point count is checked first, so an oversized batch is refused before any copy."""
    validation.check_batch_points(sum(len(s.values) for s in series), field)
    run_ids: list[str] = []
    keys: list[str] = []
    ranks: list[int] = []
    lengths: list[int] = []
    steps, stamps, values = _Column(np.int64), _Column(np.int64), _Column(np.float64)
    checked_runs: set[str] = set()
    for i, s in enumerate(series):
        vals = s.values
        n = len(vals)
        key = s.key
        if key not in _KNOWN_KEYS:
            check_key(key, f"{field}[{i}].key")
        st, ts = s.steps, s.timestamps
        if len(st) != n and len(st):
            raise _mismatch(f"{field}[{i}]", "steps", len(st), n)
        if len(ts) != n and len(ts):
            raise _mismatch(f"{field}[{i}]", "timestamps", len(ts), n)
        if isinstance(s, ipb.RankedSeries):
            rid, rank = s.run_id, s.rank
            if rid not in checked_runs:
                check_run_id(rid, f"{field}[{i}].run_id")
                checked_runs.add(rid)
        else:
            rid, rank = run_id, 0
        if n == 0:
            continue
        run_ids.append(rid)
        keys.append(key)
        ranks.append(rank)
        lengths.append(n)
        if n < _SHORT_SERIES:
            steps.add(st if len(st) else [0] * n)
            stamps.add(ts if len(ts) else [now_ms] * n)
            values.add(vals)
        else:
            steps.add_array(_column(st, n, 0, ""))
            stamps.add_array(_column(ts, n, now_ms, ""))
            values.add_array(np.array(vals, dtype=np.float64))
    if not lengths:
        return empty()
    segs = numbered(
        run_ids,
        keys,
        ranks,
        np.array(lengths, dtype=np.int64),
        steps.array(),
        stamps.array(),
        values.array(),
    )
    return segs


def from_block(block: ipb.SeriesBlock, now_ms: int) -> Segments:
    """Checks and converts a SeriesBlock: every column and count at once, each distinct key
    once."""
    n = len(block.lengths)
    if len(block.keys) != n:
        raise InvalidArgument(
            "COLUMN_LENGTH_MISMATCH",
            f"block has {n} lengths and {len(block.keys)} keys; there must be one key per series",
            "block.keys",
        )
    if n == 0:
        if len(block.values) or len(block.steps) or len(block.ranks) or len(block.run_index):
            raise InvalidArgument(
                "COLUMN_LENGTH_MISMATCH", "block has points but no series", "block.lengths"
            )
        return empty()
    lengths = np.array(block.lengths, dtype=np.int64)
    if lengths.min() < 1:
        i = int(np.argmin(lengths))
        raise InvalidArgument(
            "EMPTY_SERIES", f"block.lengths[{i}] is 0; a series needs at least one point",
            f"block.lengths[{i}]",
        )  # fmt: skip
    total = int(lengths.sum())
    values = np.array(block.values, dtype=np.float64)
    if len(values) != total:
        raise InvalidArgument(
            "COLUMN_LENGTH_MISMATCH",
            f"block.values has {len(values)} entries but the lengths add up to {total}",
            "block.values",
        )
    steps = _column(block.steps, total, 0, "block.steps")
    stamps = _column(block.timestamps, total, now_ms, "block.timestamps")
    ranks = list(block.ranks) if len(block.ranks) else [0] * n
    if len(ranks) != n:
        raise InvalidArgument(
            "COLUMN_LENGTH_MISMATCH",
            f"block.ranks has {len(ranks)} entries for {n} series (give one per series, or none)",
            "block.ranks",
        )
    keys = list(block.keys)
    distinct_keys = set(keys)
    for key in distinct_keys - _KNOWN_KEYS:
        try:
            check_key(key, "block.keys")
        except InvalidArgument:  # the position only for a bad key: index() is a scan
            check_key(key, f"block.keys[{keys.index(key)}]")
    runs = list(block.run_ids)
    for run_id in set(runs):
        try:
            check_run_id(run_id, "block.run_ids")
        except InvalidArgument:
            check_run_id(run_id, f"block.run_ids[{runs.index(run_id)}]")
    if len(block.run_index):
        if len(block.run_index) != n:
            raise InvalidArgument(
                "COLUMN_LENGTH_MISMATCH",
                f"block.run_index has {len(block.run_index)} entries for {n} series",
                "block.run_index",
            )
        index = list(block.run_index)
        if max(index) >= len(runs):
            raise InvalidArgument(
                "INVALID_RUN_INDEX",
                f"block.run_index[{index.index(max(index))}] is {max(index)}, but block.run_ids"
                f" has {len(runs)} entries",
                "block.run_index",
            )
        run_ids = list(map(runs.__getitem__, index))
    elif len(runs) == n:
        run_ids = runs
    elif len(runs) == 1:
        run_ids = [runs[0]] * n
    else:
        raise InvalidArgument(
            "COLUMN_LENGTH_MISMATCH",
            f"block.run_ids has {len(runs)} entries for {n} series: give one per series, a single"
            " one for all, or each run once with run_index",
            "block.run_ids",
        )
    # Distinct keys (the usual block) make distinct series: no numbering needed.
    segs = numbered(run_ids, keys, ranks, lengths, steps, stamps, values,
                    distinct=len(distinct_keys) == n)  # fmt: skip
    validation.check_batch_points(segs.points, "block")
    return segs


def from_request(request: ipb.StreamMetricsRequest, now_ms: int) -> Segments:
    """All points of a stream batch, series first, then the block."""
    parts = []
    if len(request.series):
        parts.append(from_series(request.series, now_ms, "series"))
    if request.HasField("block"):
        parts.append(from_block(request.block, now_ms))
    segs = concat(parts)
    validation.check_batch_points(segs.points, "series")
    return segs
