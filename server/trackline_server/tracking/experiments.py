"""Queries of experiments and their tags. Functions take a connection inside an open
transaction and never commit: the edge (one unit of work per RPC) does."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import lifecycle, limits, tags
from ..artifacts.storage import check_location
from ..clock import now_ms
from ..errors import AlreadyExists, FailedPrecondition, NotFound, shown
from ..models import experiment_tags, experiments
from ..sql import Query, Reader, among, first, rows
from ..validation import (
    Problems,
    check_artifact_location,
    check_experiment_name,
    check_key,
    check_tags,
    check_value,
    findable,
)

DEFAULT_EXPERIMENT_ID = 0
_E = experiments.c
# The experiment's own columns, in ExperimentRow's order.
_EXPERIMENT = (
    _E.experiment_id, _E.name, _E.artifact_location, _E.lifecycle_stage, _E.creation_time,
    _E.last_update_time,
)  # fmt: skip
_EXPERIMENTS_OF = Query(lambda d: select(*_EXPERIMENT).where(among(_E.experiment_id, "ids", d)))
_ID_BY_NAME = Query(lambda _: select(_E.experiment_id).where(_E.name == bindparam("name")))


@dataclass
class ExperimentRow:
    experiment_id: int
    name: str
    artifact_location: str
    lifecycle_stage: int
    creation_time: int
    last_update_time: int
    tags: dict[str, str] = field(default_factory=dict)


def _taken(name: str, field_name: str) -> AlreadyExists:
    return AlreadyExists(
        "EXPERIMENT_ALREADY_EXISTS", f"experiment {shown(name)} already exists", field_name
    )


async def ensure_default(conn: AsyncConnection, artifact_root: str) -> None:
    """Creates the Default experiment (id 0), where runs go that name no experiment."""
    found = await conn.scalar(
        select(experiments.c.experiment_id).where(
            experiments.c.experiment_id == DEFAULT_EXPERIMENT_ID
        )
    )
    if found is None:
        ts = now_ms()
        await conn.execute(
            insert(experiments).values(
                experiment_id=DEFAULT_EXPERIMENT_ID,
                name="Default",
                artifact_location=f"{artifact_root}/0",
                lifecycle_stage=lifecycle.ACTIVE,
                creation_time=ts,
                last_update_time=ts,
            )
        )


async def create(
    conn: AsyncConnection,
    name: str,
    artifact_location: str,
    tag_pairs: dict[str, str],
    artifact_root: str,
) -> int:
    """Creates the experiment and returns its id; an empty ``artifact_location`` means
    ``<artifact_root>/<id>``, a given one must be s3:// or lie under ``artifact_root``
    (``artifacts.storage.check_location``). A taken name is ALREADY_EXISTS."""
    problems = Problems()  # every problem of the request, in one refusal
    problems.check(check_experiment_name, name, "name")
    if artifact_location and findable(artifact_location):
        problems.check(check_location, artifact_location, artifact_root)
    else:
        problems.check(check_artifact_location, artifact_location)
    check_tags(tag_pairs.items(), problems=problems)
    problems.raise_if_any()
    if await conn.scalar(select(experiments.c.experiment_id).where(experiments.c.name == name)):
        raise _taken(name, "name")
    ts = now_ms()
    try:
        result = await conn.execute(
            insert(experiments).values(
                name=name,
                artifact_location=artifact_location,
                lifecycle_stage=lifecycle.ACTIVE,
                creation_time=ts,
                last_update_time=ts,
            )
        )
    except IntegrityError:  # created by a concurrent call since the check above
        raise _taken(name, "name") from None
    assert result.inserted_primary_key is not None
    exp_id = int(result.inserted_primary_key[0])
    if not artifact_location:
        await conn.execute(
            update(experiments)
            .where(experiments.c.experiment_id == exp_id)
            .values(artifact_location=f"{artifact_root}/{exp_id}")
        )
    await tags.insert_new(conn, experiment_tags, exp_id, tag_pairs)
    return exp_id


async def get(reader: Reader, exp_id: int) -> ExperimentRow:
    """The experiment with its tags; NOT_FOUND EXPERIMENT_NOT_FOUND when absent."""
    found = await load(reader, [exp_id])
    if not found:
        raise NotFound("EXPERIMENT_NOT_FOUND", f"no experiment with id '{exp_id}'", "experiment_id")
    return found[0]


async def get_active(conn: AsyncConnection, exp_id: int) -> ExperimentRow:
    """The experiment, for a write to it or into it: FAILED_PRECONDITION EXPERIMENT_DELETED
    when it is soft-deleted."""
    exp = await get(conn, exp_id)
    lifecycle.require_active(exp.lifecycle_stage, "EXPERIMENT_DELETED", f"experiment '{exp_id}'")
    return exp


async def get_by_name(reader: Reader, name: str) -> ExperimentRow:
    row = await first(reader, _ID_BY_NAME, {"name": name}) if findable(name) else None
    if row is None:
        raise NotFound("EXPERIMENT_NOT_FOUND", f"no experiment named {shown(name)}", "name")
    return await get(reader, row[0])


async def set_stage(conn: AsyncConnection, exp_id: int, stage: int) -> None:
    """Soft-deletes or restores an experiment (``lifecycle.move``); the Default experiment
    cannot be deleted."""
    exp = await get(conn, exp_id)
    if (
        exp_id == DEFAULT_EXPERIMENT_ID
        and stage == lifecycle.DELETED
        and exp.lifecycle_stage != stage
    ):
        raise FailedPrecondition("DEFAULT_EXPERIMENT", "the Default experiment cannot be deleted")
    await lifecycle.move(
        conn,
        experiments,
        experiments.c.experiment_id,
        exp_id,
        exp.lifecycle_stage,
        stage,
        f"experiment '{exp_id}'",
        last_update_time=now_ms(),
    )


async def rename(conn: AsyncConnection, exp_id: int, new_name: str) -> None:
    check_experiment_name(new_name, "new_name")
    exp = await get_active(conn, exp_id)
    if new_name == exp.name:
        return
    taken = await conn.scalar(
        select(experiments.c.experiment_id).where(experiments.c.name == new_name)
    )
    if taken is not None:
        raise _taken(new_name, "new_name")
    await conn.execute(
        update(experiments)
        .where(experiments.c.experiment_id == exp_id)
        .values(name=new_name, last_update_time=now_ms())
    )


async def set_tag(conn: AsyncConnection, exp_id: int, key: str, value: str) -> None:
    problems = Problems()
    problems.check(check_key, key, "key")
    problems.check(check_value, value, "value", limits.MAX_TAG_VALUE_LENGTH, "tag value")
    problems.raise_if_any()
    await get_active(conn, exp_id)
    await tags.upsert(conn, experiment_tags, exp_id, [(key, value)])
    await _touch(conn, exp_id)


async def delete_tag(conn: AsyncConnection, exp_id: int, key: str) -> None:
    await get_active(conn, exp_id)
    await tags.delete(conn, experiment_tags, exp_id, key, f"experiment '{exp_id}'")
    await _touch(conn, exp_id)


async def _touch(conn: AsyncConnection, exp_id: int) -> None:
    await conn.execute(
        update(experiments)
        .where(experiments.c.experiment_id == exp_id)
        .values(last_update_time=now_ms())
    )


async def load(reader: Reader, exp_ids: list[int]) -> list[ExperimentRow]:
    """The experiments with their tags, in the order of ``exp_ids`` (absent ones left out);
    two queries whatever their number."""
    if not exp_ids:
        return []
    found = {
        row[0]: ExperimentRow(*row) for row in await rows(reader, _EXPERIMENTS_OF, {"ids": exp_ids})
    }
    for exp_id, key, value in await tags.read(reader, experiment_tags, list(found)):
        found[exp_id].tags[key] = value
    return [found[e] for e in exp_ids if e in found]
