"""Properties of the filter parser: any text parses or raises FilterError, and every tree
survives rendering to text (canonical or varied in spelling) and parsing back."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from typing import Any, get_args

from hypothesis import given, settings
from hypothesis import strategies as st
from trackline_server.search import (
    And,
    Comparison,
    Expr,
    FilterError,
    Identifier,
    IdentKind,
    Op,
    Or,
    Scalar,
    parse_filter,
    parse_order_by,
    to_text,
)
from trackline_server.tracking.search_schema import EXPERIMENTS, RUNS

from tests.support.filter_trees import norm, parsed

# ----------------------------------------------------------------------------------------------
# Properties

OPS: tuple[Op, ...] = get_args(Op)
NUMBER_OPS: tuple[Op, ...] = tuple(op for op in OPS if "LIKE" not in op)
STRING_OPS: tuple[Op, ...] = OPS
EQUALITY_OPS: tuple[Op, ...] = ("=", "!=", "IN", "NOT IN")
COMPARE_OPS: tuple[Op, ...] = ("=", "!=", "<", "<=", ">", ">=", "IN", "NOT IN")
STRING_ATTR_OPS = tuple(op for op in STRING_OPS if not op.startswith("IS"))

keys = st.one_of(
    st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=12),
    st.sampled_from(["loss", "mlflow.runName", "val/loss", "a`b", 'say "hi"', "``", "チーム"]),
)
strings = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "'", "''", '"', "\\", "\\'", "a\\", "%x_", "AND", "NULL", "ビジョン"]),
)
numbers: st.SearchStrategy[Scalar] = st.one_of(
    st.integers(-(10**18), 10**18), st.floats(allow_nan=True, allow_infinity=True)
)
# A tag key that is an alias (tags.mlflow.runName) names something else: no tree holds it.
tag_keys = keys.filter(lambda key: RUNS.key_target(RUNS.kind_named("tag"), key)[:2] == ("tag", key))
integers: st.SearchStrategy[Scalar] = st.integers(-(10**15), 10**15)
statuses = st.sampled_from(["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"])
experiment_ids = st.integers(0, 10**6).map(str)

# kind -> (keys, operators, values); attributes carry their canonical name as the only key.
RUN_TARGETS: list[tuple[IdentKind, st.SearchStrategy[str], tuple[Op, ...], Any]] = [
    ("metric", keys, NUMBER_OPS, numbers),
    ("param", keys, STRING_OPS, strings),
    ("tag", tag_keys, STRING_OPS, strings),
    ("attribute", st.just("run_id"), STRING_ATTR_OPS, strings),
    ("attribute", st.just("run_name"), STRING_ATTR_OPS, strings),
    ("attribute", st.just("artifact_uri"), STRING_ATTR_OPS, strings),
    ("attribute", st.just("parent_run_id"), STRING_OPS, strings),
    ("attribute", st.just("start_time"), COMPARE_OPS, integers),
    ("attribute", st.just("end_time"), NUMBER_OPS, integers),
    ("attribute", st.just("status"), EQUALITY_OPS, statuses),
    ("attribute", st.just("experiment_id"), EQUALITY_OPS, experiment_ids),
]


@st.composite
def comparisons(draw: st.DrawFn) -> Comparison:
    kind, key_strategy, ops, values = draw(st.sampled_from(RUN_TARGETS))
    op = draw(st.sampled_from(ops))
    value: Any
    if op in ("IS NULL", "IS NOT NULL"):
        value = None
    elif op in ("IN", "NOT IN"):
        value = tuple(draw(st.lists(values, min_size=1, max_size=4)))
    else:
        value = draw(values)
    return Comparison(Identifier(kind, draw(key_strategy), 0), op, value, 0)


def combine(node: type[And] | type[Or]) -> Callable[[list[Expr]], Expr]:
    def build(operands: list[Expr]) -> Expr:
        flat: list[Expr] = []
        for operand in operands:
            flat.extend(operand.operands if isinstance(operand, node) else (operand,))
        return node(tuple(flat))

    return build


exprs: st.SearchStrategy[Expr] = st.recursive(
    comparisons(),
    lambda children: st.one_of(
        st.lists(children, min_size=2, max_size=4).map(combine(And)),
        st.lists(children, min_size=2, max_size=4).map(combine(Or)),
    ),
    max_leaves=12,
)

# Fragments that make up plausible (and mostly malformed) filters.
FRAGMENTS = [
    "metrics.a", "params.b", "tags.`c`", 'tags."d"', "attributes.status", "start_time",
    "end_time", "experiment_id", "run_name", "foo", "foo.bar", "metrics.", "`x`",
    " AND ", " OR ", " and ", " NOT ", " IN ", " IS ", " NULL ", " LIKE ", " ILIKE ", " ASC ",
    "=", "==", "!=", "<>", "<", "<=", ">", ">=", "(", ")", ",", " ",
    "1", "-1", "1.5", "1e3", "1e", ".", "-", "+", "NaN", "-Infinity", "'x'", '"y"', "'",
    '"', "`", "''", "'RUNNING'", "\\", "チ", "\t", "\n",
]  # fmt: skip


class TestProperties:
    @settings(max_examples=300, deadline=None)
    @given(st.one_of(st.text(), st.lists(st.sampled_from(FRAGMENTS)).map("".join)))
    def test_any_text_parses_or_raises_filter_error(self, text: str) -> None:
        for schema in (RUNS, EXPERIMENTS):
            try:
                result = parse_filter(text, schema)
            except FilterError as err:
                assert 0 <= err.position <= len(text)
                assert err.message and "\n" not in err.message
                assert str(err).startswith(f"{err.message} at position {err.position}")
            else:
                assert result is None or isinstance(result, Comparison | And | Or)
                if result is None:
                    assert not text.strip()

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.one_of(st.text(max_size=20), st.sampled_from(FRAGMENTS)), max_size=25))
    def test_any_order_by_parses_or_raises_filter_error(self, items: list[str]) -> None:
        try:
            parse_order_by(items, RUNS)
        except FilterError as err:
            assert re.match(r"order_by\[\d+\]: ", err.message)
            index = int(err.message[len("order_by[") : err.message.index("]")])
            assert 0 <= index < len(items)
            assert 0 <= err.position <= len(items[index])

    @settings(max_examples=200, deadline=None)
    @given(exprs)
    def test_to_text_round_trips(self, expr: Expr) -> None:
        assert parsed(to_text(expr)) == norm(expr)

    @settings(max_examples=200, deadline=None)
    @given(exprs, st.randoms(use_true_random=False))
    def test_spelling_variations_do_not_change_the_tree(
        self, expr: Expr, rnd: random.Random
    ) -> None:
        assert parsed(VariedRenderer(rnd).expr(expr)) == norm(expr)


class VariedRenderer:
    """Renders a tree like to_text, with random keyword case, spacing, quoting, aliases."""

    PREFIXES: dict[IdentKind, list[str]] = {
        "metric": ["metrics", "metric"],
        "param": ["params", "param", "parameters", "parameter"],
        "tag": ["tags", "tag"],
        "attribute": ["attributes", "attribute", "attr", "run", ""],
    }

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd

    def space(self, required: bool = False) -> str:
        spaces = ["", " ", "  ", "\t", "\n", " \r\n "]
        return self.rnd.choice(spaces[1:] if required else spaces)

    def word(self, word: str) -> str:
        return "".join(self.rnd.choice([c.lower(), c.upper()]) for c in word)

    def keyword(self, words: str) -> str:
        inner = self.space(required=True).join(self.word(w) for w in words.split())
        return self.space(required=True) + inner + self.space(required=True)

    def expr(self, expr: Expr) -> str:
        if isinstance(expr, Comparison):
            text = self.comparison(expr)
        else:
            joiner = "AND" if isinstance(expr, And) else "OR"
            text = self.keyword(joiner).join(
                self.parenthesised(self.expr(operand))
                if isinstance(operand, Or) and joiner == "AND"
                else self.expr(operand)
                for operand in expr.operands
            )
        return self.parenthesised(text) if self.rnd.random() < 0.2 else text

    def parenthesised(self, text: str) -> str:
        return f"({self.space()}{text}{self.space()})"

    def comparison(self, comparison: Comparison) -> str:
        ident, op, value = comparison.ident, comparison.op, comparison.value
        text = self.identifier(ident)
        if op == "=":
            text += self.space() + self.rnd.choice(["=", "=="]) + self.space()
        elif op == "!=":
            text += self.space() + self.rnd.choice(["!=", "<>"]) + self.space()
        elif op in ("<", "<=", ">", ">="):
            text += self.space() + op + self.space()
        else:
            text += self.keyword(op)
        if isinstance(value, tuple):
            comma = self.space() + "," + self.space()
            text += self.parenthesised(comma.join(self.value(ident, v) for v in value))
        elif value is not None:
            text += self.value(ident, value)
        return text

    def identifier(self, ident: Identifier) -> str:
        prefix = self.word(self.rnd.choice(self.PREFIXES[ident.kind]))
        if not prefix:
            return self.rnd.choice([self.word(ident.key), f"`{self.word(ident.key)}`"])
        if self.rnd.random() < 0.3:
            prefix = f"`{prefix}`"
        if re.fullmatch(r"[A-Za-z0-9_.\-/:]+", ident.key) and self.rnd.random() < 0.5:
            return f"{prefix}.{ident.key}"
        quote = self.rnd.choice(['"', "`"])
        return f"{prefix}.{quote}{ident.key.replace(quote, quote * 2)}{quote}"

    def value(self, ident: Identifier, value: Scalar) -> str:
        # Only the attributes compare without regard to case or leading zeros: a metric or
        # param may be called "status" too.
        if ident.kind == "attribute" and ident.key == "status":
            assert isinstance(value, str)
            return self.string(self.word(value))
        if ident.kind == "attribute" and ident.key == "experiment_id":
            assert isinstance(value, str)
            digits = "0" * self.rnd.randint(0, 2) + value
            return self.rnd.choice([digits, self.string(digits)])
        if isinstance(value, str):
            return self.string(value)
        if isinstance(value, int):
            return self.rnd.choice(["", "+"]) + str(value) if value >= 0 else str(value)
        if math.isnan(value):
            return self.rnd.choice(["NaN", "nan", "NAN", "+NaN"])
        if math.isinf(value):
            word = self.word(self.rnd.choice(["inf", "infinity"]))
            return ("-" if value < 0 else self.rnd.choice(["", "+"])) + word
        return self.rnd.choice([repr(value), f"{value:.17e}"])

    def string(self, value: str) -> str:
        quote = self.rnd.choice(["'", '"'])
        escaped = value.replace("\\", "\\\\")
        if self.rnd.random() < 0.5:
            escaped = escaped.replace(quote, quote * 2)
        else:
            escaped = escaped.replace(quote, "\\" + quote)
        return quote + escaped + quote
