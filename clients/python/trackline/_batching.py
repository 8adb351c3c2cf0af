"""Draining the buffered points into batches (``build_batches``): one run per batch, each ONE
SeriesBlock with the points of all its series in shared columns, at most MAX_BATCH_POINTS
points and about MAX_BATCH_BYTES bytes, grouped with C-level passes over whole columns."""

from __future__ import annotations

import operator
import struct
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from typing import Any

from ._checks import KNOWN_KEYS, Problem, key_problem, rank_problem, run_problem, valid_points
from ._exceptions import BatchRejected
from ._wire import encode_block, packed_columns

MAX_BATCH_POINTS = 200_000
MAX_BATCH_BYTES = 16 * 1024 * 1024  # estimated, for batches of many short series

# (run id, keys, ranks, lengths) of the series of one run, in the order of their points;
# ranks is empty when every rank is 0.
_RunSeries = tuple[str, list[str], list[int], list[int]]
Batch = tuple[bytes, str, int]  # encoded ``block`` field, run id, points


def build_batches(
    points: Iterable[tuple[Any, ...]],
) -> tuple[list[Batch], list[BatchRejected]]:
    """Packs drained point tuples into batches: the encoded ``block`` field of a
    StreamMetricsRequest (the seq is added when it is assigned), its run and its number of
    points; one run per batch, at most MAX_BATCH_POINTS points. Points the server would
    refuse (bad run id, key, rank, step or timestamp) come back as errors instead of
    spoiling a batch.

    This runs under the GIL next to the training loop, so it works on whole columns with
    C-level calls (extend, slicing, count, itemgetter, struct) and does Python work per
    point only for a drain of several runs or ranks, or whose keys follow no fixed cycle.
    The point columns go straight into packed bytes and onto the wire; only the per-series
    names and lengths go through protobuf, one ``extend`` per column."""
    # run, key, rank, step, timestamp, value of every point, one after the other
    flat = _concat(points)
    errors: list[BatchRejected] = []
    if not flat:
        return [], errors
    try:
        return _encode_points(flat, errors), errors
    except (TypeError, OverflowError, ValueError, struct.error):
        # A step or timestamp that is no int64, or a name that cannot be hashed (rare): set
        # those points aside and pack the rest.
        errors = []
        good = valid_points(zip(*[iter(flat)] * 6, strict=True), errors)
        flat = _concat(good)
        return (_encode_points(flat, errors) if flat else []), errors


def _encode_points(flat: list[Any], errors: list[BatchRejected]) -> list[Batch]:
    n = len(flat) // 6
    runs, keys, ranks = flat[0::6], flat[1::6], flat[2::6]
    columns: _Columns = [flat[3::6], flat[4::6], flat[5::6]]
    run0, rank0 = runs[0], ranks[0]
    per_run: list[_RunSeries]
    if runs.count(run0) == n and ranks.count(rank0) == n:  # the usual drain: one run and rank
        problem = run_problem(run0) or rank_problem(rank0)
        if problem is not None:
            errors.append(BatchRejected(0, *problem, run_id=str(run0), points=n))
            return []
        grouped = _group_cycle(keys, columns) or _group_keys(keys, columns, run0, errors)
        names, lengths, columns = grouped
        r = operator.index(rank0)
        per_run = [(run0, names, [r] * len(names) if r else [], lengths)] if names else []
    else:
        per_run, columns = _group_series(runs, keys, ranks, columns, errors)
    if not per_run:
        return []
    packed = packed_columns(columns)
    batches: list[Batch] = []
    lo = 0
    for run in per_run:
        lo = _pack_run(run, lo, packed, batches)
    return batches


_Columns = list[Sequence[Any]]  # steps, timestamps, values
_Grouped = tuple[list[str], list[int], _Columns]  # names, lengths, columns


def _group_cycle(keys: list[Any], columns: _Columns) -> _Grouped | None:
    """Groups the points of one run by key when the keys repeat a fixed cycle of distinct,
    valid keys: one key, or the metrics of a training step logged in the same order every
    step (the drain may start and end mid-cycle). Then series j is every period-th point
    from point j, so grouping takes slicing per series and no work per point. None for a
    drain of any other shape."""
    n = len(keys)
    try:
        period = keys.index(keys[0], 1)
    except ValueError:
        period = n  # the first key only once: a cycle only if every key is distinct
    if period == 1:
        if keys.count(keys[0]) != n:
            return None
    elif period < n and keys[period:] != keys[: n - period]:
        return None
    names = keys[:period]
    if period > 1 and len(set(names)) != period:
        return None
    if not KNOWN_KEYS.issuperset(names):
        if any(key_problem(key) for key in set(names) - KNOWN_KEYS):
            return None  # _group_keys reports them
    if period == 1:
        return names, [n], columns
    if period == n:
        return names, [1] * n, columns
    full, rest = divmod(n, period)
    lengths = [full + 1] * rest + [full] * (period - rest)
    if period * 16 <= n:  # few series: a slice per series and column
        return names, lengths, [_concat([c[j::period] for j in range(period)]) for c in columns]
    order = _concat([range(j, n, period) for j in range(period)])
    return names, lengths, _pick(columns, order)


def _group_keys(
    keys: list[Any], columns: _Columns, run_id: str, errors: list[BatchRejected]
) -> _Grouped:
    """Groups the points of one run by key (any drain), leaving out invalid keys."""
    groups: defaultdict[Any, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        groups[key].append(i)
    names, parts = [], []
    for key, indices in groups.items():
        problem = None if key in KNOWN_KEYS else key_problem(key)
        if problem is None:
            names.append(key)
            parts.append(indices)
        else:
            errors.append(BatchRejected(0, *problem, run_id=run_id, points=len(indices)))
    if len(names) == len(groups) == 1:
        return names, [len(keys)], columns
    return names, list(map(len, parts)), _pick(columns, _concat(parts))


def _group_series(
    runs: list[Any],
    keys: list[Any],
    ranks: list[Any],
    columns: _Columns,
    errors: list[BatchRejected],
) -> tuple[list[_RunSeries], _Columns]:
    """Groups the points of a drain of several runs or ranks per (run, key, rank), the
    series of a run together, leaving out invalid series."""
    groups: defaultdict[tuple[Any, Any, Any], list[int]] = defaultdict(list)
    for i, s in enumerate(zip(runs, keys, ranks, strict=True)):
        groups[s].append(i)
    by_run: dict[str, list[tuple[str, int, list[int]]]] = {}
    run_problems: dict[Any, Problem | None] = {}
    for (run_id, key, rank), indices in groups.items():
        if run_id in run_problems:
            problem = run_problems[run_id]
        else:
            problem = run_problems[run_id] = run_problem(run_id)
        if problem is None and key not in KNOWN_KEYS:
            problem = key_problem(key)
        if problem is None:
            problem = rank_problem(rank)
        if problem is None:
            by_run.setdefault(run_id, []).append((key, operator.index(rank), indices))
        else:
            errors.append(BatchRejected(0, *problem, run_id=str(run_id), points=len(indices)))
    per_run: list[_RunSeries] = []
    parts: list[list[int]] = []
    for run_id, series in by_run.items():
        names = [s[0] for s in series]
        per_run.append((run_id, names, [s[1] for s in series], [len(s[2]) for s in series]))
        parts += (s[2] for s in series)
    return per_run, _pick(columns, _concat(parts)) if parts else columns


def _concat(parts: Iterable[Iterable[Any]]) -> list[Any]:
    """The entries of ``parts``, one part after the other. ``list.extend`` per part copies a
    tuple or list at once: about three times faster than ``itertools.chain``."""
    out: list[Any] = []
    deque(map(out.extend, parts), maxlen=0)
    return out


def _pick(columns: _Columns, order: list[int]) -> _Columns:
    """The entries ``order`` of each column, in that order."""
    if not order:
        return [[] for _ in columns]
    if len(order) == 1:
        return [[c[order[0]]] for c in columns]
    pick = operator.itemgetter(*order)
    return [pick(c) for c in columns]


def _pack_run(run: _RunSeries, lo: int, columns: tuple[memoryview, ...], out: list[Batch]) -> int:
    """Appends the batches of one run's series, whose points start at point ``lo`` of
    ``columns``, to ``out``; returns where the next run's points start."""
    run_id, keys, ranks, lengths = run
    total = sum(lengths)
    per_series = len(run_id) + 16  # estimated bytes of a series' run id, key and length
    size = 24 * total + sum(map(len, keys)) + per_series * len(keys)
    if total <= MAX_BATCH_POINTS and size <= MAX_BATCH_BYTES:  # the usual case: one batch
        out.append((encode_block(run_id, keys, ranks, lengths, lo, lo + total, columns),
                    run_id, total))  # fmt: skip
        return lo + total
    # Too many points or bytes for one batch: fill batches in turn, cutting series at the
    # batch ends.
    b_keys: list[str] = []
    b_ranks: list[int] = []
    b_lengths: list[int] = []
    start, n_batch, size_batch = lo, 0, 0
    for i, key in enumerate(keys):
        rank = ranks[i] if ranks else 0
        left = lengths[i]
        est = len(key) + per_series
        while left:
            room = min(MAX_BATCH_POINTS - n_batch, (MAX_BATCH_BYTES - size_batch - est) // 24)
            if room < 1 and b_lengths:
                block = encode_block(
                    run_id, b_keys, b_ranks, b_lengths, start, start + n_batch, columns
                )
                out.append((block, run_id, n_batch))
                start += n_batch
                b_keys, b_ranks, b_lengths, n_batch, size_batch = [], [], [], 0, 0
                continue
            take = min(left, max(room, 1))
            b_keys.append(key)
            b_ranks.append(rank)
            b_lengths.append(take)
            n_batch += take
            size_batch += 24 * take + est
            left -= take
    if b_lengths:
        block = encode_block(run_id, b_keys, b_ranks, b_lengths, start, start + n_batch, columns)
        out.append((block, run_id, n_batch))
    return lo + total
