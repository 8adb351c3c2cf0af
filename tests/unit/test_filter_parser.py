"""Unit tests of the filter parser: grammar, keywords, identifiers, values, order_by and
to_text, over the run and experiment schemas of tracking."""

from __future__ import annotations

import math

import pytest
from trackline_server.search import (
    And,
    Comparison,
    EntitySchema,
    Expr,
    FilterError,
    Identifier,
    IdentKind,
    Op,
    OrderKey,
    parse_filter,
    parse_order_by,
    to_text,
)
from trackline_server.tracking.search_schema import EXPERIMENTS, RUNS

from tests.support.filter_trees import AND, OR, a, m, norm, p, parsed, t

A, B, C = m("a", "=", 1), m("b", "=", 2), m("c", "=", 3)

# ----------------------------------------------------------------------------------------------
# The examples of the language


EXAMPLES: list[tuple[str, Expr]] = [
    (
        "metrics.loss < 0.3 and params.optimizer = 'adam' and tags.team LIKE 'vision%'",
        AND(m("loss", "<", 0.3), p("optimizer", "=", "adam"), t("team", "LIKE", "vision%")),
    ),
    (
        "(metrics.acc >= 0.9 OR metrics.`val acc` > 0.8) AND attributes.status = 'FINISHED'",
        AND(
            OR(m("acc", ">=", 0.9), m("val acc", ">", 0.8)),
            a("status", "=", "FINISHED"),
        ),
    ),
    (
        "run_name ILIKE '%bert%' and start_time > 1700000000000 and end_time IS NULL",
        AND(
            a("run_name", "ILIKE", "%bert%"),
            a("start_time", ">", 1700000000000),
            a("end_time", "IS NULL"),
        ),
    ),
    (
        "attributes.run_id IN ('a1b2', \"c3d4\") and tags.`mlflow.source.name` != 'x'",
        AND(a("run_id", "IN", ["a1b2", "c3d4"]), t("trackline.source.name", "!=", "x")),
    ),
    (
        "params.lr NOT IN ('0.1', '0.01') or tags.owner IS NOT NULL",
        OR(p("lr", "NOT IN", ["0.1", "0.01"]), t("owner", "IS NOT NULL")),
    ),
    ('metrics."my-metric" = NaN', m("my-metric", "=", math.nan)),
    ("metrics.loss != -Infinity", m("loss", "!=", -math.inf)),
    ("metrics.x > 1e-3", m("x", ">", 0.001)),
]


class TestExamples:
    @pytest.mark.parametrize(("text", "expected"), EXAMPLES)
    def test_example_parses(self, text: str, expected: Expr) -> None:
        assert parsed(text) == norm(expected)

    @pytest.mark.parametrize("text", ["", " ", " \t\r\n  "])
    def test_empty_filter_is_none(self, text: str) -> None:
        assert parse_filter(text, RUNS) is None

    def test_positions_point_at_identifiers(self) -> None:
        expr = parse_filter("metrics.a = 1 AND  tags.b = 'x'", RUNS)
        assert isinstance(expr, And)
        first, second = expr.operands
        assert isinstance(first, Comparison) and isinstance(second, Comparison)
        assert (first.position, first.ident.position) == (0, 0)
        assert (second.position, second.ident.position) == (19, 19)


# ----------------------------------------------------------------------------------------------
# Structure: precedence, parentheses, flattening


class TestStructure:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("metrics.a = 1 or metrics.b = 2 and metrics.c = 3", OR(A, AND(B, C))),
            ("metrics.a = 1 and metrics.b = 2 or metrics.c = 3", OR(AND(A, B), C)),
            ("(metrics.a = 1 or metrics.b = 2) and metrics.c = 3", AND(OR(A, B), C)),
            ("metrics.a = 1 and (metrics.b = 2 or metrics.c = 3)", AND(A, OR(B, C))),
            ("((metrics.a = 1))", A),
            ("(metrics.a = 1) and ((metrics.b = 2))", AND(A, B)),
        ],
    )
    def test_precedence_and_parentheses(self, text: str, expected: Expr) -> None:
        assert parsed(text) == norm(expected)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("metrics.a = 1 and metrics.b = 2 and metrics.c = 3", AND(A, B, C)),
            ("metrics.a = 1 and (metrics.b = 2 and metrics.c = 3)", AND(A, B, C)),
            ("(metrics.a = 1 and metrics.b = 2) and metrics.c = 3", AND(A, B, C)),
            ("metrics.a = 1 or (metrics.b = 2 or (metrics.c = 3))", OR(A, B, C)),
            ("(metrics.a = 1 or metrics.b = 2) or metrics.c = 3", OR(A, B, C)),
        ],
    )
    def test_same_operators_flatten(self, text: str, expected: Expr) -> None:
        assert parsed(text) == norm(expected)

    def test_nested_alternation_keeps_structure(self) -> None:
        text = "(metrics.a = 1 or (metrics.b = 2 and (metrics.c = 3 or metrics.a = 1)))"
        assert parsed(text) == norm(OR(A, AND(B, OR(C, A))))


# ----------------------------------------------------------------------------------------------
# Keywords and operators


class TestKeywordsAndOperators:
    @pytest.mark.parametrize(
        "text",
        [
            "metrics.a = 1 AND params.b LIKE 'x' OR tags.c IS NOT NULL",
            "metrics.a = 1 and params.b like 'x' or tags.c is not null",
            "metrics.a = 1 aNd params.b LiKe 'x' oR tags.c iS NoT nUlL",
            "metrics.a=1\tAND\nparams.b   LIKE'x'OR tags.c IS\n\nNOT NULL",
        ],
    )
    def test_keywords_are_case_insensitive(self, text: str) -> None:
        assert parsed(text) == norm(
            OR(AND(m("a", "=", 1), p("b", "LIKE", "x")), t("c", "IS NOT NULL"))
        )

    @pytest.mark.parametrize(
        ("written", "op"),
        [
            ("=", "="),
            ("==", "="),
            ("!=", "!="),
            ("<>", "!="),
            ("<", "<"),
            ("<=", "<="),
            (">", ">"),
            (">=", ">="),
            ("LIKE", "LIKE"),
            ("ilike", "ILIKE"),
            ("not like", "NOT LIKE"),
            ("NOT  ILIKE", "NOT ILIKE"),
        ],
    )
    def test_binary_operators(self, written: str, op: Op) -> None:
        assert parsed(f"params.p {written} 'v'") == norm(p("p", op, "v"))

    @pytest.mark.parametrize("written", ["<=", ">=", "<>", "!=", "==", "<", ">", "="])
    def test_operators_need_no_spaces(self, written: str) -> None:
        expr = parsed(f"metrics.loss{written}-1")
        assert expr.value == ("int", -1)

    def test_in_and_null_operators(self) -> None:
        text = "tags.a in ('x') and tags.b not in ('y', 'z') and tags.c is null"
        assert parsed(text) == norm(
            AND(t("a", "IN", ["x"]), t("b", "NOT IN", ["y", "z"]), t("c", "IS NULL"))
        )


# ----------------------------------------------------------------------------------------------
# Identifiers


class TestIdentifiers:
    @pytest.mark.parametrize(
        ("prefix", "kind"),
        [
            ("metrics", "metric"),
            ("metric", "metric"),
            ("METRICS", "metric"),
            ("params", "param"),
            ("param", "param"),
            ("parameters", "param"),
            ("Parameter", "param"),
            ("tags", "tag"),
            ("tag", "tag"),
        ],
    )
    def test_prefixes(self, prefix: str, kind: IdentKind) -> None:
        value = "1" if kind == "metric" else "'1'"
        expr = parsed(f"{prefix}.k = {value}")
        assert expr.ident == Identifier(kind, "k", 0)

    @pytest.mark.parametrize("prefix", ["attributes", "attribute", "attr", "run", "ATTR"])
    def test_attribute_prefixes(self, prefix: str) -> None:
        assert parsed(f"{prefix}.run_name = 'x'") == norm(a("run_name", "=", "x"))

    @pytest.mark.parametrize(
        ("text", "key"),
        [
            ("tags.mlflow.note.content = 'x'", "mlflow.note.content"),
            ("tags.val/loss = 'x'", "val/loss"),
            ("tags.a-b:c_d.9 = 'x'", "a-b:c_d.9"),
            ("tags.`val loss` = 'x'", "val loss"),
            ("tags.`a``b` = 'x'", "a`b"),
            ("tags.`````` = 'x'", "``"),
            ("tags.\"my-key\" = 'x'", "my-key"),
            ('tags."say ""hi""" = \'x\'', 'say "hi"'),
            ("tags.`it's \"q\"` = 'x'", 'it\'s "q"'),
            ("tags.`チーム` = 'x'", "チーム"),
            ("tags.\"ключ 🔑\" = 'x'", "ключ 🔑"),
        ],
    )
    def test_keys(self, text: str, key: str) -> None:
        assert parsed(text) == norm(t(key, "=", "x"))

    def test_unicode_key_and_value(self) -> None:
        assert parsed("tags.`チーム` = 'ビジョン'") == norm(t("チーム", "=", "ビジョン"))

    @pytest.mark.parametrize(
        ("name", "canonical"),
        [
            ("created", "start_time"),
            ("name", "run_name"),
            ("id", "run_id"),
            ("attributes.created", "start_time"),
            ("attr.name", "run_name"),
            ("run.id", "run_id"),
            ("START_TIME", "start_time"),
            ("attributes.`run_name`", "run_name"),
        ],
    )
    def test_run_attribute_aliases(self, name: str, canonical: str) -> None:
        value = "5" if canonical == "start_time" else "'x'"
        expr = parsed(f"{name} = {value}")
        assert expr.ident == Identifier("attribute", canonical, 0)

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("run_id", "'x'"),
            ("run_name", "'x'"),
            ("status", "'RUNNING'"),
            ("start_time", "1"),
            ("end_time", "1"),
            ("experiment_id", "'1'"),
            ("parent_run_id", "'x'"),
            ("artifact_uri", "'x'"),
        ],
    )
    def test_every_run_attribute_is_known(self, name: str, value: str) -> None:
        expr = parsed(f"{name} IN ({value})")
        assert expr.ident == Identifier("attribute", name, 0)


# ----------------------------------------------------------------------------------------------
# Values


class TestValues:
    @pytest.mark.parametrize(
        ("literal", "value"),
        [
            ("'adam'", "adam"),
            ('"adam"', "adam"),
            ("''", ""),
            ("'it''s'", "it's"),
            ('"say ""hi"""', 'say "hi"'),
            ("'it\\'s'", "it's"),
            ('"say \\"hi\\""', 'say "hi"'),
            ("'a\\\\b'", "a\\b"),
            ("'C:\\path\\x'", "C:\\path\\x"),
            ("'100\\%'", "100\\%"),
            ("'\"'", '"'),
            ('"\'"', "'"),
            ("'ビジョン 🚀'", "ビジョン 🚀"),
            ("'line\nbreak'", "line\nbreak"),
            ("'AND OR ( ) NULL'", "AND OR ( ) NULL"),
        ],
    )
    def test_strings(self, literal: str, value: str) -> None:
        assert parsed(f"params.p = {literal}") == norm(p("p", "=", value))

    @pytest.mark.parametrize(
        ("literal", "value"),
        [
            ("1", 1),
            ("-1", -1),
            ("+7", 7),
            ("0", 0),
            ("1700000000000", 1700000000000),
            ("123456789012345678901234567890", 123456789012345678901234567890),
            ("3.5", 3.5),
            ("-3.5", -3.5),
            (".5", 0.5),
            ("-.5", -0.5),
            ("1.", 1.0),
            ("1e-3", 0.001),
            ("2E+10", 2e10),
            ("1e5", 1e5),
            ("1e999", math.inf),
            ("NaN", math.nan),
            ("nan", math.nan),
            ("Infinity", math.inf),
            ("inf", math.inf),
            ("INF", math.inf),
            ("-Infinity", -math.inf),
            ("-inf", -math.inf),
            ("+Infinity", math.inf),
        ],
    )
    def test_numbers(self, literal: str, value: int | float) -> None:
        assert parsed(f"metrics.m = {literal}") == norm(m("m", "=", value))

    def test_integers_stay_integers(self) -> None:
        expr = parse_filter("start_time >= 1700000000123", RUNS)
        assert isinstance(expr, Comparison)
        assert type(expr.value) is int and expr.value == 1700000000123

    def test_in_list_of_numbers(self) -> None:
        assert parsed("metrics.m IN (1, 2.5, -Inf,NaN)") == norm(
            m("m", "IN", [1, 2.5, -math.inf, math.nan])
        )

    def test_double_quoted_token_is_key_after_prefix_and_string_as_value(self) -> None:
        assert parsed('tags."a" = "a"') == norm(t("a", "=", "a"))


# ----------------------------------------------------------------------------------------------
# order_by


class TestOrderBy:
    def test_items(self) -> None:
        keys = parse_order_by(
            ["metrics.loss DESC", "start_time", "tags.`a b` asc", "name Desc"], RUNS
        )
        assert [norm(key) for key in keys] == [
            OrderKey(Identifier("metric", "loss", 0), True),
            OrderKey(Identifier("attribute", "start_time", 0), False),
            OrderKey(Identifier("tag", "a b", 0), False),
            OrderKey(Identifier("attribute", "run_name", 0), True),
        ]

    def test_empty(self) -> None:
        assert parse_order_by([], RUNS) == []

    def test_experiment(self) -> None:
        keys = parse_order_by(["created DESC", "name"], EXPERIMENTS)
        assert [(k.ident.key, k.descending) for k in keys] == [
            ("creation_time", True),
            ("name", False),
        ]

    @pytest.mark.parametrize(
        ("items", "schema", "position", "message_start"),
        [
            (["metrics.a", "loss"], RUNS, 0, "order_by[1]: unknown identifier 'loss'"),
            (["metrics.loss DESC x"], RUNS, 18, "order_by[0]: expected ASC, DESC or the end"),
            (["metrics.loss UP"], RUNS, 13, "order_by[0]: expected ASC, DESC"),
            ([""], RUNS, 0, "order_by[0]: expected an identifier"),
            (["  tags.'x'"], RUNS, 7, "order_by[0]: expected a key after 'tags.'"),
            (["metrics.loss"], EXPERIMENTS, 0, "order_by[0]: metrics are not available"),
            (["start_time", "created desc"], RUNS, 0, "order_by[1]: attributes.`start_time`"),
            (["metrics.a", "metric.`a`"], RUNS, 0, "order_by[1]: metrics.`a` is already"),
            (["metrics.a"] * 21, RUNS, 0, "order_by[20]: too many sort keys"),
            (["metrics.a = 1"], RUNS, 10, "order_by[0]: expected ASC, DESC"),
        ],
    )
    def test_errors(
        self, items: list[str], schema: EntitySchema, position: int, message_start: str
    ) -> None:
        with pytest.raises(FilterError) as info:
            parse_order_by(items, schema)
        assert info.value.message.startswith(message_start), str(info.value)
        assert info.value.position == position

    def test_same_key_in_different_kinds_is_allowed(self) -> None:
        assert len(parse_order_by(["metrics.x", "params.x", "tags.x"], RUNS)) == 3

    def test_twenty_items(self) -> None:
        assert len(parse_order_by([f"metrics.m{i}" for i in range(20)], RUNS)) == 20


# ----------------------------------------------------------------------------------------------
# to_text


class TestToText:
    @pytest.mark.parametrize(
        ("expr", "text"),
        [
            (m("loss", "<", 0.3), "metrics.`loss` < 0.3"),
            (m("a`b", "=", math.nan), "metrics.`a``b` = NaN"),
            (m("x", "IN", [1, math.inf, -math.inf]), "metrics.`x` IN (1, Infinity, -Infinity)"),
            (p("p", "=", "it's \\ ok"), "params.`p` = 'it''s \\\\ ok'"),
            (a("end_time", "IS NOT NULL"), "attributes.`end_time` IS NOT NULL"),
            (AND(OR(A, B), C), "(metrics.`a` = 1 OR metrics.`b` = 2) AND metrics.`c` = 3"),
            (OR(AND(A, B), C), "metrics.`a` = 1 AND metrics.`b` = 2 OR metrics.`c` = 3"),
        ],
    )
    def test_rendering(self, expr: Expr, text: str) -> None:
        assert to_text(expr) == text
        assert parsed(text) == norm(expr)

    @pytest.mark.parametrize(("text", "_"), EXAMPLES)
    def test_examples_round_trip(self, text: str, _: Expr) -> None:
        expr = parse_filter(text, RUNS)
        assert expr is not None
        assert parsed(to_text(expr)) == norm(expr)
