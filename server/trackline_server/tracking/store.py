"""Queries over the tables. Functions take a connection inside an open transaction and never
commit: the caller (one unit of work per RPC) does."""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import limits
from ..errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, shown
from ..metrics import chunks
from ..models import (
    applied_requests,
    experiment_tags,
    experiments,
    latest_metrics,
    params,
    runs,
    tags,
)
from ..validation import (
    check_artifact_location,
    check_run_name,
    check_run_status,
    check_tags,
    check_time,
    check_value,
    findable,
)

# Re-exported: other modules check through store (metrics/segments.py: check_key, ...).
from ..validation import check_batch_points as check_batch_points
from ..validation import check_experiment_name as check_experiment_name
from ..validation import check_key as check_key
from ..validation import parse_experiment_id as parse_experiment_id

if TYPE_CHECKING:
    from ..metrics.segments import Segments

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
    check_artifact_location(artifact_location)
    check_tags(tag_pairs.items())
    if await conn.scalar(select(experiments.c.experiment_id).where(experiments.c.name == name)):
        raise AlreadyExists(
            "EXPERIMENT_ALREADY_EXISTS", f"experiment {shown(name)} already exists", "name"
        )
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
            "EXPERIMENT_ALREADY_EXISTS", f"experiment {shown(name)} already exists", "name"
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
    exp_id = None
    if findable(name):
        exp_id = await conn.scalar(
            select(experiments.c.experiment_id).where(experiments.c.name == name)
        )
    if exp_id is None:
        raise NotFound("EXPERIMENT_NOT_FOUND", f"no experiment named {shown(name)}", "name")
    return await get_experiment(conn, exp_id)


async def create_run(
    conn: AsyncConnection,
    exp_id: int,
    run_name: str,
    start_time: int,
    tag_pairs: dict[str, str],
    parent_run_id: str,
) -> RunRow:
    check_run_name(run_name)
    check_time(start_time, "start_time")
    check_tags(tag_pairs.items())
    exp = await get_active_experiment(conn, exp_id)
    if parent_run_id:
        await get_run_row(conn, parent_run_id, field_name="parent_run_id")
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


def run_not_found(run_id: str, field_name: str = "run_id") -> NotFound:
    return NotFound("RUN_NOT_FOUND", f"no run with id {shown(run_id)}", field_name)


async def get_run_row(conn: AsyncConnection, run_id: str, field_name: str = "run_id") -> RunRow:
    row = None
    if findable(run_id):
        row = (await conn.execute(select(runs).where(runs.c.run_id == run_id))).first()
    if row is None:
        raise run_not_found(run_id, field_name)
    return RunRow(**row._mapping)


async def get_active_run(conn: AsyncConnection, run_id: str) -> RunRow:
    """The run, for a write to it: FAILED_PRECONDITION when the run (RUN_DELETED) or its
    experiment (EXPERIMENT_DELETED) is soft-deleted. One query."""
    row = None
    if findable(run_id):
        row = (
            await conn.execute(
                select(runs, experiments.c.lifecycle_stage.label("experiment_stage"))
                .join(experiments, experiments.c.experiment_id == runs.c.experiment_id)
                .where(runs.c.run_id == run_id)
            )
        ).first()
    if row is None:
        raise run_not_found(run_id)
    fields = dict(row._mapping)
    experiment_stage = fields.pop("experiment_stage")
    run = RunRow(**fields)
    if run.lifecycle_stage != ACTIVE:
        raise FailedPrecondition("RUN_DELETED", f"run {shown(run_id)} is deleted; restore it first")
    if experiment_stage != ACTIVE:
        raise FailedPrecondition(
            "EXPERIMENT_DELETED",
            f"the experiment of run {shown(run_id)} ('{run.experiment_id}') is deleted;"
            " restore it first",
        )
    return run


async def get_run(conn: AsyncConnection, run_id: str) -> RunRow:
    await get_run_row(conn, run_id)
    return (await load_runs(conn, [run_id]))[0]


async def update_run(
    conn: AsyncConnection, run_id: str, status: int, end_time: int | None, run_name: str | None
) -> RunRow:
    """Sets what is given (status 0: unchanged). A deleted run (or a run of a deleted
    experiment) is FAILED_PRECONDITION: restore it before resuming or ending it. An end_time
    before the start_time is accepted, as MLflow does; the run shows a negative duration."""
    check_run_status(status)
    if end_time is not None:
        check_time(end_time, "end_time")
    if run_name is not None:
        check_run_name(run_name)
    await get_active_run(conn, run_id)
    values: dict[str, object] = {}
    if status:
        values["status"] = status
    if end_time is not None:
        values["end_time"] = end_time
    if run_name is not None:
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
    """Writes one run's metrics, params and tags; raises before writing on any bad input
    that needs the database to tell (keys, values and sizes are checked by the caller, before
    the batch joins a group commit). A non-empty ``request_id`` seen in the last
    APPLIED_REQUEST_RETENTION_S makes this a no-op (the retry of an applied batch)."""
    await get_active_run(conn, run_id)
    if request_id:
        await _prune_applied_requests(conn)
        seen_run = await conn.scalar(
            select(applied_requests.c.run_id).where(applied_requests.c.request_id == request_id)
        )
        if seen_run is not None:
            if seen_run != run_id:
                raise InvalidArgument(
                    "REQUEST_ID_REUSED",
                    f"request_id {shown(request_id)} was already used for another run",
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
                    f"param {shown(k)} given twice with different values",
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
                    f"param {shown(k)} was already logged as {shown(existing[k])}; params are"
                    f" immutable, so it cannot change to {shown(v)}",
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


# time.monotonic() before which applied_requests is not pruned again (per server process).
_next_prune = 0.0


async def _prune_applied_requests(conn: AsyncConnection) -> None:
    """Deletes up to APPLIED_REQUEST_PRUNE_BATCH request ids older than the retention, at most
    once per APPLIED_REQUEST_PRUNE_INTERVAL_S unless the last round found a full batch (then
    again at the next call, until the backlog is gone). A range scan of ix_applied_requests_
    applied_time, in the caller's transaction."""
    global _next_prune
    now = time.monotonic()
    if now < _next_prune:
        return
    cutoff = now_ms() - limits.APPLIED_REQUEST_RETENTION_S * 1000
    old = (
        select(applied_requests.c.request_id)
        .where(applied_requests.c.applied_time < cutoff)
        .order_by(applied_requests.c.applied_time)
        .limit(limits.APPLIED_REQUEST_PRUNE_BATCH)
    )
    result = await conn.execute(
        delete(applied_requests).where(applied_requests.c.request_id.in_(old))
    )
    full = result.rowcount >= limits.APPLIED_REQUEST_PRUNE_BATCH
    _next_prune = now if full else now + limits.APPLIED_REQUEST_PRUNE_INTERVAL_S


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
        raise FailedPrecondition("WRONG_LIFECYCLE_STAGE", f"run {shown(run_id)} is already {state}")
    await conn.execute(update(runs).where(runs.c.run_id == run_id).values(lifecycle_stage=stage))


async def delete_tag(conn: AsyncConnection, run_id: str, key: str) -> None:
    await get_active_run(conn, run_id)
    deleted = 0
    if findable(key):
        result = await conn.execute(
            tags.delete().where(and_(tags.c.run_id == run_id, tags.c.key == key))
        )
        deleted = result.rowcount
    if deleted == 0:
        raise NotFound("TAG_NOT_FOUND", f"run {shown(run_id)} has no tag {shown(key)}", "key")


async def rename_experiment(conn: AsyncConnection, exp_id: int, new_name: str) -> ExperimentRow:
    check_experiment_name(new_name, "new_name")
    exp = await get_active_experiment(conn, exp_id)
    if new_name != exp.name:
        taken = await conn.scalar(
            select(experiments.c.experiment_id).where(experiments.c.name == new_name)
        )
        if taken is not None:
            raise AlreadyExists(
                "EXPERIMENT_ALREADY_EXISTS",
                f"experiment {shown(new_name)} already exists",
                "new_name",
            )
        await conn.execute(
            update(experiments)
            .where(experiments.c.experiment_id == exp_id)
            .values(name=new_name, last_update_time=now_ms())
        )
    return await get_experiment(conn, exp_id)


async def set_experiment_tag(conn: AsyncConnection, exp_id: int, key: str, value: str) -> None:
    check_key(key, "key")
    check_value(value, "value", limits.MAX_TAG_VALUE_LENGTH, "tag value")
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
    deleted = 0
    if findable(key):
        result = await conn.execute(
            experiment_tags.delete().where(
                and_(experiment_tags.c.experiment_id == exp_id, experiment_tags.c.key == key)
            )
        )
        deleted = result.rowcount
    if deleted == 0:
        raise NotFound("TAG_NOT_FOUND", f"experiment '{exp_id}' has no tag {shown(key)}", "key")
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
