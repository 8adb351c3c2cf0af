"""Every filter the parser admits compiles to SQL SQLite can parse, and odd numbers are
answered by the parser (issue 9: findings 9 and 10(a))."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, select
from trackline_server import limits
from trackline_server.models import metadata
from trackline_server.search import FilterError, filter_clause, parse_filter
from trackline_server.tracking.search_schema import EXPERIMENTS, RUNS

_DEEPEST_LEAVES = [
    "metrics.m NOT IN (1, NaN)",
    "metrics.m != NaN",
    "metrics.m IN (NaN, 2)",
    "params.p NOT LIKE 'x%'",
    "tags.t IS NULL",
    "params.p IN ('a', 'b')",
    "end_time IS NOT NULL",
]


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    eng = create_engine("sqlite://")
    metadata.create_all(eng)
    yield eng
    eng.dispose()


def _nested(levels: int, leaves_per_level: int, leaf: str, inner_last: bool) -> str:
    text = leaf
    for level in range(levels):
        op = " AND " if level % 2 else " OR "
        parts = [leaf] * leaves_per_level
        parts.insert(len(parts) if inner_last else 0, f"({text})")
        text = op.join(parts)
    return text


def _shapes() -> Iterator[tuple[str, str]]:
    most = limits.MAX_FILTER_COMPARISONS
    nesting = limits.MAX_FILTER_NESTING
    for leaf in _DEEPEST_LEAVES:
        yield f"right-nested {leaf}", _nested(nesting, 1, leaf, inner_last=True)
        yield f"left-nested {leaf}", _nested(nesting, 1, leaf, inner_last=False)
    wide = (most - 1) // nesting
    yield "nested and wide", _nested(nesting, wide, "params.p = 'v'", inner_last=True)
    for op in (" AND ", " OR "):
        yield f"flat{op.strip()}", op.join(["params.p = 'v'"] * most)
        yield f"flat metric{op.strip()}", op.join(["metrics.m != NaN"] * most)
    bottom = " AND ".join(["tags.t = 'x'"] * (most - nesting))
    for level in range(nesting):
        bottom = f"params.p = 'v' {'OR' if level % 2 == 0 else 'AND'} ({bottom})"
    yield "wide at the bottom", bottom


@pytest.mark.parametrize(("name", "text"), list(_shapes()), ids=[n for n, _ in _shapes()])
def test_filters_at_the_limits_compile_for_sqlite(engine: Engine, name: str, text: str) -> None:
    """SQLite refused them: "Expression tree is too large" past 1,000 chained comparisons,
    "parser stack overflow" past about 30 levels of parentheses."""
    expr = parse_filter(text, RUNS)
    assert expr is not None
    query = select(RUNS.id_column).where(filter_clause(RUNS, expr, "sqlite"))
    with engine.connect() as conn:
        assert list(conn.execute(query)) == []


@pytest.mark.parametrize(
    ("text", "position"),
    [
        (f"start_time < {2**63}", 13),
        (f"start_time > {-(2**63) - 1}", 13),
        ("end_time = " + "9" * 400, 11),
        (f"attributes.start_time IN (1, {2**64})", 29),
    ],
)
def test_integers_beyond_64_bits_are_out_of_range(text: str, position: int) -> None:
    with pytest.raises(FilterError) as err:
        parse_filter(text, RUNS)
    assert err.value.message.startswith("number out of range")
    assert err.value.position == position


def test_integer_bounds_and_huge_metric_numbers_parse() -> None:
    assert parse_filter(f"start_time <= {2**63 - 1} AND start_time >= {-(2**63)}", RUNS) is not None
    assert parse_filter(f"creation_time < {2**63 - 1}", EXPERIMENTS) is not None
    assert parse_filter("metrics.m < " + "9" * 400, RUNS) is not None
    with pytest.raises(FilterError) as err:
        parse_filter(f"creation_time < {2**63}", EXPERIMENTS)
    assert err.value.message.startswith("number out of range")


@pytest.mark.parametrize("value", ["'²'", "'1²'", "'٣'", "²"])
def test_experiment_ids_must_be_ascii_digits(value: str) -> None:
    with pytest.raises(FilterError) as err:
        parse_filter(f"experiment_id = {value}", RUNS)
    assert err.value.position == 16
