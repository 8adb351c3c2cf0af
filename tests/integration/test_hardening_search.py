"""Searches stay bounded on SQLite and PostgreSQL (issue 9: findings 6, 9 and 10a-c): filters
at the parser's limits, 50,000-run pages, pages capped by bytes, odd filter values."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from sqlalchemy import insert
from trackline import InvalidArgument, TracklineClient
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb
from trackline_server import lifecycle, limits
from trackline_server.database import Database
from trackline_server.errors import ResourceExhausted
from trackline_server.models import params, runs, tags
from trackline_server.tracking import experiments
from trackline_server.tracking import runs as run_queries
from trackline_server.tracking import search as queries

from tests.support.servers import ServerProcess


def _ids(found: object) -> set[str]:
    return {r.run_id for r in found}  # type: ignore[attr-defined]


def test_thousand_param_comparisons_answer(client: TracklineClient) -> None:
    """Finding 6: PostgreSQL planned 1,000 ANDed param comparisons for minutes (300: > 40 s)."""
    exp = client.create_experiment("wide").experiment_id
    every = client.create_run(exp, run_name="every")
    client.log_batch(every.run_id, params={f"p{i}": "v" for i in range(1000)})
    most = client.create_run(exp, run_name="most")
    client.log_batch(most.run_id, params={f"p{i}": "v" for i in range(999)})
    text = " AND ".join(f"params.p{i} = 'v'" for i in range(1000))
    assert _ids(client.search_runs([exp], text)) == {every.run_id}
    assert _ids(client.search_runs([exp], text.replace(" AND ", " OR "))) == {
        every.run_id,
        most.run_id,
    }


@dataclass
class _Run:
    run_id: str
    start: int
    params: dict[str, str]
    tags: dict[str, str]
    metric: float | None
    extra: dict[str, str] = field(default_factory=dict)


_Leaf = tuple[str, Callable[[_Run], bool]]


def _leaves() -> list[_Leaf]:
    """Comparisons of every kind, each with what it means for a run."""
    pool: list[_Leaf] = []
    for k in range(4):
        key = f"p{k}"
        for v in ("x", "y"):
            pool.append((f"params.{key} = '{v}'", lambda r, key=key, v=v: r.params.get(key) == v))
            pool.append(
                (
                    f"params.{key} != '{v}'",
                    lambda r, key=key, v=v: key in r.params and r.params[key] != v,
                )
            )
        pool.append(
            (f"params.{key} IN ('x', 'z')", lambda r, key=key: r.params.get(key) in ("x", "z"))
        )
        pool.append(
            (f"params.{key} LIKE 'y%'", lambda r, key=key: r.params.get(key, "").startswith("y"))
        )
    pool.append(("tags.t IS NULL", lambda r: "t" not in r.tags))
    pool.append(("tags.t IS NOT NULL", lambda r: "t" in r.tags))
    for threshold in (0.3, 0.6):
        pool.append(
            (
                f"metrics.m > {threshold}",
                lambda r, th=threshold: r.metric is not None and r.metric > th,
            )
        )
    for start in (3000, 5000):
        pool.append((f"start_time >= {start}", lambda r, s=start: r.start >= s))
    return pool


def _filter_at_the_limits(rnd: random.Random) -> tuple[str, Callable[[_Run], bool]]:
    """A filter of exactly MAX_FILTER_COMPARISONS comparisons whose AND/OR levels (alternating,
    the top one an AND of several hundred operands) nest MAX_FILTER_NESTING parentheses deep.
    Each level draws its comparisons from two or three of the pool's, so that the result
    depends on the runs' data."""
    pool = _leaves()
    levels = limits.MAX_FILTER_NESTING + 1
    per_level = 7
    top = limits.MAX_FILTER_COMPARISONS - per_level * (levels - 1)
    inner_text, inner_fn = "", None
    for level in reversed(range(levels)):
        chosen = rnd.sample(pool, rnd.choice((2, 3)))
        leaves = [rnd.choice(chosen) for _ in range(top if level == 0 else per_level)]
        is_and = level % 2 == 0
        texts = [t for t, _ in leaves]
        fns = [f for _, f in leaves]
        if inner_fn is not None:
            texts.insert(rnd.randrange(len(texts) + 1), f"({inner_text})")
            fns.append(inner_fn)
        joined = (" AND " if is_and else " OR ").join(texts)

        def evaluate(
            r: _Run, fns: list[Callable[[_Run], bool]] = fns, is_and: bool = is_and
        ) -> bool:
            return all(f(r) for f in fns) if is_and else any(f(r) for f in fns)

        inner_text, inner_fn = joined, evaluate
    assert inner_fn is not None
    return inner_text, inner_fn


def test_filter_at_every_parser_limit_runs(client: TracklineClient) -> None:
    """Finding 10(a): SQLite refused 992-1,000 comparisons ("Expression tree is too large") and
    its parser stack overflowed at about 30 levels of parentheses."""
    rnd = random.Random(9)
    exp = client.create_experiment("limits").experiment_id
    made: list[_Run] = []
    for i in range(12):
        values = {f"p{k}": rnd.choice("xy") for k in range(4) if rnd.random() < 0.85}
        tag = {"t": "1"} if rnd.random() < 0.5 else {}
        metric = round(rnd.random(), 3)
        run = client.create_run(exp, run_name=f"r{i}", start_time=i * 1000)
        client.log_batch(
            run.run_id,
            params=values,
            tags=tag,
            metrics=[pb.MetricSeries(key="m", steps=[0], timestamps=[1], values=[metric])],
        )
        made.append(_Run(run.run_id, i * 1000, values, tag, metric))
    for _ in range(3):
        text, matches = _filter_at_the_limits(rnd)
        assert len(text) <= limits.MAX_FILTER_LENGTH
        expected = {r.run_id for r in made if matches(r)}
        assert _ids(client.search_runs([exp], text)) == expected
    # Lists as long as the filter's length allows, beside the most experiment ids.
    values = [chr(0x4E00 + i) for i in range(15_000)]
    wanted = next(r for r in made if r.params.get("p0") == "x")
    in_lists = (
        "params.p0 IN ("
        + ", ".join(f"'{v}'" for v in values[:7_500] + ["x"])
        + ") AND tags.t IN ("
        + ", ".join(f"'{v}'" for v in values[7_500:] + ["1"])
        + ")"
    ).replace(", ", ",")
    assert len(in_lists) <= limits.MAX_FILTER_LENGTH
    unknown = [str(10**6 + i) for i in range(limits.MAX_SEARCH_EXPERIMENT_IDS - 1)]
    found = _ids(client.search_runs([exp, *unknown], in_lists))
    assert wanted.run_id in found or "t" not in wanted.tags
    assert found == {r.run_id for r in made if r.params.get("p0") == "x" and "t" in r.tags}


async def _fifty_thousand(url: str) -> None:
    db = Database(url)
    try:
        await db.create_schema()
        async with db.write() as conn:
            exp_id = await experiments.create(conn, "big", "", {}, "/artifacts")
            ids = [uuid.uuid4().hex for _ in range(limits.MAX_SEARCH_PAGE + 1)]
            await conn.execute(
                insert(runs),
                [
                    dict(
                        run_id=r,
                        experiment_id=exp_id,
                        run_name=f"r{i}",
                        status=1,
                        start_time=i,
                        end_time=None,
                        lifecycle_stage=lifecycle.ACTIVE,
                        parent_run_id=None,
                        artifact_uri="",
                    )  # fmt: skip
                    for i, r in enumerate(ids)
                ],
            )
            await conn.execute(insert(params), [dict(run_id=r, key="p", value="v") for r in ids])
            await conn.execute(insert(tags), [dict(run_id=r, key="t", value=r) for r in ids])
        page, rest = tpb.SearchRunsResponse(), tpb.SearchRunsResponse()
        async with db.snapshot() as snap:
            token = await queries.search_runs(
                snap, [str(exp_id)], "params.p = 'v'", [], limits.MAX_SEARCH_PAGE, "", 1,
                page.runs,
            )  # fmt: skip
            end = await queries.search_runs(
                snap, [str(exp_id)], "params.p = 'v'", [], 0, token, 1, rest.runs
            )
        assert len(page.runs) == limits.MAX_SEARCH_PAGE and token and end == ""
        assert all(
            [(p.key, p.value) for p in r.params] == [("p", "v")]
            and [(t.key, t.value) for t in r.tags] == [("t", r.run_id)]
            for r in page.runs
        )
        assert {r.run_id for r in [*page.runs, *rest.runs]} == set(ids)
    finally:
        await db.close()


def test_page_of_fifty_thousand_runs(database_url: str) -> None:
    """Finding 10(b): a page above 32,767 runs overran PostgreSQL's bind-parameter limit."""
    asyncio.run(_fifty_thousand(database_url))


def test_pages_are_capped_by_bytes(server: ServerProcess, client: TracklineClient) -> None:
    """Finding 10(c): two runs with 1,100 tags of 64 KB made every search reply exceed 128 MiB.
    Pages now end by bytes: the huge runs come one per page, the 1 MB ones about 31 a page,
    every run exactly once, and `trackline runs list` works."""
    exp = client.create_experiment("heavy").experiment_id
    value = "v" * limits.MAX_TAG_VALUE_LENGTH
    made = set()
    for i in range(2):
        run = client.create_run(exp, run_name=f"huge{i}", start_time=1 + i)
        client.log_batch(run.run_id, tags={f"t{k}": value for k in range(1100)})
        made.add(run.run_id)
    for i in range(40):
        run = client.create_run(exp, run_name=f"mb{i}", start_time=100 + i)
        client.log_batch(run.run_id, tags={f"t{k}": value for k in range(16)})
        made.add(run.run_id)
    pages: list[list[str]] = []
    token = ""
    while True:
        reply = client.stub.SearchRuns(
            tpb.SearchRunsRequest(experiment_ids=[exp], page_token=token)
        )
        pages.append([r.run_id for r in reply.runs])
        assert len(reply.runs) == 1 or reply.ByteSize() <= limits.MAX_SEARCH_REPLY_BYTES
        token = reply.next_page_token
        if not token:
            break
    returned = [r for page in pages for r in page]
    assert sorted(returned) == sorted(made)
    # Newest first: 31 and 9 of the 1 MB runs (the 10th would pass the budget), then the
    # huge runs alone.
    assert [len(p) for p in pages] == [31, 9, 1, 1]
    assert _ids(client.search_runs([exp])) == made
    cli = subprocess.run(
        [sys.executable, "-m", "trackline.cli", "--uri", server.address, "runs", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert "huge0" in cli.stdout and "mb39" in cli.stdout


async def _too_large(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(url)
    try:
        await db.create_schema()
        async with db.write() as conn:
            exp_id = await experiments.create(conn, "e", "", {}, "/artifacts")
            run_id = await run_queries.create(conn, exp_id, "big", 0, {}, "")
            await conn.execute(
                insert(tags),
                [dict(run_id=run_id, key=f"t{k}", value="v" * 65536) for k in range(40)],
            )
        monkeypatch.setattr(queries, "_MAX_SINGLE_BYTES", 2 * 1024 * 1024)
        async with db.snapshot() as snap:
            with pytest.raises(ResourceExhausted) as err:
                await queries.search_runs(snap, [], "", [], 0, "", 1, tpb.SearchRunsResponse().runs)
        assert err.value.reason == "REPLY_TOO_LARGE"
        assert run_id in err.value.message
    finally:
        await db.close()


def test_run_larger_than_any_reply_is_refused_by_name(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run too large for one message is named in RESOURCE_EXHAUSTED, not sent to fail in
    gRPC (the send limit is shrunk here: filling 128 MiB would make the test slow)."""
    asyncio.run(_too_large(database_url, monkeypatch))


async def _timeout(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(url)
    try:
        await db.create_schema()
        monkeypatch.setattr(limits, "SEARCH_STATEMENT_TIMEOUT_S", 0.001)
        text = " OR ".join(f"params.p{i} = 'v'" for i in range(1000))
        async with db.snapshot() as snap:
            with pytest.raises(ResourceExhausted) as err:
                await queries.search_runs(
                    snap, [], text, [], 0, "", 1, tpb.SearchRunsResponse().runs
                )
        assert err.value.reason == "QUERY_TOO_EXPENSIVE"
        assert "narrow the filter" in err.value.message
    finally:
        await db.close()


def test_statement_timeout_is_query_too_expensive(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 6's backstop: a search statement over the time limit is a clear error (the
    limit is shrunk to 1 ms here)."""
    asyncio.run(_timeout(postgres_url, monkeypatch))


def test_odd_filter_values(client: TracklineClient) -> None:
    """Finding 9: numbers at or above 2**63, 400 digits, '²' and NUL gave UNKNOWN/driver errors."""
    exp = client.create_experiment("odd").experiment_id
    small = client.create_run(exp, run_name="small", start_time=5)
    client.log_batch(
        small.run_id,
        params={"p": "v"},
        metrics=[pb.MetricSeries(key="m", steps=[0], timestamps=[1], values=[1.5])],
    )
    infinite = client.create_run(exp, run_name="inf", start_time=6)
    client.log_batch(
        infinite.run_id,
        params={"p": "w"},
        metrics=[pb.MetricSeries(key="m", steps=[0], timestamps=[1], values=[float("inf")])],
    )
    both = {small.run_id, infinite.run_id}

    def found(text: str, exp_ids: list[str] | None = None) -> set[str]:
        return _ids(client.search_runs(exp_ids or [exp], text))

    # Metrics compare as floats: 400 digits is Infinity, as 1e400 is.
    huge = "9" * 400
    assert found(f"metrics.m < {2**63}") == {small.run_id}
    assert found(f"metrics.m < {huge}") == {small.run_id}
    assert found(f"metrics.m = {huge}") == found("metrics.m = 1e400") == {infinite.run_id}
    assert found(f"metrics.m > -{huge}") == both
    assert found(f"metrics.m IN (1.5, {huge})") == both
    # Integer attributes are 64-bit: beyond that is an error at the number's position.
    for text in (f"start_time < {2**63}", f"start_time > -{2**63 + 1}", f"end_time = {huge}"):
        with pytest.raises(InvalidArgument) as err:
            found(text)
        assert err.value.reason == "INVALID_FILTER"
        assert "number out of range" in str(err.value)
        assert f"position {text.index(' ', text.index(' ') + 1) + 1}" in str(err.value)
    assert found(f"start_time < {2**63 - 1}") == both
    # An experiment id too large for any experiment matches none, like an unknown id.
    assert found(f"experiment_id = '{2**63}'") == set()
    assert found(f"experiment_id = {huge}") == set()
    assert found(f"experiment_id != '{2**31}'") == both
    assert found(f"experiment_id IN ('{huge}', '{exp}')") == both
    assert found(f"experiment_id NOT IN ('{huge}')") == both
    assert found("", [str(2**63)]) == set()
    assert found("", [huge, exp]) == both
    for bad in ("²", "1²", "٣"):
        with pytest.raises(InvalidArgument) as err:
            found("", [bad])
        assert err.value.reason == "INVALID_EXPERIMENT_ID"
        with pytest.raises(InvalidArgument) as err:
            found(f"experiment_id = '{bad}'")
        assert err.value.reason == "INVALID_FILTER"
    with pytest.raises(InvalidArgument) as err:
        found("metrics.m = 1" + "0" * 5000)
    assert "number too long" in str(err.value)
    # NUL: no stored string holds one (PostgreSQL cannot store it); same answers on SQLite.
    assert found("params.p = 'v\0'") == set()
    assert found("params.p != 'v\0'") == both
    assert found("params.p < 'v\0x'") == found("params.p <= 'v\0'") == {small.run_id}
    assert found("params.p > 'v\0'") == found("params.p >= 'v\0'") == {infinite.run_id}
    assert found("params.p LIKE '%\0%'") == found("params.p ILIKE '\0'") == set()
    assert found("params.p NOT LIKE '\0%'") == both
    assert found("params.p IN ('v', '\0')") == {small.run_id}
    assert found("params.p NOT IN ('v', '\0')") == {infinite.run_id}
    assert found("params.p NOT IN ('\0')") == both
    assert found("run_name = 'small\0'") == set()
    assert found("parent_run_id != '\0'") == set()
