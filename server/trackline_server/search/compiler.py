"""Compiles checked filter trees and order keys into SQLAlchemy clauses, from the schema alone.

Comparisons of keyed values (metrics, params, tags) become ``id IN (SELECT owner FROM <table>
WHERE key = ... AND value <op> ...)`` semi-joins: the database can drive them from the
(key, value) index and an entity lacking the key never matches (MLflow's rule), except under
``IS NULL``. Comparisons of related rows' fields become ``id IN (SELECT owner FROM <source>
WHERE field <op> ...)`` alike: some related row satisfies them. A Number column stores NaN as
NULL, so comparisons follow IEEE 754: NaN equals nothing and differs from everything.

Every filter the parser admits (1,000 comparisons, 64 levels of parentheses) compiles to SQL
that each backend can parse and plan quickly; see ``filter_clause``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, false, or_, select, true

from .ast import And, Comparison, Expr, Identifier, OrderKey, Scalar
from .schema import ATTRIBUTE, Attribute, EntitySchema, KeyKind, RelatedField
from .values import PATTERN_OPS, DecimalId, Enum, Number

_LIKE_ESCAPE = "\\"


# PostgreSQL turns each `id IN (subquery)` directly under the WHERE's top-level AND into a
# semi-join and plans them all as one join problem, in time that grows steeply with their
# number (measured: 8 take 27 ms to plan, 16 97 ms, 100 1.7 s, 300 over 40 s). The first
# _JOINED stay there, free to be reordered; the rest are ANDed inside `(...) IS TRUE`, which the
# planner does not look into: each becomes a subplan, planned on its own, run once and hashed.
_JOINED = 8
# SQLite parses with a fixed stack of 100 entries (a level of parentheses takes about 3, a
# subquery about 11) and refuses expressions deeper than 1,000 (a chain of N ANDs is N deep).
# Past _SQLITE_DEPTH levels of AND/OR, or _SQLITE_WIDTH operands of one, a part of the filter
# becomes a CTE referenced as `id IN (SELECT id FROM cte)`: CTEs are written side by side.
_SQLITE_DEPTH = 6
_SQLITE_WIDTH = 32


def filter_clause(schema: EntitySchema, expr: Expr, backend: str) -> ColumnElement[bool]:
    """The WHERE clause of ``expr`` over ``schema.table``, shaped for ``backend`` (a SQLAlchemy
    dialect name: ``sqlite`` or ``postgresql``)."""
    if backend == "sqlite":
        return _SqliteShape(schema).node(expr, 0)
    if not isinstance(expr, And):
        return _plain(schema, expr)
    joined: list[ColumnElement[bool]] = []
    rest: list[ColumnElement[bool]] = []
    semi_joins = 0
    for operand in expr.operands:
        semi_joins += _is_semi_join(operand)
        (rest if _is_semi_join(operand) and semi_joins > _JOINED else joined).append(
            _plain(schema, operand)
        )
    if rest:
        joined.append(and_(*rest).is_(true()))
    return and_(*joined)


def _is_semi_join(expr: Expr) -> bool:
    """Whether ``expr`` compiles to ``id IN (subquery)`` (IS NULL compiles to NOT IN)."""
    return isinstance(expr, Comparison) and expr.ident.kind != ATTRIBUTE and expr.op != "IS NULL"


def _plain(schema: EntitySchema, expr: Expr) -> ColumnElement[bool]:
    if isinstance(expr, Comparison):
        return _comparison(schema, expr)
    parts = [_plain(schema, e) for e in expr.operands]
    return and_(*parts) if isinstance(expr, And) else or_(*parts)


@dataclass
class _SqliteShape:
    """Compiles a filter into SQL that SQLite's parser and expression limits accept."""

    schema: EntitySchema
    ctes: int = 0

    def node(self, expr: Expr, depth: int) -> ColumnElement[bool]:
        """``expr`` at ``depth`` levels of AND/OR below the top of its CTE (or of the query)."""
        if isinstance(expr, Comparison):
            return _comparison(self.schema, expr)
        if depth == _SQLITE_DEPTH:
            return self.lifted(self.node(expr, 0))
        combine = and_ if isinstance(expr, And) else or_
        parts = [self.node(e, depth + 1) for e in expr.operands]
        while len(parts) > _SQLITE_WIDTH:
            parts = [
                self.lifted(combine(*parts[i : i + _SQLITE_WIDTH]))
                for i in range(0, len(parts), _SQLITE_WIDTH)
            ]
        return combine(*parts)

    def lifted(self, clause: ColumnElement[bool]) -> ColumnElement[bool]:
        """``clause`` as a test of membership in a CTE of the ids it holds for."""
        self.ctes += 1
        id_column = self.schema.id_column
        cte = select(id_column).where(clause).cte(f"filter_{self.ctes}")
        return id_column.in_(select(cte.c[0]))


def _comparison(schema: EntitySchema, c: Comparison) -> ColumnElement[bool]:
    ident = c.ident
    if ident.kind == ATTRIBUTE:
        return _attribute(schema.attribute_named(ident.key), c)
    related = schema.related_named(ident.kind)
    if related is not None:
        related_field = related.field_named(ident.key)
        rows = select(related.owner).select_from(related.source)
        return schema.id_column.in_(
            rows.where(_typed_value(related_field, related_field.column, c))
        )
    kind = schema.kind_named(ident.kind)
    table = kind.table
    owner = table.c[kind.owner]
    has_key = select(owner).where(table.c.key == ident.key)
    if c.op == "IS NULL":
        return schema.id_column.not_in(has_key)
    if c.op == "IS NOT NULL":
        return schema.id_column.in_(has_key)
    return schema.id_column.in_(has_key.where(_typed_value(kind, table.c.value, c)))


def _attribute(attribute: Attribute, c: Comparison) -> ColumnElement[bool]:
    column = attribute.column
    if c.op == "IS NULL":
        return column.is_(None)
    if c.op == "IS NOT NULL":
        return column.is_not(None)
    return _typed_value(attribute, column, c)


def _typed_value(
    target: Attribute | KeyKind | RelatedField, column: ColumnElement[Any], c: Comparison
) -> ColumnElement[bool]:
    """A comparison other than IS [NOT] NULL of the values of ``target`` held in ``column``."""
    value_type = target.value_type
    if isinstance(value_type, Number):
        return _number_value(column, c)
    if isinstance(value_type, DecimalId):
        return _decimal_id(value_type, column, c)
    if isinstance(value_type, Enum) and c.op in PATTERN_OPS:
        return _enum_pattern(value_type, column, c)
    if isinstance(value_type, Enum):
        stored = _map(c.value, value_type.stored)
        return _value(column, Comparison(c.ident, c.op, stored, c.position))
    return _value(column, c)


def _enum_pattern(enum: Enum, column: ColumnElement[Any], c: Comparison) -> ColumnElement[bool]:
    """A LIKE-family comparison of an enum's names, as membership in the members it matches
    (NOT LIKE: in the others)."""
    matched = enum.matching(str(c.value), ignore_case="ILIKE" in c.op)
    if c.op.startswith("NOT"):
        return column.not_in(matched) if matched else true()
    return column.in_(matched) if matched else false()


def _decimal_id(
    id_type: DecimalId, column: ColumnElement[Any], c: Comparison
) -> ColumnElement[bool]:
    """An id that does not fit the column names no row: ``= id`` holds for no row and
    ``!= id`` for every row, as for any unknown id. Values are canonical digit strings."""
    values = c.value if isinstance(c.value, tuple) else (c.value,)
    ids = [i for i in (id_type.stored(str(v)) for v in values) if i is not None]
    if c.op in ("=", "IN"):
        return column.in_(_unique(ids)) if ids else false()
    return column.not_in(_unique(ids)) if ids else true()


def _unique(values: Sequence[Any]) -> list[Any]:
    """``values`` without repeats: an IN list of 30,000 copies of one value would pass the
    bind-parameter limits of both backends (32,766 and 32,767) otherwise."""
    return list(dict.fromkeys(values))


def _number(value: Scalar) -> float:
    """``value`` as a float; integers beyond the float range are infinities, as 1e400 is."""
    try:
        return float(value)
    except OverflowError:
        assert isinstance(value, int)
        return math.inf if value > 0 else -math.inf


def _map(value: Any, fn: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(fn(v) for v in value)
    return fn(value)


def _value(column: ColumnElement[Any], c: Comparison) -> ColumnElement[bool]:
    """A comparison of a non-NULL column; strings compare by code point on both backends."""
    v: Any = c.value
    if any("\0" in x for x in _strings(v)):
        return _with_nul(column, c)
    result: ColumnElement[bool]
    match c.op:
        case "=":
            result = column == v
        case "!=":
            result = column != v
        case "<":
            result = column < v
        case "<=":
            result = column <= v
        case ">":
            result = column > v
        case ">=":
            result = column >= v
        case "LIKE":
            result = column.like(v, escape=_LIKE_ESCAPE)
        case "NOT LIKE":
            result = column.not_like(v, escape=_LIKE_ESCAPE)
        case "ILIKE":
            result = column.ilike(v, escape=_LIKE_ESCAPE)
        case "NOT ILIKE":
            result = column.not_ilike(v, escape=_LIKE_ESCAPE)
        case "IN":
            result = column.in_(_unique(v))
        case "NOT IN":
            result = column.not_in(_unique(v))
        case _:
            raise AssertionError(f"operator {c.op} reached SQL compilation")
    return result


def _strings(value: Any) -> list[str]:
    return [x for x in (value if isinstance(value, tuple) else (value,)) if isinstance(x, str)]


def _with_nul(column: ColumnElement[Any], c: Comparison) -> ColumnElement[bool]:
    """``c``, whose strings hold NUL, taken as over strings that cannot (PostgreSQL cannot store
    NUL, nor bind it; SQLite's LIKE ends a pattern at it): such a string equals and matches
    none of them and sorts right after its part before the NUL. Both backends answer alike."""
    if isinstance(c.value, tuple):
        kept = tuple(x for x in c.value if "\0" not in str(x))
        if kept:
            return _value(column, Comparison(c.ident, c.op, kept, c.position))
        return false() if c.op == "IN" else column.is_not(None)
    head = str(c.value).split("\0", 1)[0]
    if c.op in ("<", "<="):
        return column <= head
    if c.op in (">", ">="):
        return column > head
    return false() if c.op in ("=", "LIKE", "ILIKE") else column.is_not(None)


def _number_value(column: ColumnElement[Any], c: Comparison) -> ColumnElement[bool]:
    """Like ``_value`` but NULL in ``column`` is NaN: equal to nothing, unequal to all."""
    op = c.op
    if op in ("IN", "NOT IN"):
        assert isinstance(c.value, tuple)
        numbers = [_number(v) for v in c.value]
        finite = _unique([v for v in numbers if not math.isnan(v)])
        has_nan = len(finite) < len(numbers)
        if op == "IN":
            among = column.in_(finite) if finite else false()
            return or_(among, column.is_(None)) if has_nan else among
        # NULL is NaN: outside any finite list, inside a list that names NaN.
        if has_nan:
            return and_(column.is_not(None), column.not_in(finite) if finite else true())
        return or_(column.is_(None), column.not_in(finite))
    assert isinstance(c.value, (int, float))
    v = _number(c.value)
    if math.isnan(v):
        if op == "=":
            return column.is_(None)
        if op == "!=":
            return column.is_not(None)
        return false()
    if op == "!=":
        return or_(column != v, column.is_(None))
    return _value(column, Comparison(c.ident, op, v, c.position))


def apply_order(schema: EntitySchema, query: Select[Any], keys: Sequence[OrderKey]) -> Select[Any]:
    """Adds ORDER BY for ``keys`` (or the schema's default order when empty), joining the
    tables of keyed values as needed. Rows lacking a sorted key come last in either
    direction, NaN numbers just before them; the id breaks ties so pages are stable."""
    default = [
        OrderKey(Identifier(ATTRIBUTE, name, 0), descending)
        for name, descending in schema.default_order
    ]
    from_clause: Any = schema.table
    clauses: list[ColumnElement[Any]] = []
    for i, key in enumerate(keys or default):
        ident = key.ident
        if ident.kind == ATTRIBUTE:
            column: ColumnElement[Any] = schema.attribute_named(ident.key).column
            clauses.append(case((column.is_(None), 1), else_=0))
        else:
            kind = schema.kind_named(ident.kind)
            table = kind.table.alias(f"order_{i}")
            owner = table.c[kind.owner]
            from_clause = from_clause.outerjoin(
                table, and_(owner == schema.id_column, table.c.key == ident.key)
            )
            column = table.c.value
            clauses.append(case((owner.is_(None), 2), (column.is_(None), 1), else_=0))
        clauses.append(column.desc() if key.descending else column.asc())
    clauses.append(schema.id_column.asc())
    return query.select_from(from_clause).order_by(*clauses)
