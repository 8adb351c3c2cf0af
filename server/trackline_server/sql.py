"""Statements run on the driver directly: compiled once per dialect, one call each.

A hot read costs little in the database (GetRun's four primary-key lookups: ~17 us in SQLite)
and a lot around it: through SQLAlchemy's async adapters a statement is compiled, hops three or
four times to aiosqlite's thread and back (each hop waiting for a turn of the event loop), and
every row is wrapped; a GetRun took ~1.3 ms of which the database was 2%. Here a ``Query`` is
compiled to the dialect's SQL once, and ``rows`` hands that string with positional parameters
to the driver in one call: on a ``Snapshot`` (``snapshot.py``), the read-only unit of work;
on a ``Transaction`` (the writer's, on the driver); inside a SQLAlchemy write transaction, on
its driver connection.

Parameters are given by name (a mapping). A list binds as one parameter (``among``): an array on
PostgreSQL, a JSON text on SQLite, so the SQL stays the same whatever the list's length.
Column values come back as the driver returns them (tuples, or asyncpg records, which unpack
and index as tuples do), without SQLAlchemy's result types: integer, float, text and bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import operator
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Executable,
    LargeBinary,
    String,
    any_,
    bindparam,
    func,
    select,
)
from sqlalchemy import cast as cast_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from .database import driver_connection
from .snapshot import Snapshot, Transaction

_LONG_LIST = 20_000  # values from which a list is encoded off the event loop

Writer = AsyncConnection | Transaction
"""Where a write runs: SQLAlchemy's connection of a write transaction (``Database.write``), or
the writer's ``Transaction`` on the driver (``Database.transaction``)."""

Reader = Writer | Snapshot
"""Where a read runs: a read-only ``Snapshot``, or a write transaction (a write that reads
what it is about to change, or returns what it wrote)."""


class Query:
    """A statement compiled once per dialect to (SQL, names of its positional parameters).

    Built from a function of the dialect's name, since some statements differ by backend
    (``among``). Module-level queries are compiled on first use and then cost nothing."""

    __slots__ = ("_build", "_compiled")

    def __init__(self, build: Callable[[str], Executable]) -> None:
        self._build = build
        self._compiled: dict[tuple[str, tuple[str, ...]], Compiled] = {}

    def compiled(self, dialect: Dialect, column_keys: tuple[str, ...] = ()) -> Compiled:
        """The SQL for ``dialect``; an INSERT's for the columns ``column_keys``."""
        found = self._compiled.get((dialect.name, column_keys))
        if found is None:
            stmt = self._build(dialect.name)
            found = compile_sql(stmt, dialect, list(column_keys) if column_keys else None)
            self._compiled[(dialect.name, column_keys)] = found
        return found


def among(column: ColumnElement[Any], name: str, dialect_name: str) -> ColumnElement[bool]:
    """``column IN :name`` with the list bound as one parameter: any number of values in the
    same SQL, where an IN list takes a parameter each (at most 32,767 on asyncpg, 32,766 on
    SQLite) and a new SQL string per length."""
    if dialect_name == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    values = func.json_each(bindparam(name, type_=String)).table_valued("value").c.value
    return column.in_(select(values))


@dataclass(frozen=True)
class Compiled:
    """A statement as the dialect's SQL (``?`` on SQLite, ``$n`` on PostgreSQL), the names of
    its positional parameters in order, and the values bound in the statement itself (its
    literals, and anything given to ``bindparam``)."""

    sql: str
    names: tuple[str, ...]
    bound: Mapping[str, Any]

    def values(self, params: Mapping[str, Any], dialect_name: str) -> list[Any]:
        bound = self.bound
        return [_bound(params[n] if n in params else bound[n], dialect_name) for n in self.names]

    async def values_off_loop(self, params: Mapping[str, Any], dialect_name: str) -> list[Any]:
        """``values``, on a worker thread when a list is long: JSON costs about 1 us an id,
        and a flush's run check can name tens of thousands."""
        if dialect_name == "sqlite" and any(
            isinstance(v, list | tuple) and len(v) >= _LONG_LIST for v in params.values()
        ):
            return await asyncio.to_thread(self.values, params, dialect_name)
        return self.values(params, dialect_name)


def positioned(name: str, dialect_name: str) -> tuple[Any, ColumnElement[int], Any]:
    """The list parameter ``name`` as a table of (position from 0, value), and those two
    columns: joined to a table and ordered by the position, rows come in the list's order."""
    if dialect_name == "postgresql":
        listed = (
            func.unnest(bindparam(name, type_=ARRAY(String)))
            .table_valued("value", with_ordinality="pos")
            .render_derived()
        )
        return listed, listed.c.pos - 1, listed.c.value
    listed = func.json_each(bindparam(name, type_=String)).table_valued("key", "value")
    return listed, listed.c.key, listed.c.value


def in_order_of(
    table: Any, owner: ColumnElement[Any], columns: Sequence[Any], size: Callable[[str], Any]
) -> Query:
    """The rows of ``table`` whose ``owner`` is among the list parameter ``ids``, as (position
    of the owner in ``ids``, *columns, ``size(dialect)``): in the owners' order, and by key
    (code point) within an owner."""

    def build(d: str) -> Executable:
        listed, position, value = positioned("ids", d)
        return (
            select(position, *columns, size(d))
            .select_from(listed.join(table, owner == value))
            .order_by(position, by_code_point(table.c.key, d))
        )

    return Query(build)


def octets(column: Any, dialect_name: str) -> ColumnElement[int]:
    """The UTF-8 length of a text column; PostgreSQL reads it without detoasting the value."""
    if dialect_name == "postgresql":
        return func.octet_length(column)
    return func.length(cast_(column, LargeBinary))


def by_code_point(column: ColumnElement[str], dialect_name: str) -> ColumnElement[str]:
    """``column`` ordered by code point, as Python sorts strings: SQLite's BINARY collation
    does; PostgreSQL's default follows the database's locale, "C" compares bytes."""
    return column.collate("C") if dialect_name == "postgresql" else column


def compile_sql(
    stmt: Executable, dialect: Dialect, column_keys: list[str] | None = None
) -> Compiled:
    compiled = cast(
        SQLCompiler,
        cast(ClauseElement, stmt).compile(
            dialect=dialect,
            column_keys=column_keys,
            compile_kwargs={"render_postcompile": True},
        ),
    )
    # ``compiled.params`` builds a new dict on every access: read it once.
    return Compiled(compiled.string, tuple(compiled.positiontup or ()), compiled.params)


async def execute_many(
    conn: Writer, stmt: Query | Executable, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Runs a statement once per row (dicts with the same keys), in the caller's
    transaction. Values go to the driver as they are (no SQLAlchemy bind processing): for
    integer, float, text and bytes columns. A ``Query`` is compiled once per set of keys (an
    upsert's compilation took ~0.3 ms, most of a one-point flush's statements)."""
    if not rows:
        return
    keys = tuple(rows[0])
    compiled = (
        stmt.compiled(conn.dialect, keys)
        if isinstance(stmt, Query)
        else compile_sql(stmt, conn.dialect, list(keys))
    )
    pick = operator.itemgetter(*compiled.names)  # a row's values in one C call
    many = len(compiled.names) > 1
    params = [pick(row) for row in rows] if many else [(pick(row),) for row in rows]
    driver = await driver_in_transaction(conn)
    if conn.dialect.name != "sqlite":
        await driver.executemany(compiled.sql, params)
    elif len(params) == 1:
        await driver.execute(compiled.sql, params[0])
    else:
        await driver.executemany(compiled.sql, params)


async def execute(conn: Writer, query: Query, params: Mapping[str, Any] | None = None) -> int:
    """Runs an UPDATE or DELETE with ``params`` by name, in the caller's transaction; the
    number of rows it changed."""
    compiled = query.compiled(conn.dialect)
    values = await compiled.values_off_loop(params or {}, conn.dialect.name)
    driver = await driver_in_transaction(conn)
    if conn.dialect.name == "sqlite":
        async with driver.execute(compiled.sql, values) as cursor:
            return int(cursor.rowcount)
    status = await driver.execute(compiled.sql, *values)  # "DELETE 3", "UPDATE 0"
    return int(status.rsplit(" ", 1)[-1])


async def rows(
    reader: Reader,
    query: Query | Executable,
    params: Mapping[str, Any] | None = None,
    *,
    aside: bool = False,
) -> list[Any]:
    """The rows of a SELECT on ``reader``, with ``params`` by name. An ``Executable`` (a
    statement built for this call, such as a search's filter) is compiled now, its literal
    values bound as given. ``aside``: the statement's cost grows with the store, so a SQLite
    snapshot runs it on a worker thread rather than the event loop's."""
    dialect = reader.dialect
    params = params or {}
    compiled = query.compiled(dialect) if isinstance(query, Query) else compile_sql(query, dialect)
    values = await compiled.values_off_loop(params, dialect.name)
    if isinstance(reader, Snapshot):
        return await reader.fetch(compiled.sql, values, aside=aside)
    return await _fetch_in_transaction(reader, compiled.sql, values)


async def batches(
    reader: Reader, query: Query, params: Mapping[str, Any] | None = None
) -> AsyncIterator[list[Any]]:
    """The rows of a SELECT in batches, read as they are asked for (``Snapshot.batches``);
    in a write transaction, all in one batch."""
    dialect = reader.dialect
    compiled = query.compiled(dialect)
    values = await compiled.values_off_loop(params or {}, dialect.name)
    if isinstance(reader, Snapshot):
        async with contextlib.aclosing(reader.batches(compiled.sql, values)) as found:
            async for batch in found:
                yield batch
    else:
        yield await _fetch_in_transaction(reader, compiled.sql, values)


async def first(
    reader: Reader, query: Query | Executable, params: Mapping[str, Any] | None = None
) -> Any | None:
    """The first row, or None."""
    found = await rows(reader, query, params)
    return found[0] if found else None


def _bound(value: Any, dialect_name: str) -> Any:
    if isinstance(value, list | tuple) and dialect_name == "sqlite":
        return json.dumps(list(value))
    return value


async def _fetch_in_transaction(conn: Writer, sql: str, values: Sequence[Any]) -> list[Any]:
    driver = await driver_in_transaction(conn)
    if conn.dialect.name == "sqlite":
        return list(await driver.execute_fetchall(sql, values))
    return list(await driver.fetch(sql, *values))


async def driver_in_transaction(conn: Writer) -> Any:
    """The driver's connection of a write transaction, with the transaction begun:
    SQLAlchemy's asyncpg adapter opens it on the first statement that passes through it."""
    if isinstance(conn, Transaction):
        return conn.driver
    driver = await driver_connection(conn)
    if conn.dialect.name == "postgresql" and not driver.is_in_transaction():
        await conn.exec_driver_sql("SELECT 1")
    return driver
