"""GetMetricHistory paging, step ranges, ranks and downsampling, and GetMetricHistories, on
a real server over SQLite and PostgreSQL (views from chunk summaries: test_history_summaries.py)."""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import TypeVar

import pytest
from trackline import InvalidArgument, NotFound, ResourceExhausted, TracklineClient
from trackline.v1 import tracking_pb2 as tpb

from tests.support.histories import Point, is_sorted, log, ranked, read_pages, stream, view
from tests.support.servers import ServerProcess

T = TypeVar("T")


def overlapping_series(server: ServerProcess, client: TracklineClient, run_id: str) -> list[Point]:
    """Chunks that overlap: shuffled steps, duplicate steps across ranks, and 300 points at
    one step. Returns every point; each value is unique."""
    rng = random.Random(7)
    expected: list[Point] = []
    value = iter(range(1_000_000))

    def add(steps: list[int], stamps: list[int], rank: int = 0) -> list[float]:
        values = [float(next(value)) for _ in steps]
        expected.extend(zip(steps, stamps, values, [rank] * len(steps), strict=True))
        return values

    shuffled = list(range(100))
    rng.shuffle(shuffled)
    stamps = [rng.randint(1, 3) for _ in shuffled]
    log(client, run_id, "m", shuffled, add(shuffled, stamps), stamps)
    later = list(range(149, 49, -1))  # overlaps the first chunk, written backwards
    log(client, run_id, "m", later, add(later, [5] * 100), [5] * 100)
    crowd = [120] * 300
    crowd_stamps = [rng.randint(1, 9) for _ in crowd]
    log(client, run_id, "m", crowd, add(crowd, crowd_stamps), crowd_stamps)
    series = []
    for rank in (1, 2):
        steps = list(range(0, 200, 2))
        series.append(ranked(run_id, "m", rank, steps, add(steps, [4] * 100, rank), stamp=4))
    stream(server, series)
    return expected


def test_paging_over_overlapping_chunks(server: ServerProcess, client: TracklineClient) -> None:
    run = client.create_run()
    expected = overlapping_series(server, client, run.run_id)
    whole = read_pages(client, run.run_id, "m", page_size=1_000_000)
    assert Counter(whole) == Counter(expected) and len(whole) == len(expected)
    assert is_sorted(whole)
    for size in (7, 64, 299):  # page boundaries inside the 300 points at step 120
        assert read_pages(client, run.run_id, "m", page_size=size) == whole
    # The client's iterator pages the same way.
    got = list(client.get_metric_history(run.run_id, "m", page_size=5))
    assert got == [p[:3] for p in whole]


def test_step_range(server: ServerProcess, client: TracklineClient) -> None:
    run = client.create_run()
    expected = sorted(overlapping_series(server, client, run.run_id))
    for start, end in ((50, 120), (120, 120), (0, 0), (-5, 3), (149, 1000), (500, 600)):
        want = Counter(p for p in expected if start <= p[0] <= end)
        for size in (0, 9):
            got = read_pages(client, run.run_id, "m", size, start_step=start, end_step=end)
            assert Counter(got) == want and is_sorted(got)
    got = read_pages(client, run.run_id, "m", 11, start_step=121)
    assert Counter(got) == Counter(p for p in expected if p[0] >= 121)
    got = read_pages(client, run.run_id, "m", 11, end_step=119)
    assert Counter(got) == Counter(p for p in expected if p[0] <= 119)
    steps = [s for s, _, _ in client.get_metric_history(run.run_id, "m", start_step=140)]
    assert steps == sorted(p[0] for p in expected if p[0] >= 140)


def test_ranks(server: ServerProcess, client: TracklineClient) -> None:
    run = client.create_run()
    stream(
        server,
        [ranked(run.run_id, "loss", r, [0, 1, 2, 3], [r * 10.0 + i for i in range(4)])
         for r in range(3)],
    )  # fmt: skip
    log(client, run.run_id, "loss", [4], [99.0])  # LogBatch writes rank 0
    everyone = read_pages(client, run.run_id, "loss", page_size=2)
    assert [(s, v, r) for s, _, v, r in everyone] == [
        (s, r * 10.0 + s, r) for s in range(4) for r in range(3)
    ] + [(4, 99.0, 0)]
    one = read_pages(client, run.run_id, "loss", page_size=3, rank=1)
    assert [(s, v, r) for s, _, v, r in one] == [(s, 10.0 + s, 1) for s in range(4)]
    assert read_pages(client, run.run_id, "loss", rank=7) == []
    assert [p[:3] for p in read_pages(client, run.run_id, "loss", rank=0)] == list(
        client.get_metric_history(run.run_id, "loss", rank=0)
    )
    ranked_view = view(client, run.run_id, "loss", 1000, rank=2)
    assert [(s, v, r) for s, _, v, r in ranked_view] == [(s, 20.0 + s, 2) for s in range(4)]


def test_nan_and_infinity_round_trip(client: TracklineClient) -> None:
    run = client.create_run()
    values = [math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324]
    log(client, run.run_id, "x", list(range(6)), values)
    for got in (
        [v for _, _, v in client.get_metric_history(run.run_id, "x", page_size=4)],
        [v for _, _, v in client.get_metric_history(run.run_id, "x", max_points=100)],
    ):
        assert math.isnan(got[0]) and got[1:] == values[1:]
        assert math.copysign(1.0, got[3]) == -1.0


def test_downsample_keeps_spike_minimum_and_last(client: TracklineClient) -> None:
    run = client.create_run()
    rng = random.Random(3)
    n = 100_000
    values = [rng.random() for _ in range(n)]
    values[31_337] = 1e9  # a single spike
    values[77_777] = -5.0  # the minimum
    values[500] = math.nan  # ignored for min and max
    for start in range(0, n, 25_000):  # several chunks
        steps = list(range(start, start + 25_000))
        log(client, run.run_id, "loss", steps, values[start : start + 25_000])
    got = view(client, run.run_id, "loss", 300)
    assert 0 < len(got) <= 300 and is_sorted(got)
    steps = [s for s, _, _, _ in got]
    assert len(set(steps)) == len(steps)
    assert (31_337, 1, 1e9, 0) in got
    assert (77_777, 1, -5.0, 0) in got
    assert steps[-1] == n - 1  # the last point of the last bucket
    assert all(values[s] == v or (math.isnan(v) and math.isnan(values[s])) for s, _, v, _ in got)
    # The client asks for the same view; a step range narrows the buckets to it.
    assert list(client.get_metric_history(run.run_id, "loss", max_points=300)) == [
        p[:3] for p in got
    ]
    part = view(client, run.run_id, "loss", 30, start_step=30_000, end_step=40_000)
    assert len(part) <= 30 and all(30_000 <= s <= 40_000 for s, _, _, _ in part)
    assert (31_337, 1, 1e9, 0) in part and part[-1][0] == 40_000
    assert len(view(client, run.run_id, "loss", 2)) == 2
    assert [p[0] for p in view(client, run.run_id, "loss", 1)] == [n - 1]
    # Values above the cap are capped, not refused.
    capped = view(client, run.run_id, "loss", 2_000_000_000)
    assert len(capped) == n


def test_downsample_of_a_small_series_is_the_whole_series(
    server: ServerProcess, client: TracklineClient
) -> None:
    run = client.create_run()
    expected = overlapping_series(server, client, run.run_id)
    whole = read_pages(client, run.run_id, "m")
    assert view(client, run.run_id, "m", len(expected)) == whole
    small = view(client, run.run_id, "m", 30)
    assert len(small) <= 30 and is_sorted(small)
    assert set(small) <= set(expected)
    assert view(client, run.run_id, "nothing", 30) == []


def test_get_metric_histories(server: ServerProcess, client: TracklineClient) -> None:
    runs = [client.create_run().run_id for _ in range(3)]
    for i, run_id in enumerate(runs):
        log(client, run_id, "a", [0, 1, 2], [i + 0.1, i + 0.2, i + 0.3])
        if i != 1:  # the second run has no "b"
            log(client, run_id, "b", list(range(10, 0, -1)), [float(i)] * 10)
    stream(server, [ranked(runs[2], "a", 3, [1, 5], [7.0, 8.0])])
    got = client.get_metric_histories(runs, ["a", "b"])
    assert list(got) == [
        (runs[0], "a"), (runs[0], "b"), (runs[1], "a"), (runs[2], "a"), (runs[2], "b"),
    ]  # fmt: skip
    assert got[(runs[0], "a")] == [(0, 1, 0.1), (1, 1, 0.2), (2, 1, 0.3)]
    assert [s for s, _, _ in got[(runs[2], "b")]] == list(range(1, 11))
    assert got[(runs[2], "a")] == [(0, 1, 2.1), (1, 1, 2.2), (1, 1, 7.0), (2, 1, 2.3), (5, 1, 8.0)]
    for run_id in runs:
        for key in ("a", "b"):
            if (run_id, key) in got:
                assert got[(run_id, key)] == list(client.get_metric_history(run_id, key))
    ranged = client.get_metric_histories(runs, ["b", "a"], start_step=2, end_step=5)
    assert list(ranged)[:2] == [(runs[0], "b"), (runs[0], "a")]
    assert [s for s, _, _ in ranged[(runs[2], "b")]] == [2, 3, 4, 5]
    assert [s for s, _, _ in ranged[(runs[2], "a")]] == [2, 5]
    viewed = client.get_metric_histories(runs, ["b"], max_points=3)
    assert all(len(points) <= 3 for points in viewed.values())
    assert viewed[(runs[0], "b")][-1][0] == 10
    assert client.get_metric_histories(runs, ["none"]) == {}


def test_get_metric_histories_limits(client: TracklineClient) -> None:
    run = client.create_run()
    with pytest.raises(InvalidArgument) as info:
        client.get_metric_histories([run.run_id] * 101, ["a"])
    assert info.value.reason == "TOO_MANY_RUNS"
    with pytest.raises(InvalidArgument) as info:
        client.get_metric_histories([run.run_id], [f"k{i}" for i in range(101)])
    assert info.value.reason == "TOO_MANY_KEYS"
    with pytest.raises(NotFound) as nf:
        client.get_metric_histories([run.run_id, "0" * 32], ["a"])
    assert nf.value.reason == "RUN_NOT_FOUND" and "run_ids[1]" in nf.value.field_violations
    with pytest.raises(InvalidArgument) as info:
        client.get_metric_histories([run.run_id], ["a"], max_points=-1)
    assert info.value.reason == "INVALID_MAX_POINTS"
    with pytest.raises(InvalidArgument) as info:
        client.get_metric_histories([run.run_id], ["a"], start_step=5, end_step=4)
    assert info.value.reason == "INVALID_STEP_RANGE"
    n = 600_000
    for key in ("a", "b"):
        log(client, run.run_id, key, list(range(n)), [0.5] * n, [1] * n)
    with pytest.raises(ResourceExhausted) as big:
        client.get_metric_histories([run.run_id], ["a", "b"])
    assert big.value.reason == "HISTORY_TOO_LARGE"
    assert "max_points" in big.value.message
    # Views of series small enough to come whole count against the same total.
    with pytest.raises(ResourceExhausted) as big:
        client.get_metric_histories([run.run_id], ["a", "b"], max_points=1_000_000)
    assert big.value.reason == "HISTORY_TOO_LARGE"
    # A range or a view that keeps the total under the limit is fine.
    ranged = client.get_metric_histories([run.run_id], ["a", "b"], end_step=n // 2)
    assert sum(len(p) for p in ranged.values()) == 2 * (n // 2 + 1)
    viewed = client.get_metric_histories([run.run_id], ["a", "b"], max_points=1000)
    assert [len(p) <= 1000 for p in viewed.values()] == [True, True]


def test_history_errors(client: TracklineClient) -> None:
    run = client.create_run()
    log(client, run.run_id, "loss", list(range(10)), [1.0] * 10)

    def call(**fields: object) -> tpb.GetMetricHistoryResponse:
        req = tpb.GetMetricHistoryRequest(run_id=run.run_id, key="loss", **fields)  # type: ignore[arg-type]
        return client.calls.GetMetricHistory(req)

    token = call(page_size=3).next_page_token
    assert token and len(call(page_size=3, page_token=token).series.steps) == 3
    bad_tokens = [
        "garbage",
        "",  # placeholder replaced below
        token[:-2],
    ]
    bad_tokens[1] = call(page_size=3, start_step=0).next_page_token  # another query's token
    for bad in bad_tokens:
        with pytest.raises(InvalidArgument) as info:
            call(page_size=3, page_token=bad)
        assert info.value.reason == "INVALID_PAGE_TOKEN"
    for other in ({"rank": 0}, {"end_step": 8}):
        with pytest.raises(InvalidArgument) as info:
            call(page_size=3, page_token=token, **other)
        assert info.value.reason == "INVALID_PAGE_TOKEN"
    with pytest.raises(InvalidArgument) as info:
        call(start_step=5, end_step=4)
    assert info.value.reason == "INVALID_STEP_RANGE"
    with pytest.raises(InvalidArgument) as info:
        call(max_points=-1)
    assert info.value.reason == "INVALID_MAX_POINTS"
    with pytest.raises(InvalidArgument) as info:
        list(client.get_metric_history(run.run_id, "loss", page_size=-1))
    assert info.value.reason == "INVALID_PAGE_SIZE"
    for kwargs in ({}, {"max_points": 10}):
        with pytest.raises(NotFound) as nf:
            list(client.get_metric_history("0" * 32, "loss", **kwargs))
        assert nf.value.reason == "RUN_NOT_FOUND"


# Chart views from chunk summaries: checked against a brute-force reading of the stored points.
