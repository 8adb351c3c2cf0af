"""Unit tests of the filter parser (grammar, values, errors, limits, order_by, to_text), over
the run and experiment schemas of tracking."""

from __future__ import annotations

import dataclasses
import math
import random
import re
from collections.abc import Callable
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trackline_server.search import (
    And,
    Comparison,
    EntitySchema,
    Expr,
    FilterError,
    Identifier,
    IdentKind,
    Op,
    Or,
    OrderKey,
    Scalar,
    parse_filter,
    parse_order_by,
    to_text,
)
from trackline_server.tracking.search_schema import EXPERIMENTS, RUNS

# ----------------------------------------------------------------------------------------------
# Helpers: build expected trees, compare ignoring positions


def norm(node: Any) -> Any:
    """Zeroes positions and tags each scalar with its type (so 1 != 1.0 and NaN == NaN)."""
    if isinstance(node, Identifier):
        return dataclasses.replace(node, position=0)
    if isinstance(node, Comparison):
        return dataclasses.replace(
            node, ident=norm(node.ident), value=norm_value(node.value), position=0
        )
    if isinstance(node, And | Or):
        return type(node)(tuple(norm(operand) for operand in node.operands))
    if isinstance(node, OrderKey):
        return dataclasses.replace(node, ident=norm(node.ident))
    raise TypeError(node)


def norm_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(norm_value(v) for v in value)
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    if value is None:
        return None
    return (type(value).__name__, value)


def parsed(text: str, schema: EntitySchema = RUNS) -> Any:
    result = parse_filter(text, schema)
    assert result is not None
    return norm(result)


def failure(text: str, schema: EntitySchema = RUNS) -> FilterError:
    with pytest.raises(FilterError) as info:
        parse_filter(text, schema)
    return info.value


def cmp(kind: IdentKind, key: str, op: Op, value: Any = None) -> Comparison:
    if isinstance(value, list):
        value = tuple(value)
    return Comparison(Identifier(kind, key, 0), op, value, 0)


def m(key: str, op: Op, value: Any = None) -> Comparison:
    return cmp("metric", key, op, value)


def p(key: str, op: Op, value: Any = None) -> Comparison:
    return cmp("param", key, op, value)


def t(key: str, op: Op, value: Any = None) -> Comparison:
    return cmp("tag", key, op, value)


def a(key: str, op: Op, value: Any = None) -> Comparison:
    return cmp("attribute", key, op, value)


def AND(*operands: Expr) -> And:
    return And(operands)


def OR(*operands: Expr) -> Or:
    return Or(operands)


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
        AND(a("run_id", "IN", ["a1b2", "c3d4"]), t("mlflow.source.name", "!=", "x")),
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
            ("tags.mlflow.runName = 'x'", "mlflow.runName"),
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
# Type rules per kind of identifier and entity


class TestRunRules:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("metrics.m IS NULL", m("m", "IS NULL")),
            ("metrics.m NOT IN (1)", m("m", "NOT IN", [1])),
            ("params.p < 'b'", p("p", "<", "b")),
            ("tags.t >= 'b'", t("t", ">=", "b")),
            ("end_time IS NOT NULL", a("end_time", "IS NOT NULL")),
            ("parent_run_id IS NULL", a("parent_run_id", "IS NULL")),
            ("artifact_uri NOT LIKE 's3://%'", a("artifact_uri", "NOT LIKE", "s3://%")),
            ("start_time IN (1, 2)", a("start_time", "IN", [1, 2])),
            ("end_time < -5", a("end_time", "<", -5)),
            ("status = 'finished'", a("status", "=", "FINISHED")),
            ("status NOT IN ('Running', \"killed\")", a("status", "NOT IN", ["RUNNING", "KILLED"])),
            ("experiment_id = 3", a("experiment_id", "=", "3")),
            ("experiment_id = '007'", a("experiment_id", "=", "7")),
            ("experiment_id = 0", a("experiment_id", "=", "0")),
            ("experiment_id IN (1, '2', 0003)", a("experiment_id", "IN", ["1", "2", "3"])),
            ("experiment_id != '000'", a("experiment_id", "!=", "0")),
        ],
    )
    def test_valid(self, text: str, expected: Expr) -> None:
        assert parsed(text) == norm(expected)


class TestExperimentRules:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("name LIKE 'vision%'", a("name", "LIKE", "vision%")),
            ("attributes.name = 'x'", a("name", "=", "x")),
            ("created > 5", a("creation_time", ">", 5)),
            ("creation_time <= 5", a("creation_time", "<=", 5)),
            ("last_update_time IN (1, 2)", a("last_update_time", "IN", [1, 2])),
            ("artifact_location ILIKE '%x%'", a("artifact_location", "ILIKE", "%x%")),
            ("experiment_id IN ('1', 2)", a("experiment_id", "IN", ["1", "2"])),
            ("tags.team = 'cv'", t("team", "=", "cv")),
            (
                "name LIKE 'vision%' AND tags.team = 'cv'",
                AND(a("name", "LIKE", "vision%"), t("team", "=", "cv")),
            ),
        ],
    )
    def test_valid(self, text: str, expected: Expr) -> None:
        assert parsed(text, EXPERIMENTS) == norm(expected)

    @pytest.mark.parametrize(
        ("text", "position", "fragment"),
        [
            ("metrics.loss < 1", 0, "metrics are not available when searching experiments"),
            ("tags.a = 'x' or params.p = 'x'", 16, "params are not available"),
            ("run_name = 'x'", 0, "unknown identifier 'run_name'; expected tags.<key>, attri"),
            ("status = 'RUNNING'", 0, "one of experiment_id, name, creation_time"),
            ("attributes.start_time = 1", 0, "unknown experiment attribute 'start_time'"),
            ("creation_time IS NULL", 14, "IS NULL is not supported for creation_time"),
            ("name IS NULL", 5, "IS NULL is not supported for name"),
            ("name = 5", 7, "name values are strings; quote the value: '5'"),
        ],
    )
    def test_errors(self, text: str, position: int, fragment: str) -> None:
        err = failure(text, EXPERIMENTS)
        assert err.position == position
        assert fragment in err.message


# ----------------------------------------------------------------------------------------------
# Errors: position and message


ERRORS: list[tuple[str, int, str]] = [
    # lists
    ("tags.x IN ()", 11, "empty IN list; expected at least one value"),
    ("tags.x NOT IN ( )", 16, "empty IN list"),
    ("tags.x IN ('a',)", 15, "expected a string after ',' but found ')'"),
    ("metrics.a IN (1 2)", 16, "expected ',' or ')' to close the list opened at position 13"),
    ("metrics.a IN (1", 15, "expected ',' or ')'"),
    ("metrics.a IN 1", 13, "expected '(' to start a list of values after 'IN'"),
    # strings and keys
    ("tags.x = 'abc", 9, "unterminated string"),
    ('tags.x = "abc', 9, "unterminated string"),
    ("tags.x = 'it''s", 9, "unterminated string"),
    ("tags.x = 'ends with \\'", 9, "unterminated string"),
    ("tags.`abc = 'x'", 5, "unterminated quoted key"),
    ("metrics. = 1", 8, "expected a key after 'metrics.'"),
    ("metrics.", 8, "expected a key after 'metrics.'"),
    ("metrics.`` = 1", 8, "empty key"),
    ('metrics."" = 1', 8, "empty key"),
    ("tags.`a\tb` = 'x'", 7, "quoted keys cannot contain control characters"),
    ("tags.チーム = 'x'", 5, "expected a key after 'tags.'"),
    ("`val loss` < 1", 0, "a quoted key needs a prefix, e.g. tags.`val loss`"),
    # identifiers
    (
        "loss < 1",
        0,
        "unknown identifier 'loss'; expected metrics.<key>, params.<key>, tags.<key>, "
        "attributes.<name> or one of run_id, run_name, status, start_time",
    ),
    ("attributes.foo = 'x'", 0, "unknown run attribute 'foo'; expected one of run_id, run_name"),
    ("foo.bar = 'x'", 0, "unknown prefix 'foo.'; expected metrics.<key>"),
    ("チーム = 'x'", 0, "unexpected character 'チ'"),
    # operators
    (
        "params.optimizer adam",
        17,
        "expected a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN, IS NULL)"
        " but found 'adam'",
    ),
    ("params.optimizer", 16, "expected a comparison operator"),
    ("metrics.a NOT = 1", 14, "expected LIKE, ILIKE or IN after 'NOT' but found '='"),
    ("metrics.a IS NOT 1", 17, "expected NULL after 'NOT' but found '1'"),
    ("metrics.a IS", 12, "expected NULL after 'IS'"),
    ("metrics.a ! 1", 10, "unexpected character '!'"),
    # AND / OR
    ("metrics.a = 1 AND", 17, "expected a comparison such as metrics.loss < 1 after 'AND'"),
    ("metrics.a = 1 or", 16, "expected a comparison"),
    ("AND metrics.a = 1", 0, "unexpected 'AND'"),
    ("metrics.a = 1 AND OR metrics.b = 2", 18, "unexpected 'OR' after 'AND'"),
    ("metrics.a = 1 metrics.b = 2", 14, "expected AND, OR or the end of filter"),
    ("metrics.a = 1 # comment", 14, "unexpected character '#'"),
    ("NOT metrics.a = 1", 0, "unexpected 'NOT'"),
    # parentheses
    ("(metrics.a = 1", 14, "expected ')' to close the '(' opened at position 0"),
    ("((metrics.a = 1)", 16, "expected ')' to close the '(' opened at position 0"),
    (
        "(metrics.a = 1 metrics.b = 2",
        15,
        "expected ')' to close the '(' opened at position 0, or AND/OR",
    ),
    ("metrics.a = 1)", 13, "unexpected ')' with no matching '('"),
    ("(metrics.a = 1))", 15, "unexpected ')' with no matching '('"),
    (")", 0, "unexpected ')' with no matching '('"),
    ("()", 1, "unexpected ')' after '('"),
    ("(", 1, "expected a comparison"),
    # value types
    ("metrics.loss < ", 15, "expected a number after '<'"),
    ("params.lr = 0.01", 12, "param values are strings; quote the value: '0.01'"),
    ("tags.x = 5", 9, "tag values are strings; quote the value: '5'"),
    ("params.p IN ('a', 1)", 18, "param values are strings; quote the value: '1'"),
    ("run_name = 1e3", 11, "run_name values are strings; quote the value: '1e3'"),
    ("params.a = adam", 11, "expected a string after '=' but found 'adam'; quote it: 'adam'"),
    ("metrics.a = '1.5'", 12, "metric values are numbers; remove the quotes"),
    ("metrics.a = 'NaN'", 12, "metric values are numbers; remove the quotes"),
    ("metrics.a = 'abc'", 12, "expected a number after '=' but found 'abc'"),
    ("metrics.a = abc", 12, "expected a number after '=' but found 'abc'"),
    ("metrics.a IN (1, 'x')", 17, "expected a number after ','"),
    ("metrics.a = NULL", 12, "use IS NULL or IS NOT NULL"),
    ("metrics.a LIKE '%x'", 10, "LIKE is not supported for metrics; expected one of =, !="),
    ("metrics.a NOT ILIKE '%x'", 10, "NOT ILIKE is not supported for metrics"),
    ("start_time > 1.5", 13, "start_time values are integers"),
    ("end_time = NaN", 11, "end_time values are integers"),
    ("start_time = '5'", 13, "start_time values are integers; remove the quotes"),
    ("start_time = 'x'", 13, "expected an integer"),
    ("start_time LIKE 'x'", 11, "LIKE is not supported for start_time"),
    ("start_time IS NULL", 11, "IS NULL is not supported for start_time"),
    ("run_name IS NULL", 9, "IS NULL is not supported for run_name"),
    ("status = 'DONE'", 9, "unknown status 'DONE'; expected one of RUNNING, SCHEDULED, FINISHED"),
    ("status IN ('RUNNING', 'x')", 22, "unknown status 'x'"),
    ("status = 1", 9, "expected a status string after '=' but found '1'"),
    ("status = running", 9, "quote it: 'running'"),
    ("status LIKE 'R%'", 7, "LIKE is not supported for status"),
    ("status IS NULL", 7, "IS NULL is not supported for status"),
    ("experiment_id > 3", 14, "> is not supported for experiment_id"),
    ("experiment_id = 1.5", 16, "experiment_id values are non-negative integers"),
    ("experiment_id = -1", 16, "experiment_id values are non-negative integers"),
    ("experiment_id = 'abc'", 16, "experiment_id values are non-negative integers"),
    ("experiment_id = '٣'", 16, "experiment_id values are non-negative integers"),
    # numbers
    ("metrics.a = 1e", 12, "invalid number '1e'"),
    ("metrics.a = 1.2.3", 12, "invalid number '1.2.3'"),
    ("metrics.a = 12abc", 12, "invalid number '12abc'"),
    ("metrics.a = -x", 12, "unexpected '-'"),
    ("metrics.a = - 1", 12, "unexpected character '-'"),
    ("metrics.a = " + "1" * 5000, 12, "number too long"),
]


class TestErrors:
    @pytest.mark.parametrize(("text", "position", "fragment"), ERRORS)
    def test_error(self, text: str, position: int, fragment: str) -> None:
        err = failure(text)
        assert err.position == position, str(err)
        assert fragment in err.message, str(err)

    def test_str_at_end_of_filter(self) -> None:
        err = failure("metrics.loss < ")
        assert err.message == "expected a number after '<'"
        assert str(err) == "expected a number after '<' at position 15 (end of filter)"

    def test_str_near_text(self) -> None:
        err = failure("params.optimizer adam and metrics.loss < 1")
        assert str(err) == f"{err.message} at position 17 near 'adam and metrics.los'"

    def test_str_near_replaces_unprintable_characters(self) -> None:
        err = failure("metrics.a = 1 #\n")
        assert str(err).endswith("at position 14 near '# '")

    def test_message_is_one_line_without_position(self) -> None:
        for text, _, _ in ERRORS:
            err = failure(text)
            assert "\n" not in err.message
            assert not err.message.endswith(f" at position {err.position}")

    def test_found_text_is_kept_on_one_line(self) -> None:
        err = failure("metrics.a = 'two\nlines'")
        assert err.message == "expected a number after '=' but found 'two\\nlines'"


class TestLimits:
    def test_too_deep_nesting(self) -> None:
        err = failure("(" * 100 + "metrics.a=1" + ")" * 100)
        assert err.position == 64
        assert "too deeply nested" in err.message

    def test_nesting_up_to_the_limit(self) -> None:
        assert parsed("(" * 64 + "metrics.a=1" + ")" * 64) == norm(m("a", "=", 1))

    def test_deepest_possible_text_is_not_a_recursion_error(self) -> None:
        err = failure("(" * 65536)
        assert err.position == 64

    def test_too_long_text(self) -> None:
        text = "tags.t = '" + "x" * 65536 + "'"
        err = failure(text)
        assert err.position == 65536
        assert "too long" in err.message

    def test_longest_text(self) -> None:
        text = "tags.t = '" + "x" * (65536 - 11) + "'"
        assert len(text) == 65536
        assert parsed(text) == norm(t("t", "=", "x" * (65536 - 11)))

    def test_too_many_comparisons(self) -> None:
        assert len(parsed(" or ".join(["metrics.a = 1"] * 1000)).operands) == 1000
        err = failure(" or ".join(["metrics.a = 1"] * 1001))
        assert err.position == 1000 * len("metrics.a = 1 or ")
        assert "too many comparisons" in err.message

    def test_too_many_in_values(self) -> None:
        assert len(parsed("metrics.a IN (" + ",".join(["1"] * 10000) + ")").value) == 10000
        err = failure("metrics.a IN (" + ",".join(["1"] * 10001) + ")")
        assert err.position == len("metrics.a IN (") + 2 * 10000
        assert "too many values" in err.message


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
integers: st.SearchStrategy[Scalar] = st.integers(-(10**15), 10**15)
statuses = st.sampled_from(["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"])
experiment_ids = st.integers(0, 10**6).map(str)

# kind -> (keys, operators, values); attributes carry their canonical name as the only key.
RUN_TARGETS: list[tuple[IdentKind, st.SearchStrategy[str], tuple[Op, ...], Any]] = [
    ("metric", keys, NUMBER_OPS, numbers),
    ("param", keys, STRING_OPS, strings),
    ("tag", keys, STRING_OPS, strings),
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
            return self.word(ident.key)
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
