"""The syntax tree of a search filter, and its rendering back to canonical filter text.

The tree is what the parser guarantees: every ``Comparison`` has already been checked against
the entity schema (allowed operator, value type), attribute keys are canonical names,
``And``/``Or`` are flattened and have at least two operands.

An identifier's kind is a singular noun the schema defines (``metric``, ``tag``) or
``attribute``; filter text writes its plural as the canonical prefix (``metrics.loss``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypeAlias

IdentKind: TypeAlias = str
Op = Literal[
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "LIKE",
    "ILIKE",
    "NOT LIKE",
    "NOT ILIKE",
    "IN",
    "NOT IN",
    "IS NULL",
    "IS NOT NULL",
]
Scalar: TypeAlias = str | int | float


@dataclass(frozen=True, slots=True)
class Identifier:
    """What a comparison or sort key refers to.

    ``kind`` is ``attribute`` or the singular of a schema's kind of keyed values (``metric``).
    ``key`` is then the canonical attribute name (aliases such as ``created`` resolved) or the
    key as written (unquoted). ``position`` is the 0-based offset of its first character in
    the filter text.
    """

    kind: IdentKind
    key: str
    position: int


@dataclass(frozen=True, slots=True)
class Comparison:
    """``ident op value``: ``value`` is a tuple for IN / NOT IN and None for IS [NOT] NULL.

    ``position`` is the offset of the identifier that starts the comparison.
    """

    ident: Identifier
    op: Op
    value: Scalar | tuple[Scalar, ...] | None
    position: int


@dataclass(frozen=True, slots=True)
class And:
    """Conjunction of two or more operands, none of which is itself an ``And``."""

    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Disjunction of two or more operands, none of which is itself an ``Or``."""

    operands: tuple[Expr, ...]


Expr: TypeAlias = Comparison | And | Or


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One ``order_by`` item; ascending unless ``descending``."""

    ident: Identifier
    descending: bool


def to_text(expr: Expr) -> str:
    """Renders ``expr`` as canonical filter text that parses back to an equal tree.

    Positions are not preserved. Keys are always backtick-quoted, strings single-quoted (with
    ``'`` doubled and ``\\`` escaped), floats use ``repr`` with NaN/Infinity spelled out, and an
    ``Or`` inside an ``And`` is parenthesised.
    """
    if isinstance(expr, Comparison):
        return _comparison_text(expr)
    if isinstance(expr, And):
        return " AND ".join(
            f"({to_text(operand)})" if isinstance(operand, Or) else to_text(operand)
            for operand in expr.operands
        )
    return " OR ".join(
        f"({to_text(operand)})" if isinstance(operand, Or) else to_text(operand)
        for operand in expr.operands
    )


def identifier_text(ident: Identifier) -> str:
    """Renders an identifier as ``prefix.`key```, e.g. ``metrics.`val loss```."""
    return f"{ident.kind}s.`{ident.key.replace('`', '``')}`"


def _comparison_text(comparison: Comparison) -> str:
    ident = identifier_text(comparison.ident)
    value = comparison.value
    if value is None:
        return f"{ident} {comparison.op}"
    if isinstance(value, tuple):
        return f"{ident} {comparison.op} ({', '.join(_scalar_text(v) for v in value)})"
    return f"{ident} {comparison.op} {_scalar_text(value)}"


def _scalar_text(value: Scalar) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    return str(value)
