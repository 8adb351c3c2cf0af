"""Draining buffered points into batches (``trackline._batching``), without a server: every
drain shape groups its points per series into one SeriesBlock per run, leaves out what the
server would refuse, and splits at the batch bounds; protobuf reads the hand-made bytes."""

from __future__ import annotations

import math
import struct
from collections import defaultdict
from typing import Any

import pytest
from google.protobuf import unknown_fields
from trackline import _batching
from trackline._batching import build_batches
from trackline._wire import encode_request
from trackline.v1 import ingest_pb2 as ipb

Series = tuple[str, str, int]
Points = list[tuple[int, int, bytes]]  # step, timestamp, value's bits (NaN compares equal)


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


def decode(batches: list[tuple[bytes, str, int]]) -> dict[Series, Points]:
    """The points of encoded batches per series, checking each batch's SeriesBlock."""
    got: defaultdict[Series, Points] = defaultdict(list)
    for body, run_id, n in batches:
        msg = ipb.StreamMetricsRequest.FromString(encode_request(2**40, body))
        assert msg.seq == 2**40 and [f.name for f, _ in msg.ListFields()] == ["seq", "block"]
        assert not len(unknown_fields.UnknownFieldSet(msg))  # nothing else, no removed field
        block = msg.block
        assert set(block.run_ids) == {run_id}  # one run per batch
        assert len(block.run_ids) == len(block.keys) == len(block.lengths) >= 1
        assert len(block.ranks) in (0, len(block.lengths)) and min(block.lengths) >= 1
        assert n == sum(block.lengths) == len(block.values)
        assert len(block.steps) == len(block.timestamps) == n
        ranks = list(block.ranks) or [0] * len(block.lengths)
        pos = 0
        for key, rank, length in zip(block.keys, ranks, block.lengths, strict=True):
            end = pos + length
            got[run_id, key, rank] += zip(
                block.steps[pos:end],
                block.timestamps[pos:end],
                map(bits, block.values[pos:end]),
                strict=True,
            )
            pos = end
    return dict(got)


def per_series(items: list[tuple[Any, ...]]) -> dict[Series, Points]:
    want: defaultdict[Series, Points] = defaultdict(list)
    for run_id, key, rank, step, stamp, value in items:
        want[run_id, key, rank].append((step, stamp, bits(value)))
    return dict(want)


def test_encoding_matches_protobuf() -> None:
    """The sender encodes batches itself; protobuf must read them as meant."""
    method = ipb.DESCRIPTOR.services_by_name["IngestService"].methods_by_name["StreamMetrics"]
    assert method.full_name == "trackline.v1.IngestService.StreamMetrics"
    items = [("r1", "loss", 0, 1, 10, 0.5), ("r1", "acc", 0, 1, 10, 0.25)]
    items += [("r1", "loss", -3, -(2**63), 2**63 - 1, math.inf), ("r2", "ké", 2**31 - 1, 2, 3, 1.0)]
    items += [("r2", "", 0, 1, 1, 1.0), ("r2", "x", 0, 1.5, 1, 1.0), ("r2", "x", 0, 2, 1, 2.0)]
    items += [
        ("r3", "x", 0, 1, 1, 1.0),
        ("r4", "a\ud800", 0, 1, 1, 1.0),
        ("r4", ["x"], 0, 1, 1, 1.0),
    ]
    items += [
        ("r4", "ok", 0.5, 1, 1, 1.0),
        ("", "x", 0, 1, 1, 1.0),
        ("r1", "loss", 0, 2, 11, math.nan),
    ]
    batches, errors = build_batches(items)
    assert sorted((e.reason, e.run_id, e.points) for e in errors) == [
        ("INVALID_KEY", "r2", 1),
        ("INVALID_KEY", "r4", 1),
        ("INVALID_KEY", "r4", 1),
        ("INVALID_POINT", "r2", 1),
        ("INVALID_RANK", "r4", 1),
        ("RUN_NOT_FOUND", "", 1),
    ]
    assert all(e.seq == 0 for e in errors)
    assert decode(batches) == per_series(
        [
            ("r1", "loss", 0, 1, 10, 0.5),
            ("r1", "loss", 0, 2, 11, math.nan),
            ("r1", "acc", 0, 1, 10, 0.25),
            ("r1", "loss", -3, -(2**63), 2**63 - 1, math.inf),
            ("r2", "ké", 2**31 - 1, 2, 3, 1.0),
            ("r2", "x", 0, 2, 1, 2.0),
            ("r3", "x", 0, 1, 1, 1.0),
        ]
    )


def _cycle(keys: list[str], n: int, start: int = 0, run_id: str = "r") -> list[tuple[Any, ...]]:
    """n points of a training loop that logs ``keys`` every step, from point ``start``."""
    k = len(keys)
    return [(run_id, keys[i % k], 0, i // k, 1000 + i, i * 0.5) for i in range(start, start + n)]


SHAPES = {
    "one point": [("r", "loss", 0, 0, 1, 0.5)],
    "one series": _cycle(["loss"], 1000),
    "one series, rank 3": [("r", "loss", 3, s, s, -s * 1.0) for s in range(100)],
    "a step's metrics": _cycle([f"m{j}" for j in range(20)], 1000),
    "from mid-step": _cycle(["a", "b", "c", "d", "e"], 1001, start=3),
    "many keys, few steps": _cycle([f"m{j}" for j in range(300)], 1000, start=150),
    "all distinct": _cycle([f"m{j}" for j in range(500)], 500),
    "no cycle": _cycle(["loss", "lr"], 100) + _cycle(["val"], 3) + _cycle(["loss", "lr"], 100),
    "key repeated in a step": [("r", k, 0, i, i, 0.0) for i, k in enumerate("abacabac" * 9)],
    "runs and ranks": [(f"r{i % 3}", f"k{i % 5}", i % 2, i, i, float(i)) for i in range(2000)],
}


@pytest.mark.parametrize("shape", SHAPES)
def test_blocks_group_points_per_series(shape: str) -> None:
    items = SHAPES[shape]
    batches, errors = build_batches(items)
    assert errors == []
    assert decode(batches) == per_series(items)
    assert len(batches) == len({i[0] for i in items})  # one block per run


def test_blocks_leave_out_invalid_series_of_a_cycle() -> None:
    items = _cycle(["loss", "bad\nkey", "acc"], 30)
    batches, errors = build_batches(items)
    assert [(e.reason, e.points) for e in errors] == [("INVALID_KEY", 10)]
    assert decode(batches) == per_series([i for i in items if i[1] != "bad\nkey"])


@pytest.mark.parametrize(
    "items",
    [
        [("r", "", 0, 1, 1, 1.0)],
        [("r", "a\x00", 0, s, 1, 1.0) for s in range(3)],
        [("r", k, 0, 1, 1, 1.0) for k in ("", "\x7f", "", "\x7f")],
        [(r, "", 0, 1, 1, 1.0) for r in ("r", "q")],
        [("r", "x", 0, 1.5, 1, 1.0), ("r", "y", 0, 1, None, 1.0), ("", "x", 0, 1, 1, 1.0)],
    ],
)
def test_drains_of_refused_points_only(items: list[tuple[Any, ...]]) -> None:
    batches, errors = build_batches(items)
    assert batches == [] and sum(e.points for e in errors) == len(items)
    assert {e.reason for e in errors} <= {"INVALID_KEY", "INVALID_POINT", "RUN_NOT_FOUND"}


def test_blocks_are_split_at_the_batch_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_batching, "MAX_BATCH_POINTS", 7)
    items = _cycle(["a", "b", "c"], 50) + _cycle(["long"], 20) + _cycle(["x"], 10, run_id="r2")
    batches, errors = build_batches(items)
    assert errors == [] and decode(batches) == per_series(items)
    assert all(n <= 7 for _, _, n in batches) and sum(n for _, _, n in batches) == 80
    assert [n for _, _, n in batches] == [7] * 10 + [7, 3]  # full blocks, then r2's
    monkeypatch.setattr(_batching, "MAX_BATCH_BYTES", 200)  # a few series per block
    items = _cycle([f"key{j:03}" for j in range(40)], 40)
    batches, errors = build_batches(items)
    assert errors == [] and decode(batches) == per_series(items)
    assert len(batches) > 5 and all(len(body) < 400 for body, _, _ in batches)
