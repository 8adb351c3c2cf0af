"""The one decoder of incoming points: a block's columns (SeriesBlock, ingest.proto), checked
and turned into ``Segments``.

A stream batch carries its points as a SeriesBlock; a LogBatch carries one MetricSeries per
series, all of one run, which ``from_metric_series`` turns into block columns first, so both
go through the same checks (``decode``). Errors name the request's own fields (``Fields``):
``block.keys[3]`` in a stream batch, ``metrics[3].key`` in a LogBatch.

Whatever could fail a statement is refused here, before the write joins a group commit whose
other writes it would fail: bad keys, run ids no run can have, columns that do not add up,
too many points. Whether the runs exist is the flush's to find out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from trackline.v1 import ingest_pb2 as ipb
from trackline.v1 import resources_pb2 as pb

from .. import validation
from ..errors import InvalidArgument, NotFound
from .segments import Floats, Ints, Segments, empty, numbered

_KNOWN_KEYS: set[str] = set()  # keys that passed check_key: most writes repeat the same keys
_MAX_KNOWN_KEYS = 100_000
# Points per series below which a LogBatch series' columns go through Python lists (one
# C-level extend each); a longer series is converted by numpy at once. A numpy array per
# one-point series cost 4 us a column, several times the rest of the series' work.
_SHORT_SERIES = 64


class Columns(Protocol):
    """A block's columns, as SeriesBlock holds them; the point columns may be numpy arrays."""

    @property
    def run_ids(self) -> Sequence[str]: ...
    @property
    def keys(self) -> Sequence[str]: ...
    @property
    def ranks(self) -> Sequence[int]: ...
    @property
    def lengths(self) -> Sequence[int]: ...
    @property
    def steps(self) -> Sequence[int] | Ints: ...
    @property
    def timestamps(self) -> Sequence[int] | Ints: ...
    @property
    def values(self) -> Sequence[float] | Floats: ...
    @property
    def run_index(self) -> Sequence[int]: ...


class Fields:
    """The field paths a block's errors name (BadRequest field violations), under
    ``prefix``: ``block.keys``, ``block.keys[3]``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def column(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def entry(self, name: str, i: int) -> str:
        return f"{self.prefix}.{name}[{i}]"


BLOCK = Fields("block")  # a stream batch's block


def check_key(key: str, field: str) -> None:
    """``validation.check_key`` with a memory of keys already found valid."""
    if key in _KNOWN_KEYS:
        return
    validation.check_key(key, field)
    if len(_KNOWN_KEYS) >= _MAX_KNOWN_KEYS:
        _KNOWN_KEYS.clear()
    _KNOWN_KEYS.add(key)


def from_request(request: ipb.StreamMetricsRequest, now_ms: int) -> Segments:
    """The points of a stream batch (none when it carries no block)."""
    return decode(request.block, now_ms) if request.HasField("block") else empty()


def decode(block: Columns, now_ms: int, fields: Fields = BLOCK) -> Segments:
    """Checks a block and converts it: every column and count at once, each distinct key and
    run id once. Empty steps mean step 0, empty timestamps ``now_ms``, empty ranks rank 0."""
    n = len(block.lengths)
    if len(block.keys) != n:
        raise InvalidArgument(
            "COLUMN_LENGTH_MISMATCH",
            f"{fields.prefix} has {n} lengths and {len(block.keys)} keys; there must be one key"
            " per series",
            fields.column("keys"),
        )
    if n == 0:
        if len(block.values) or len(block.steps) or len(block.ranks) or len(block.run_index):
            raise InvalidArgument(
                "COLUMN_LENGTH_MISMATCH",
                f"{fields.prefix} has points but no series",
                fields.column("lengths"),
            )
        return empty()
    lengths = np.asarray(block.lengths, dtype=np.int64)
    if lengths.min() < 1:
        i = int(np.argmin(lengths))
        raise InvalidArgument(
            "EMPTY_SERIES",
            f"{fields.entry('lengths', i)} is 0; a series needs at least one point",
            fields.entry("lengths", i),
        )
    total = int(lengths.sum())
    values = np.asarray(block.values, dtype=np.float64)
    if len(values) != total:
        raise InvalidArgument(
            "COLUMN_LENGTH_MISMATCH",
            f"{fields.column('values')} has {len(values)} entries but the lengths add up to"
            f" {total}",
            fields.column("values"),
        )
    steps = _column(block.steps, total, 0, fields.column("steps"))
    stamps = _column(block.timestamps, total, now_ms, fields.column("timestamps"))
    ranks = list(block.ranks) if len(block.ranks) else [0] * n
    if len(ranks) != n:
        raise InvalidArgument(
            "COLUMN_LENGTH_MISMATCH",
            f"{fields.column('ranks')} has {len(ranks)} entries for {n} series (give one per"
            " series, or none)",
            fields.column("ranks"),
        )
    keys = list(block.keys)
    distinct_keys = set(keys)
    for key in distinct_keys - _KNOWN_KEYS:
        try:
            check_key(key, fields.column("keys"))
        except InvalidArgument:  # the position only for a bad key: index() is a scan
            check_key(key, fields.entry("keys", keys.index(key)))
    run_ids = _run_ids(block, n, fields)
    # Distinct keys (the usual block) make distinct series: no numbering needed.
    segs = numbered(run_ids, keys, ranks, lengths, steps, stamps, values,
                    distinct=len(distinct_keys) == n)  # fmt: skip
    validation.check_batch_points(segs.points, fields.prefix)
    return segs


def _run_ids(block: Columns, n: int, fields: Fields) -> list[str]:
    """The run id of each of the ``n`` series, from run_ids and run_index."""
    runs = list(block.run_ids)
    for run_id in set(runs):
        try:
            validation.check_run_id(run_id, fields.column("run_ids"))
        except NotFound:
            validation.check_run_id(run_id, fields.entry("run_ids", runs.index(run_id)))
    if len(block.run_index):
        if len(block.run_index) != n:
            raise InvalidArgument(
                "COLUMN_LENGTH_MISMATCH",
                f"{fields.column('run_index')} has {len(block.run_index)} entries for {n} series",
                fields.column("run_index"),
            )
        index = list(block.run_index)
        if max(index) >= len(runs):
            raise InvalidArgument(
                "INVALID_RUN_INDEX",
                f"{fields.entry('run_index', index.index(max(index)))} is {max(index)}, but"
                f" {fields.column('run_ids')} has {len(runs)} entries",
                fields.column("run_index"),
            )
        return list(map(runs.__getitem__, index))
    if len(runs) == n:
        return runs
    if len(runs) == 1:
        return [runs[0]] * n
    raise InvalidArgument(
        "COLUMN_LENGTH_MISMATCH",
        f"{fields.column('run_ids')} has {len(runs)} entries for {n} series: give one per"
        " series, a single one for all, or each run once with run_index",
        fields.column("run_ids"),
    )


def _column(values: Sequence[int] | Ints, n: int, fill: int, field: str) -> Ints:
    """A repeated integer field as an array of ``n`` entries; an empty field becomes
    ``fill``."""
    arr: Ints = np.asarray(values, dtype=np.int64)
    if len(arr) == n:
        return arr
    if len(arr) == 0:
        return np.full(n, fill, dtype=np.int64)
    raise InvalidArgument(
        "COLUMN_LENGTH_MISMATCH", f"{field} has {len(arr)} entries but values has {n}", field
    )


# LogBatch's metrics


@dataclass(frozen=True)
class _MetricColumns:
    """The block columns of a LogBatch's metrics: one run, rank 0, every column full."""

    run_ids: list[str]
    keys: list[str]
    lengths: list[int]
    steps: Ints
    timestamps: Ints
    values: Floats
    ranks: Sequence[int] = ()
    run_index: Sequence[int] = ()


class _MetricsFields(Fields):
    """A LogBatch's paths: series i of the block is the i-th of ``metrics`` with points, and
    every series' run is the request's ``run_id``."""

    def __init__(self, metrics: Sequence[pb.MetricSeries]) -> None:
        super().__init__("metrics")
        self.metrics = metrics

    def column(self, name: str) -> str:
        return "run_id" if name == "run_ids" else super().column(name)

    def entry(self, name: str, i: int) -> str:
        if name == "run_ids":
            return "run_id"
        if name == "keys":  # only for an error: a scan of the series
            with_points = [j for j, s in enumerate(self.metrics) if len(s.values)]
            return f"metrics[{with_points[i]}].key"
        return super().entry(name, i)


def from_metric_series(metrics: Sequence[pb.MetricSeries], run_id: str, now_ms: int) -> Segments:
    """LogBatch's metrics, all of ``run_id`` at rank 0, through ``decode``. Series without
    values are left out (a bad key is refused all the same); a series' empty steps or
    timestamps are filled as a block fills them. The work per series is a few attribute reads
    and list appends: a batch of many one-point series is common. The point count is checked
    first, so an oversized batch is refused before any copy."""
    validation.check_batch_points(sum(len(s.values) for s in metrics), "metrics")
    keys: list[str] = []
    lengths: list[int] = []
    steps, stamps, values = _Column(np.int64), _Column(np.int64), _Column(np.float64)
    for i, s in enumerate(metrics):
        vals = s.values
        n = len(vals)
        st, ts = s.steps, s.timestamps
        if len(st) != n and len(st):
            raise _mismatch(f"metrics[{i}]", "steps", len(st), n)
        if len(ts) != n and len(ts):
            raise _mismatch(f"metrics[{i}]", "timestamps", len(ts), n)
        if n == 0:
            check_key(s.key, f"metrics[{i}].key")
            continue
        keys.append(s.key)
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
    columns = _MetricColumns([run_id], keys, lengths, steps.array(), stamps.array(),
                             values.array())  # fmt: skip
    return decode(columns, now_ms, _MetricsFields(metrics))


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
