"""The one decoder of incoming points: a block's columns (SeriesBlock, ingest.proto), checked
and turned into ``Segments``.

A stream batch carries its points as a SeriesBlock; a LogBatch carries one MetricSeries per
series, all of one run, which ``from_metric_series`` turns into block columns first, so both
go through the same checks (``decode``). Errors name the request's own fields (``Fields``):
``block.keys[3]`` in a stream batch, ``metrics[3].key`` in a LogBatch.

Whatever could fail a statement is refused here, before the write joins a group commit whose
other writes it would fail: bad keys, run ids no run can have, columns that do not add up,
too many points. Whether the runs exist is the flush's to find out. A bad block is refused
with all its problems (``validation.Problems``): each bad series and column, in the order of
the checks; they are looked for series by series only once a check over the whole block
failed, so a valid block costs no per-series work for it.
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
from ..validation import Problems
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


def decode(
    block: Columns, now_ms: int, fields: Fields = BLOCK, problems: Problems | None = None
) -> Segments:
    """Checks a block and converts it: every column and count at once, each distinct key and
    run id once. Empty steps mean step 0, empty timestamps ``now_ms``, empty ranks rank 0.
    Every problem of the block is reported: into ``problems`` when given (the block then
    converts to no points while ``problems`` holds any), else raised together."""
    found = Problems() if problems is None else problems
    segs = _checked(block, now_ms, fields, found)
    if problems is None:
        found.raise_if_any()
    return segs


def _checked(block: Columns, now_ms: int, fields: Fields, found: Problems) -> Segments:
    """``decode``'s work: the checks, in the order a caller hears of their problems, then the
    conversion once there are none."""
    n = len(block.lengths)
    if len(block.keys) != n:
        found.add(
            InvalidArgument(
                "COLUMN_LENGTH_MISMATCH",
                f"{fields.prefix} has {n} lengths and {len(block.keys)} keys; there must be one key"
                " per series",
                fields.column("keys"),
            )
        )
    if n == 0:
        if len(block.values) or len(block.steps) or len(block.ranks) or len(block.run_index):
            found.add(
                InvalidArgument(
                    "COLUMN_LENGTH_MISMATCH",
                    f"{fields.prefix} has points but no series",
                    fields.column("lengths"),
                )
            )
        return empty()
    lengths = np.asarray(block.lengths, dtype=np.int64)
    if lengths.min() < 1:
        _empty_series(lengths, fields, found)
    total = int(lengths.sum())
    if len(block.values) != total:
        _mismatched(fields, "values", len(block.values), total, found)
    if len(block.steps) not in (0, total):
        _mismatched(fields, "steps", len(block.steps), total, found)
    if len(block.timestamps) not in (0, total):
        _mismatched(fields, "timestamps", len(block.timestamps), total, found)
    if len(block.ranks) not in (0, n):
        found.add(
            InvalidArgument(
                "COLUMN_LENGTH_MISMATCH",
                f"{fields.column('ranks')} has {len(block.ranks)} entries for {n} series (give one"
                " per series, or none)",
                fields.column("ranks"),
            )
        )
    keys = list(block.keys)
    distinct_keys = set(keys)
    bad_keys: set[str] = set()
    for key in distinct_keys - _KNOWN_KEYS:
        try:
            check_key(key, fields.column("keys"))
        except InvalidArgument:
            bad_keys.add(key)
    if bad_keys:  # each position of a bad key, only now: finding them is a scan
        at = [i for i, key in enumerate(keys) if key in bad_keys]
        room = found.room
        for i in at[:room]:
            found.check(validation.check_key, keys[i], fields.entry("keys", i))
        found.add_unlisted(max(0, len(at) - room))
    run_ids = _run_ids(block, n, fields, found)
    if found.count:
        return empty()
    steps = _column(block.steps, total, 0)
    stamps = _column(block.timestamps, total, now_ms)
    values = np.asarray(block.values, dtype=np.float64)
    ranks = list(block.ranks) if len(block.ranks) else [0] * n
    # Distinct keys (the usual block) make distinct series: no numbering needed.
    segs = numbered(run_ids, keys, ranks, lengths, steps, stamps, values,
                    distinct=len(distinct_keys) == n)  # fmt: skip
    try:
        validation.check_batch_points(segs.points, fields.prefix)
    except InvalidArgument as err:
        found.add(err)
        return empty()
    return segs


def _mismatched(fields: Fields, name: str, got: int, total: int, found: Problems) -> None:
    found.add(
        InvalidArgument(
            "COLUMN_LENGTH_MISMATCH",
            f"{fields.column(name)} has {got} entries but the lengths add up to {total}",
            fields.column(name),
        )
    )


def _empty_series(lengths: Ints, fields: Fields, found: Problems) -> None:
    """Gathers an EMPTY_SERIES problem for each series of no points."""
    empties = np.flatnonzero(lengths < 1)
    room = found.room
    for i in empties[:room].tolist():
        found.add(
            InvalidArgument(
                "EMPTY_SERIES",
                f"{fields.entry('lengths', i)} is 0; a series needs at least one point",
                fields.entry("lengths", i),
            )
        )
    found.add_unlisted(max(0, len(empties) - room))


def _run_ids(block: Columns, n: int, fields: Fields, found: Problems) -> list[str]:
    """The run id of each of the ``n`` series, from run_ids and run_index (none when they
    have problems, which ``found`` gathers)."""
    runs = list(block.run_ids)
    for run_id in set(runs):
        try:
            validation.check_run_id(run_id, fields.column("run_ids"))
        except NotFound:  # ends the checks, unless problems were found before it
            found.check(
                validation.check_run_id, run_id, fields.entry("run_ids", runs.index(run_id))
            )
    if len(block.run_index):
        if len(block.run_index) != n:
            found.add(
                InvalidArgument(
                    "COLUMN_LENGTH_MISMATCH",
                    f"{fields.column('run_index')} has {len(block.run_index)} entries for {n}"
                    " series",
                    fields.column("run_index"),
                )
            )
            return []
        index = list(block.run_index)
        if max(index) >= len(runs):
            outside = [i for i, r in enumerate(index) if r >= len(runs)]
            room = found.room
            for i in outside[:room]:
                found.add(
                    InvalidArgument(
                        "INVALID_RUN_INDEX",
                        f"{fields.entry('run_index', i)} is {index[i]}, but"
                        f" {fields.column('run_ids')} has {len(runs)} entries",
                        fields.entry("run_index", i),
                    )
                )
            found.add_unlisted(max(0, len(outside) - room))
            return []
        return list(map(runs.__getitem__, index))
    if len(runs) == n:
        return runs
    if len(runs) == 1:
        return [runs[0]] * n
    found.add(
        InvalidArgument(
            "COLUMN_LENGTH_MISMATCH",
            f"{fields.column('run_ids')} has {len(runs)} entries for {n} series: give one per"
            " series, a single one for all, or each run once with run_index",
            fields.column("run_ids"),
        )
    )
    return []


def _column(values: Sequence[int] | Ints, n: int, fill: int) -> Ints:
    """A repeated integer field of ``n`` entries (or none) as an array; an empty field
    becomes ``fill``."""
    arr: Ints = np.asarray(values, dtype=np.int64)
    return arr if len(arr) else np.full(n, fill, dtype=np.int64)


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
        self._with_points: list[int] | None = None

    def column(self, name: str) -> str:
        return "run_id" if name == "run_ids" else super().column(name)

    def entry(self, name: str, i: int) -> str:
        if name == "run_ids":
            return "run_id"
        if name == "keys":  # only for an error: a scan of the series, once
            if self._with_points is None:
                self._with_points = [j for j, s in enumerate(self.metrics) if len(s.values)]
            return f"metrics[{self._with_points[i]}].key"
        return super().entry(name, i)


def from_metric_series(
    metrics: Sequence[pb.MetricSeries], run_id: str, now_ms: int, problems: Problems | None = None
) -> Segments:
    """LogBatch's metrics, all of ``run_id`` at rank 0, through ``decode``. Series without
    values are left out (a bad key is refused all the same); a series' empty steps or
    timestamps are filled as a block fills them. The work per series is a few attribute reads
    and list appends: a batch of many one-point series is common. The point count is checked
    first, so an oversized batch is refused (for that alone) before any copy. Every other
    problem is reported, as ``decode`` reports them."""
    validation.check_batch_points(sum(len(s.values) for s in metrics), "metrics")
    found = Problems() if problems is None else problems
    keys: list[str] = []
    lengths: list[int] = []
    steps, stamps, values = _Column(np.int64), _Column(np.int64), _Column(np.float64)
    for i, s in enumerate(metrics):
        vals = s.values
        n = len(vals)
        st: Sequence[int] = s.steps
        ts: Sequence[int] = s.timestamps
        if len(st) != n and len(st):  # noted, and filled as if empty: the rest is checked
            found.add(_mismatch(f"metrics[{i}]", "steps", len(st), n))
            st = ()
        if len(ts) != n and len(ts):
            found.add(_mismatch(f"metrics[{i}]", "timestamps", len(ts), n))
            ts = ()
        if n == 0:
            found.check(check_key, s.key, f"metrics[{i}].key")
            continue
        keys.append(s.key)
        lengths.append(n)
        if n < _SHORT_SERIES:
            steps.add(st if len(st) else [0] * n)
            stamps.add(ts if len(ts) else [now_ms] * n)
            values.add(vals)
        else:
            steps.add_array(_column(st, n, 0))
            stamps.add_array(_column(ts, n, now_ms))
            values.add_array(np.array(vals, dtype=np.float64))
    if lengths:
        columns = _MetricColumns(
            [run_id], keys, lengths, steps.array(), stamps.array(), values.array()
        )
        segs = decode(columns, now_ms, _MetricsFields(metrics), found)
    else:
        segs = empty()
    if problems is None:
        found.raise_if_any()
    return segs


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
