"""Registered models: names, descriptions, tags, and their loading as RegisteredModel
messages (with tags and aliases). Functions take a connection inside an open transaction and
never commit. Every write to a model or to what it holds starts with ``lock``, which takes the
model's row lock: writes of one model are serialised, and always lock the model row first
(then its versions, then the event counter), so two of them never deadlock."""

from __future__ import annotations

import re

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline.v1 import registry_pb2 as rpb
from trackline.v1 import resources_pb2 as pb

from .. import limits, tags
from ..clock import now_ms
from ..errors import AlreadyExists, InvalidArgument, NotFound, shown
from ..models import (
    model_aliases,
    model_version_tags,
    model_versions,
    registered_model_tags,
    registered_models,
)
from ..sql import Query, Reader, among, by_code_point, first, rows
from ..validation import Problems, check_tags, findable

_M = registered_models.c
_A = model_aliases.c
_V = model_versions.c
_FORBIDDEN = re.compile("[\x00-\x1f\x7f/@]")
_ID_BY_NAME = Query(lambda _: select(_M.model_id).where(_M.name == bindparam("name")))
_MODELS_OF = Query(
    lambda d: select(
        _M.model_id, _M.name, _M.description, _M.creation_time, _M.last_updated_time
    ).where(among(_M.model_id, "ids", d))
)
# (model id, alias, version number) of some models' aliases, in alias order.
_ALIASES_OF = Query(
    lambda d: (
        select(_A.model_id, _A.alias, _V.version)
        .select_from(model_aliases.join(model_versions, _A.version_id == _V.version_id))
        .where(among(_A.model_id, "ids", d))
        .order_by(by_code_point(_A.alias, d))
    )
)


def check_model_name(name: str, field_name: str) -> None:
    """A registered model's name: 1 to MAX_NAME_LENGTH characters, not blank, without control
    characters, '/' or '@' (a models:/ URI must name it unambiguously)."""
    if not name.strip():
        raise InvalidArgument("INVALID_MODEL_NAME", "model name must not be blank", field_name)
    if len(name) > limits.MAX_NAME_LENGTH:
        raise InvalidArgument(
            "INVALID_MODEL_NAME",
            f"model name is longer than {limits.MAX_NAME_LENGTH} characters",
            field_name,
        )
    if _FORBIDDEN.search(name):
        raise InvalidArgument(
            "INVALID_MODEL_NAME",
            f"model name {shown(name)} holds a control character, '/' or '@'",
            field_name,
        )


def check_description(
    text: str, field_name: str, limit: int = limits.MAX_DESCRIPTION_LENGTH
) -> None:
    """A description (or, with its own ``limit``, a status message): no NUL, not too long."""
    if len(text) > limit:
        raise InvalidArgument(
            "INVALID_DESCRIPTION", f"{field_name} is longer than {limit} characters", field_name
        )
    if not findable(text):
        raise InvalidArgument(
            "INVALID_DESCRIPTION", f"{field_name} contains a NUL character", field_name
        )


def not_found(name: str, field_name: str = "name") -> NotFound:
    return NotFound(
        "REGISTERED_MODEL_NOT_FOUND", f"no registered model named {shown(name)}", field_name
    )


def _taken(name: str, field_name: str) -> AlreadyExists:
    return AlreadyExists(
        "REGISTERED_MODEL_ALREADY_EXISTS",
        f"registered model {shown(name)} already exists",
        field_name,
    )


async def create(
    conn: AsyncConnection, name: str, description: str, tag_pairs: list[tuple[str, str]]
) -> int:
    """Creates the model and returns its id; ALREADY_EXISTS when the name is taken."""
    problems = Problems()
    problems.check(check_model_name, name, "name")
    problems.check(check_description, description, "description")
    check_tags(tag_pairs, problems=problems)
    problems.raise_if_any()
    if await first(conn, _ID_BY_NAME, {"name": name}) is not None:
        raise _taken(name, "name")
    ts = now_ms()
    try:
        result = await conn.execute(
            insert(registered_models).values(
                name=name, description=description, creation_time=ts, last_updated_time=ts
            )
        )
    except IntegrityError:  # created by a concurrent call since the check above
        raise _taken(name, "name") from None
    assert result.inserted_primary_key is not None
    model_id = int(result.inserted_primary_key[0])
    await tags.insert_new(conn, registered_model_tags, model_id, dict(tag_pairs))
    return model_id


async def model_id(reader: Reader, name: str, field_name: str = "name") -> int:
    """The id of the model named ``name``; NOT_FOUND REGISTERED_MODEL_NOT_FOUND."""
    row = await first(reader, _ID_BY_NAME, {"name": name}) if findable(name) else None
    if row is None:
        raise not_found(name, field_name)
    return int(row[0])


async def lock(conn: AsyncConnection, name: str, field_name: str = "name") -> int:
    """The id of the model named ``name``, its row locked for the rest of the transaction
    (and its last_updated_time set to now); NOT_FOUND REGISTERED_MODEL_NOT_FOUND."""
    found = None
    if findable(name):
        result = await conn.execute(
            update(registered_models)
            .where(_M.name == name)
            .values(last_updated_time=now_ms())
            .returning(_M.model_id)
        )
        found = result.scalar_one_or_none()
    if found is None:
        raise not_found(name, field_name)
    return int(found)


async def rename(conn: AsyncConnection, name: str, new_name: str) -> int:
    """Renames the model (its versions' copies of the name too); returns its id."""
    check_model_name(new_name, "new_name")
    mid = await lock(conn, name)
    if new_name == name:
        return mid
    if await first(conn, _ID_BY_NAME, {"name": new_name}) is not None:
        raise _taken(new_name, "new_name")
    try:
        await conn.execute(
            update(registered_models).where(_M.model_id == mid).values(name=new_name)
        )
    except IntegrityError:  # taken by a concurrent call since the check above
        raise _taken(new_name, "new_name") from None
    await conn.execute(update(model_versions).where(_V.model_id == mid).values(name=new_name))
    return mid


async def set_description(conn: AsyncConnection, name: str, description: str) -> int:
    check_description(description, "description")
    mid = await lock(conn, name)
    await conn.execute(
        update(registered_models).where(_M.model_id == mid).values(description=description)
    )
    return mid


async def delete_model(conn: AsyncConnection, name: str) -> None:
    """Deletes the model with its tags, versions, their tags, and its aliases."""
    mid = await lock(conn, name)
    version_ids = select(_V.version_id).where(_V.model_id == mid)
    await conn.execute(delete(model_aliases).where(_A.model_id == mid))
    await conn.execute(
        delete(model_version_tags).where(model_version_tags.c.version_id.in_(version_ids))
    )
    await conn.execute(delete(model_versions).where(_V.model_id == mid))
    await conn.execute(delete(registered_model_tags).where(registered_model_tags.c.model_id == mid))
    await conn.execute(delete(registered_models).where(_M.model_id == mid))


async def get(reader: Reader, mid: int) -> rpb.RegisteredModel:
    """The model of id ``mid`` (one the caller found, or a request id recorded: NOT_FOUND
    REGISTERED_MODEL_NOT_FOUND when it was deleted since)."""
    found = await load(reader, [mid])
    if not found:
        raise NotFound("REGISTERED_MODEL_NOT_FOUND", "the registered model was deleted", "name")
    return found[0]


async def load(reader: Reader, ids: list[int]) -> list[rpb.RegisteredModel]:
    """The models with their tags and aliases, in the order of ``ids`` (absent ones left
    out); three queries whatever their number."""
    if not ids:
        return []
    found = {
        mid: rpb.RegisteredModel(
            name=name, description=text, creation_time=created, last_updated_time=updated
        )
        for mid, name, text, created, updated in await rows(reader, _MODELS_OF, {"ids": ids})
    }
    for mid, key, value in await tags.read(reader, registered_model_tags, list(found)):
        found[mid].tags.append(pb.Tag(key=key, value=value))
    for mid, alias, version in await rows(reader, _ALIASES_OF, {"ids": list(found)}):
        found[mid].aliases.append(rpb.ModelAlias(alias=alias, version=version))
    return [found[m] for m in ids if m in found]
