"""Tags, written once for every resource that has them: a table of (owner id, key, value)
rows with the owner and key as its primary key (run tags, experiment tags; model and version
tags next). Keys and values are checked by the caller (validation.check_tags)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .errors import NotFound, shown
from .sql import Query, Reader, among, by_code_point, rows
from .validation import findable


async def read(reader: Reader, table: Table, owners: list[Any]) -> list[tuple[Any, str, str]]:
    """(owner, key, value) of every tag of ``owners``, in key order."""
    if not owners:
        return []
    return [(o, k, v) for o, k, v in await rows(reader, _tags_of(table), {"owners": owners})]


@functools.cache
def _tags_of(table: Table) -> Query:
    """The query reading the tags of some owners (``owners=[...]``), one per table."""
    owner = table.c[_owner_column(table)]
    return Query(
        lambda d: (
            select(owner, table.c.key, table.c.value)
            .where(among(owner, "owners", d))
            .order_by(by_code_point(table.c.key, d))
        )
    )


async def insert_new(
    conn: AsyncConnection, table: Table, owner_id: object, pairs: dict[str, str]
) -> None:
    """Adds the tags of a resource that has none yet (at its creation)."""
    if pairs:
        name = _owner_column(table)
        await conn.execute(
            insert(table), [{name: owner_id, "key": k, "value": v} for k, v in pairs.items()]
        )


async def upsert(
    conn: AsyncConnection, table: Table, owner_id: object, pairs: Iterable[tuple[str, str]]
) -> None:
    """Sets each tag, overwriting a key the owner has; the last of repeated keys wins."""
    owner = table.c[_owner_column(table)]
    for key, value in dict(pairs).items():
        match = and_(owner == owner_id, table.c.key == key)
        updated = await conn.execute(update(table).where(match).values(value=value))
        if updated.rowcount == 0:
            await conn.execute(
                insert(table).values({owner.name: owner_id, "key": key, "value": value})
            )


async def delete(
    conn: AsyncConnection, table: Table, owner_id: object, key: str, what: str
) -> None:
    """Deletes one tag; NOT_FOUND TAG_NOT_FOUND when ``what`` (e.g. "run 'abc'") has none by
    that key."""
    deleted = 0
    if findable(key):
        owner = table.c[_owner_column(table)]
        result = await conn.execute(
            table.delete().where(and_(owner == owner_id, table.c.key == key))
        )
        deleted = result.rowcount
    if deleted == 0:
        raise NotFound("TAG_NOT_FOUND", f"{what} has no tag {shown(key)}", "key")


def _owner_column(table: Table) -> str:
    """The one primary-key column that is not ``key``: the id of the tagged resource."""
    (name,) = (c.name for c in table.primary_key.columns if c.name != "key")
    return name
