"""Building and comparing filter trees in tests: expected trees are written with the short
constructors here and compared after ``norm``, which ignores positions."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

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
    Or,
    OrderKey,
    parse_filter,
)
from trackline_server.tracking.search_schema import RUNS


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
    """The tree of ``text`` (which must not be empty), normalised."""
    result = parse_filter(text, schema)
    assert result is not None
    return norm(result)


def failure(text: str, schema: EntitySchema = RUNS) -> FilterError:
    """The error ``text`` raises."""
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
