"""Queries over the tables. Functions take a connection inside an open transaction and never
commit: the caller (one unit of work per RPC) does."""

from __future__ import annotations

import math
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import and_, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from . import limits
from .errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from .ingest import chunks
from .models import (
    applied_requests,
    experiment_tags,
    experiments,
    latest_metrics,
    params,
    runs,
    tags,
)

if TYPE_CHECKING:
    from .ingest.segments import Segments

ACTIVE = 1
DELETED = 2
RUNNING = 1
DEFAULT_EXPERIMENT_ID = 0


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class ExperimentRow:
    experiment_id: int
    name: str
    artifact_location: str
    lifecycle_stage: int
    creation_time: int
    last_update_time: int
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class RunRow:
    run_id: str
    experiment_id: int
    run_name: str
    status: int
    start_time: int
    end_time: int | None
    lifecycle_stage: int
    parent_run_id: str | None
    artifact_uri: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    latest_metrics: list[tuple[str, float, int, int]] = field(default_factory=list)


_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f]")


def check_key(key: str, field_name: str) -> None:
    if not key:
        raise InvalidArgument("INVALID_KEY", "key must not be empty", field_name)
    if len(key) > limits.MAX_KEY_LENGTH:
        raise InvalidArgument(
            "INVALID_KEY", f"key is longer than {limits.MAX_KEY_LENGTH} characters", field_name
        )
    if _CONTROL_CHARS.search(key):
        raise InvalidArgument("INVALID_KEY", "key contains a control character", field_name)


def check_batch_points(total: int, field: str) -> None:
    if total > limits.MAX_BATCH_POINTS:
        raise InvalidArgument(
            "BATCH_TOO_LARGE",
            f"{total} points exceed the limit of {limits.MAX_BATCH_POINTS}",
            field,
        )


def check_experiment_name(name: str, field_name: str) -> None:
    if not name.strip():
        raise InvalidArgument("INVALID_NAME", "experiment name must not be empty", field_name)
    if len(name) > limits.MAX_NAME_LENGTH:
        raise InvalidArgument(
            "INVALID_NAME", f"name is longer than {limits.MAX_NAME_LENGTH} characters", field_name
        )


def parse_experiment_id(raw: str, field_name: str = "experiment_id") -> int:
    try:
        value = int(raw)
    except ValueError:
        raise NotFound(
            "EXPERIMENT_NOT_FOUND", f"no experiment with id {raw!r}", field_name
        ) from None
    if value < 0:
        raise NotFound("EXPERIMENT_NOT_FOUND", f"no experiment with id {raw!r}", field_name)
    return value


async def ensure_default_experiment(conn: AsyncConnection, artifact_root: str) -> None:
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
                lifecycle_stage=ACTIVE,
                creation_time=ts,
                last_update_time=ts,
            )
        )


async def create_experiment(
    conn: AsyncConnection,
    name: str,
    artifact_location: str,
    tag_pairs: dict[str, str],
    artifact_root: str,
) -> ExperimentRow:
    check_experiment_name(name, "name")
    if await conn.scalar(select(experiments.c.experiment_id).where(experiments.c.name == name)):
        raise AlreadyExists("EXPERIMENT_ALREADY_EXISTS", f"experiment {name!r} already exists")
    for i, key in enumerate(tag_pairs):
        check_key(key, f"tags[{i}].key")
    ts = now_ms()
    try:
        result = await conn.execute(
            insert(experiments).values(
                name=name,
                artifact_location=artifact_location,
                lifecycle_stage=ACTIVE,
                creation_time=ts,
                last_update_time=ts,
            )
        )
    except IntegrityError:
        raise AlreadyExists(
            "EXPERIMENT_ALREADY_EXISTS", f"experiment {name!r} already exists"
        ) from None
    assert result.inserted_primary_key is not None
    exp_id = int(result.inserted_primary_key[0])
    if not artifact_location:
        artifact_location = f"{artifact_root}/{exp_id}"
        await conn.execute(
            update(experiments)
            .where(experiments.c.experiment_id == exp_id)
            .values(artifact_location=artifact_location)
        )
    if tag_pairs:
        await conn.execute(
            insert(experiment_tags),
            [{"experiment_id": exp_id, "key": k, "value": v} for k, v in tag_pairs.items()],
        )
    return await get_experiment(conn, exp_id)


async def get_experiment(conn: AsyncConnection, exp_id: int) -> ExperimentRow:
    row = (
        await conn.execute(select(experiments).where(experiments.c.experiment_id == exp_id))
    ).first()
    if row is None:
        raise NotFound("EXPERIMENT_NOT_FOUND", f"no experiment with id '{exp_id}'", "experiment_id")
    exp = ExperimentRow(**row._mapping)
    for key, value in await conn.execute(
        select(experiment_tags.c.key, experiment_tags.c.value).where(
            experiment_tags.c.experiment_id == exp_id
        )
    ):
        exp.tags[key] = value
    return exp


async def get_active_experiment(conn: AsyncConnection, exp_id: int) -> ExperimentRow:
    """The experiment, or FAILED_PRECONDITION when it is soft-deleted (writes need it live)."""
    exp = await get_experiment(conn, exp_id)
    if exp.lifecycle_stage != ACTIVE:
        raise FailedPrecondition(
            "EXPERIMENT_DELETED", f"experiment '{exp_id}' is deleted; restore it first"
        )
    return exp


async def get_experiment_by_name(conn: AsyncConnection, name: str) -> ExperimentRow:
    exp_id = await conn.scalar(
        select(experiments.c.experiment_id).where(experiments.c.name == name)
    )
    if exp_id is None:
        raise NotFound("EXPERIMENT_NOT_FOUND", f"no experiment named {name!r}", "name")
    return await get_experiment(conn, exp_id)


async def create_run(
    conn: AsyncConnection,
    exp_id: int,
    run_name: str,
    start_time: int,
    tag_pairs: dict[str, str],
    parent_run_id: str,
) -> RunRow:
    exp = await get_active_experiment(conn, exp_id)
    if len(run_name) > limits.MAX_NAME_LENGTH:
        raise InvalidArgument(
            "INVALID_NAME",
            f"run name is longer than {limits.MAX_NAME_LENGTH} characters",
            "run_name",
        )
    if parent_run_id:
        await get_run_row(conn, parent_run_id, field_name="parent_run_id")
    for i, key in enumerate(tag_pairs):
        check_key(key, f"tags[{i}].key")
    run_id = uuid.uuid4().hex
    await conn.execute(
        insert(runs).values(
            run_id=run_id,
            experiment_id=exp_id,
            run_name=run_name or f"run-{run_id[:8]}",
            status=RUNNING,
            start_time=start_time or now_ms(),
            end_time=None,
            lifecycle_stage=ACTIVE,
            parent_run_id=parent_run_id or None,
            artifact_uri=f"{exp.artifact_location}/{run_id}/artifacts",
        )
    )
    if tag_pairs:
        await conn.execute(
            insert(tags), [{"run_id": run_id, "key": k, "value": v} for k, v in tag_pairs.items()]
        )
    return await get_run(conn, run_id)


async def get_run_row(conn: AsyncConnection, run_id: str, field_name: str = "run_id") -> RunRow:
    row = (await conn.execute(select(runs).where(runs.c.run_id == run_id))).first()
    if row is None:
        raise NotFound("RUN_NOT_FOUND", f"no run with id {run_id!r}", field_name)
    return RunRow(**row._mapping)


async def get_active_run(conn: AsyncConnection, run_id: str) -> RunRow:
    """The run, or FAILED_PRECONDITION when it is soft-deleted (writes need it live)."""
    run = await get_run_row(conn, run_id)
    if run.lifecycle_stage != ACTIVE:
        raise FailedPrecondition("RUN_DELETED", f"run {run_id!r} is deleted; restore it first")
    return run


async def get_run(conn: AsyncConnection, run_id: str) -> RunRow:
    await get_run_row(conn, run_id)
    return (await load_runs(conn, [run_id]))[0]


async def update_run(
    conn: AsyncConnection, run_id: str, status: int, end_time: int | None, run_name: str | None
) -> RunRow:
    await get_run_row(conn, run_id)
    values: dict[str, object] = {}
    if status:
        values["status"] = status
    if end_time is not None:
        values["end_time"] = end_time
    if run_name is not None:
        if len(run_name) > limits.MAX_NAME_LENGTH:
            raise InvalidArgument(
                "INVALID_NAME",
                f"run name is longer than {limits.MAX_NAME_LENGTH} characters",
                "run_name",
            )
        values["run_name"] = run_name
    if values:
        await conn.execute(update(runs).where(runs.c.run_id == run_id).values(**values))
    return await get_run(conn, run_id)


async def log_batch(
    conn: AsyncConnection,
    run_id: str,
    points: Segments,
    param_pairs: list[tuple[str, str]],
    tag_pairs: list[tuple[str, str]],
    request_id: str = "",
) -> None:
    """Writes one run's metrics, params and tags; raises before writing on any bad input.
    A non-empty ``request_id`` seen before makes this a no-op (the retry of an applied batch)."""
    await get_active_run(conn, run_id)
    if request_id:
        seen_run = await conn.scalar(
            select(applied_requests.c.run_id).where(applied_requests.c.request_id == request_id)
        )
        if seen_run is not None:
            if seen_run != run_id:
                raise InvalidArgument(
                    "REQUEST_ID_REUSED",
                    f"request_id {request_id!r} was already used for run {seen_run!r}",
                    "request_id",
                )
            return
        await conn.execute(
            insert(applied_requests).values(
                request_id=request_id, run_id=run_id, applied_time=now_ms()
            )
        )
    wanted = dict(param_pairs)
    if len(wanted) != len(param_pairs):
        seen: dict[str, str] = {}
        for i, (k, v) in enumerate(param_pairs):
            if k in seen and seen[k] != v:
                raise InvalidArgument(
                    "PARAM_CONFLICT",
                    f"param {k!r} given twice with different values",
                    f"params[{i}].value",
                )
            seen[k] = v
    if wanted:
        found = await conn.execute(
            select(params.c.key, params.c.value).where(
                and_(params.c.run_id == run_id, params.c.key.in_(list(wanted)))
            )
        )
        existing = {k: v for k, v in found}
        for k, v in wanted.items():
            if k in existing and existing[k] != v:
                raise InvalidArgument(
                    "PARAM_CONFLICT",
                    f"param {k!r} was already logged as {existing[k]!r}; params are immutable,"
                    f" so it cannot change to {v!r}",
                    "params",
                )
        new = [
            {"run_id": run_id, "key": k, "value": v} for k, v in wanted.items() if k not in existing
        ]
        if new:
            await conn.execute(insert(params), new)
    for k, v in dict(tag_pairs).items():
        updated = await conn.execute(
            update(tags).where(and_(tags.c.run_id == run_id, tags.c.key == k)).values(value=v)
        )
        if updated.rowcount == 0:
            await conn.execute(insert(tags).values(run_id=run_id, key=k, value=v))
    await chunks.write_segments(conn, points)
    await chunks.move_latest(conn, points)


async def set_experiment_stage(conn: AsyncConnection, exp_id: int, stage: int) -> None:
    """Soft-deletes (stage DELETED) or restores (ACTIVE) an experiment; asking for the stage it
    already has is FAILED_PRECONDITION, so a caller learns its view was stale."""
    exp = await get_experiment(conn, exp_id)
    if exp.lifecycle_stage == stage:
        state = "deleted" if stage == DELETED else "active"
        raise FailedPrecondition(
            "WRONG_LIFECYCLE_STAGE", f"experiment '{exp_id}' is already {state}"
        )
    if exp_id == DEFAULT_EXPERIMENT_ID and stage == DELETED:
        raise FailedPrecondition("DEFAULT_EXPERIMENT", "the Default experiment cannot be deleted")
    await conn.execute(
        update(experiments)
        .where(experiments.c.experiment_id == exp_id)
        .values(lifecycle_stage=stage, last_update_time=now_ms())
    )


async def set_run_stage(conn: AsyncConnection, run_id: str, stage: int) -> None:
    """Soft-deletes or restores a run, like set_experiment_stage."""
    run = await get_run_row(conn, run_id)
    if run.lifecycle_stage == stage:
        state = "deleted" if stage == DELETED else "active"
        raise FailedPrecondition("WRONG_LIFECYCLE_STAGE", f"run {run_id!r} is already {state}")
    await conn.execute(update(runs).where(runs.c.run_id == run_id).values(lifecycle_stage=stage))


async def delete_tag(conn: AsyncConnection, run_id: str, key: str) -> None:
    await get_active_run(conn, run_id)
    result = await conn.execute(
        tags.delete().where(and_(tags.c.run_id == run_id, tags.c.key == key))
    )
    if result.rowcount == 0:
        raise NotFound("TAG_NOT_FOUND", f"run {run_id!r} has no tag {key!r}", "key")


async def rename_experiment(conn: AsyncConnection, exp_id: int, new_name: str) -> ExperimentRow:
    check_experiment_name(new_name, "new_name")
    exp = await get_active_experiment(conn, exp_id)
    if new_name != exp.name:
        taken = await conn.scalar(
            select(experiments.c.experiment_id).where(experiments.c.name == new_name)
        )
        if taken is not None:
            raise AlreadyExists(
                "EXPERIMENT_ALREADY_EXISTS", f"experiment {new_name!r} already exists", "new_name"
            )
        await conn.execute(
            update(experiments)
            .where(experiments.c.experiment_id == exp_id)
            .values(name=new_name, last_update_time=now_ms())
        )
    return await get_experiment(conn, exp_id)


async def set_experiment_tag(conn: AsyncConnection, exp_id: int, key: str, value: str) -> None:
    check_key(key, "key")
    if len(value) > limits.MAX_TAG_VALUE_LENGTH:
        raise InvalidArgument(
            "VALUE_TOO_LONG",
            f"tag value longer than {limits.MAX_TAG_VALUE_LENGTH} characters",
            "value",
        )
    await get_active_experiment(conn, exp_id)
    match = and_(experiment_tags.c.experiment_id == exp_id, experiment_tags.c.key == key)
    updated = await conn.execute(update(experiment_tags).where(match).values(value=value))
    if updated.rowcount == 0:
        await conn.execute(
            insert(experiment_tags).values(experiment_id=exp_id, key=key, value=value)
        )
    await _touch_experiment(conn, exp_id)


async def delete_experiment_tag(conn: AsyncConnection, exp_id: int, key: str) -> None:
    await get_active_experiment(conn, exp_id)
    result = await conn.execute(
        experiment_tags.delete().where(
            and_(experiment_tags.c.experiment_id == exp_id, experiment_tags.c.key == key)
        )
    )
    if result.rowcount == 0:
        raise NotFound("TAG_NOT_FOUND", f"experiment '{exp_id}' has no tag {key!r}", "key")
    await _touch_experiment(conn, exp_id)


async def _touch_experiment(conn: AsyncConnection, exp_id: int) -> None:
    await conn.execute(
        update(experiments)
        .where(experiments.c.experiment_id == exp_id)
        .values(last_update_time=now_ms())
    )


async def load_runs(conn: AsyncConnection, run_ids: list[str]) -> list[RunRow]:
    """The runs with their params, tags and latest metrics, in the order of ``run_ids``;
    four queries whatever the number of runs."""
    if not run_ids:
        return []
    found = {
        row.run_id: RunRow(**row._mapping)
        for row in await conn.execute(select(runs).where(runs.c.run_id.in_(run_ids)))
    }
    for run_id, key, value in await conn.execute(
        select(params.c.run_id, params.c.key, params.c.value).where(params.c.run_id.in_(run_ids))
    ):
        found[run_id].params[key] = value
    for run_id, key, value in await conn.execute(
        select(tags.c.run_id, tags.c.key, tags.c.value).where(tags.c.run_id.in_(run_ids))
    ):
        found[run_id].tags[key] = value
    lm = latest_metrics.c
    for run_id, key, value, step, ts in await conn.execute(
        select(lm.run_id, lm.key, lm.value, lm.step, lm.timestamp).where(lm.run_id.in_(run_ids))
    ):
        found[run_id].latest_metrics.append((key, math.nan if value is None else value, step, ts))
    return [found[r] for r in run_ids if r in found]


async def load_experiments(conn: AsyncConnection, exp_ids: list[int]) -> list[ExperimentRow]:
    """The experiments with their tags, in the order of ``exp_ids``."""
    if not exp_ids:
        return []
    found = {
        row.experiment_id: ExperimentRow(**row._mapping)
        for row in await conn.execute(
            select(experiments).where(experiments.c.experiment_id.in_(exp_ids))
        )
    }
    et = experiment_tags.c
    for exp_id, key, value in await conn.execute(
        select(et.experiment_id, et.key, et.value).where(et.experiment_id.in_(exp_ids))
    ):
        found[exp_id].tags[key] = value
    return [found[e] for e in exp_ids if e in found]
