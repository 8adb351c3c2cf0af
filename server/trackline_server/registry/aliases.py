"""Aliases of a registered model: a name (``champion``) pointing at one of its versions.
Setting an alias that exists moves it: one row updated in the caller's transaction, so a
reader sees the old version or the new one, never none."""

from __future__ import annotations

import re

from sqlalchemy import and_, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import limits
from ..errors import InvalidArgument, NotFound, shown
from ..models import model_aliases
from ..sql import Query, Reader, first

_A = model_aliases.c
_ALIAS = re.compile("[A-Za-z0-9_-]+")
# What a models:/ URI reads as a version rather than an alias: '3', 'v3', 'latest'.
_VERSION_LIKE = re.compile("v?[0-9]+|latest", re.IGNORECASE)
_VERSION_OF = Query(
    lambda _: select(_A.version_id).where(
        and_(_A.model_id == bindparam("model_id"), _A.alias == bindparam("alias"))
    )
)


def check_alias(alias: str, field_name: str = "alias") -> None:
    """1 to MAX_ALIAS_LENGTH letters, digits, '_' or '-', and nothing a models:/ URI would
    read as a version: not digits, 'v' and digits, nor 'latest' (in any case)."""
    if not alias or len(alias) > limits.MAX_ALIAS_LENGTH or not _ALIAS.fullmatch(alias):
        raise InvalidArgument(
            "INVALID_ALIAS",
            f"alias {shown(alias)} is not 1 to {limits.MAX_ALIAS_LENGTH} letters, digits,"
            " '_' or '-'",
            field_name,
        )
    if _VERSION_LIKE.fullmatch(alias):
        raise InvalidArgument(
            "INVALID_ALIAS",
            f"alias {shown(alias)} would read as a version in a models:/ URI; choose another",
            field_name,
        )


def not_found(name: str, alias: str) -> NotFound:
    return NotFound(
        "ALIAS_NOT_FOUND", f"registered model {shown(name)} has no alias {shown(alias)}", "alias"
    )


async def set_alias(conn: AsyncConnection, model_id: int, alias: str, version_id: int) -> None:
    """Points the alias at the version, creating or moving it (the model locked)."""
    match = and_(_A.model_id == model_id, _A.alias == alias)
    moved = await conn.execute(update(model_aliases).where(match).values(version_id=version_id))
    if moved.rowcount == 0:
        await conn.execute(
            insert(model_aliases).values(model_id=model_id, alias=alias, version_id=version_id)
        )


async def delete_alias(conn: AsyncConnection, model_id: int, name: str, alias: str) -> None:
    """Deletes the alias; NOT_FOUND ALIAS_NOT_FOUND when the model has none by that name."""
    result = await conn.execute(
        delete(model_aliases).where(and_(_A.model_id == model_id, _A.alias == alias))
    )
    if result.rowcount == 0:
        raise not_found(name, alias)


async def version_of(reader: Reader, model_id: int, name: str, alias: str) -> int:
    """The id of the version the alias points at; NOT_FOUND ALIAS_NOT_FOUND."""
    found = None
    if _ALIAS.fullmatch(alias):
        found = await first(reader, _VERSION_OF, {"model_id": model_id, "alias": alias})
    if found is None:
        raise not_found(name, alias)
    return int(found[0])
