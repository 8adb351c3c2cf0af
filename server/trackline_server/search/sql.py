"""Compiles filter ASTs and order keys into SQLAlchemy clauses over runs or experiments.

Metric, param and tag comparisons become ``run_id IN (SELECT run_id FROM <table> WHERE key = ...
AND value <op> ...)`` semi-joins: the database can drive them from the (key, value) index and a
run lacking the key never matches (MLflow's rule), except under ``IS NULL``. A NaN metric is
stored as NULL, so comparisons follow IEEE 754: NaN equals nothing and differs from everything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    case,
    false,
    or_,
    select,
    true,
)
from sqlalchemy.sql.elements import KeyedColumnElement

from ..models import experiment_tags, experiments, latest_metrics, params, runs, tags
from .ast import And, Comparison, Expr, OrderKey

STATUS_CODES = {"RUNNING": 1, "SCHEDULED": 2, "FINISHED": 3, "FAILED": 4, "KILLED": 5}

_LIKE_ESCAPE = "\\"


@dataclass(frozen=True)
class Entity:
    """Where one kind of searchable object keeps its id, attributes and key/value tables."""

    table: Table
    id_column: KeyedColumnElement[Any]
    attributes: dict[str, KeyedColumnElement[Any]]
    key_tables: dict[str, Table]
    fk: str


RUN = Entity(
    table=runs,
    id_column=runs.c.run_id,
    attributes={
        "run_id": runs.c.run_id,
        "run_name": runs.c.run_name,
        "status": runs.c.status,
        "start_time": runs.c.start_time,
        "end_time": runs.c.end_time,
        "experiment_id": runs.c.experiment_id,
        "parent_run_id": runs.c.parent_run_id,
        "artifact_uri": runs.c.artifact_uri,
    },
    key_tables={"metric": latest_metrics, "param": params, "tag": tags},
    fk="run_id",
)

EXPERIMENT = Entity(
    table=experiments,
    id_column=experiments.c.experiment_id,
    attributes={
        "experiment_id": experiments.c.experiment_id,
        "name": experiments.c.name,
        "creation_time": experiments.c.creation_time,
        "last_update_time": experiments.c.last_update_time,
        "artifact_location": experiments.c.artifact_location,
    },
    key_tables={"tag": experiment_tags},
    fk="experiment_id",
)


def condition(entity: Entity, expr: Expr) -> ColumnElement[bool]:
    """The WHERE clause of ``expr`` over ``entity.table``."""
    if isinstance(expr, Comparison):
        return _comparison(entity, expr)
    parts = [condition(entity, e) for e in expr.operands]
    return and_(*parts) if isinstance(expr, And) else or_(*parts)


def _comparison(entity: Entity, c: Comparison) -> ColumnElement[bool]:
    ident = c.ident
    if ident.kind == "attribute":
        return _attribute(entity.attributes[ident.key], ident.key, c)
    table = entity.key_tables[ident.kind]
    owner = table.c[entity.fk]
    has_key = select(owner).where(table.c.key == ident.key)
    if c.op == "IS NULL":
        return entity.id_column.not_in(has_key)
    if c.op == "IS NOT NULL":
        return entity.id_column.in_(has_key)
    value_test = (
        _metric_value(table.c.value, c) if ident.kind == "metric" else _value(table.c.value, c)
    )
    return entity.id_column.in_(has_key.where(value_test))


def _attribute(column: KeyedColumnElement[Any], name: str, c: Comparison) -> ColumnElement[bool]:
    value: Any = c.value
    if name == "status":
        value = _map(value, lambda v: STATUS_CODES[str(v)])
    elif name == "experiment_id":
        value = _map(value, lambda v: int(v))
    if c.op == "IS NULL":
        return column.is_(None)
    if c.op == "IS NOT NULL":
        return column.is_not(None)
    return _value(column, Comparison(c.ident, c.op, value, c.position))


def _map(value: Any, fn: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(fn(v) for v in value)
    return fn(value)


def _value(column: KeyedColumnElement[Any], c: Comparison) -> ColumnElement[bool]:
    """A comparison of a non-NULL column; strings compare by code point on both backends."""
    v: Any = c.value
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
            result = column.in_(list(v))
        case "NOT IN":
            result = column.not_in(list(v))
        case _:
            raise AssertionError(f"operator {c.op} reached SQL compilation")
    return result


def _metric_value(column: KeyedColumnElement[Any], c: Comparison) -> ColumnElement[bool]:
    """Like ``_value`` but NULL in ``column`` is NaN: equal to nothing, unequal to all."""
    op = c.op
    if op in ("IN", "NOT IN"):
        assert isinstance(c.value, tuple)
        numbers = [float(v) for v in c.value]
        finite = [v for v in numbers if not math.isnan(v)]
        has_nan = len(finite) < len(numbers)
        if op == "IN":
            among = column.in_(finite) if finite else false()
            return or_(among, column.is_(None)) if has_nan else among
        # NULL is NaN: outside any finite list, inside a list that names NaN.
        if has_nan:
            return and_(column.is_not(None), column.not_in(finite) if finite else true())
        return or_(column.is_(None), column.not_in(finite))
    assert isinstance(c.value, (int, float))
    v = float(c.value)
    if math.isnan(v):
        if op == "=":
            return column.is_(None)
        if op == "!=":
            return column.is_not(None)
        return false()
    if op == "!=":
        return or_(column != v, column.is_(None))
    return _value(column, Comparison(c.ident, op, v, c.position))


def order(
    entity: Entity, query: Select[Any], keys: Sequence[OrderKey], default: Sequence[OrderKey]
) -> Select[Any]:
    """Adds ORDER BY for ``keys`` (or ``default`` when empty), joining key tables as needed.
    Rows lacking a sorted key come last in either direction, NaN metrics just before them;
    the entity id breaks ties so pages are stable."""
    from_clause: Any = entity.table
    clauses: list[ColumnElement[Any]] = []
    for i, key in enumerate(keys or default):
        ident = key.ident
        if ident.kind == "attribute":
            column: ColumnElement[Any] = entity.attributes[ident.key]
            clauses.append(case((column.is_(None), 1), else_=0))
        else:
            table = entity.key_tables[ident.kind].alias(f"order_{i}")
            from_clause = from_clause.outerjoin(
                table,
                and_(table.c[entity.fk] == entity.id_column, table.c.key == ident.key),
            )
            column = table.c.value
            missing = table.c[entity.fk].is_(None)
            clauses.append(case((missing, 2), (column.is_(None), 1), else_=0))
        clauses.append(column.desc() if key.descending else column.asc())
    clauses.append(entity.id_column.asc())
    return query.select_from(from_clause).order_by(*clauses)
