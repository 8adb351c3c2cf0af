"""Queries of runs with their params and tags. Functions take a connection inside an open
transaction and never commit: the edge (one unit of work per RPC) or the group-commit
writer's flush (LogBatch) does."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline.v1 import resources_pb2 as pb

from .. import lifecycle, tags
from ..clock import now_ms
from ..errors import FailedPrecondition, InvalidArgument, NotFound, shown
from ..metrics import latest_values
from ..models import experiments, params, runs
from ..models import tags as run_tags
from ..sql import Query, Reader, among, batches, first, in_order_of, octets, rows
from ..validation import (
    Problems,
    check_run_name,
    check_run_status,
    check_tags,
    check_time,
    check_user_id,
    findable,
)
from . import datasets, messages
from . import experiments as experiment_queries


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
    user_id: str


# A repeated field's ``add`` (a search builds its page in the response: building 500 runs as
# messages of their own and copying them in took twice as long), or ``pb.Run`` itself.
AddRun = Callable[..., pb.Run]


# The run's own columns, in RunRow's order (and messages.run's).
COLUMNS = (
    runs.c.run_id, runs.c.experiment_id, runs.c.run_name, runs.c.status, runs.c.start_time,
    runs.c.end_time, runs.c.lifecycle_stage, runs.c.parent_run_id, runs.c.artifact_uri,
    runs.c.user_id,
)  # fmt: skip
_RUN_BY_ID = Query(lambda _: select(*COLUMNS).where(runs.c.run_id == bindparam("run_id")))
_RUNS_OF = Query(lambda d: select(*COLUMNS).where(among(runs.c.run_id, "ids", d)))
# The run and its experiment's stage, for a write to the run.
_ACTIVE = Query(
    lambda _: (
        select(*COLUMNS, experiments.c.lifecycle_stage)
        .join(experiments, experiments.c.experiment_id == runs.c.experiment_id)
        .where(runs.c.run_id == bindparam("run_id"))
    )
)


def not_found(run_id: str, field_name: str = "run_id") -> NotFound:
    return NotFound("RUN_NOT_FOUND", f"no run with id {shown(run_id)}", field_name)


async def create(
    conn: AsyncConnection,
    exp_id: int,
    run_name: str,
    start_time: int,
    tag_pairs: dict[str, str],
    parent_run_id: str,
    user_id: str = "",
) -> str:
    """Creates a RUNNING run in a live experiment and returns its id."""
    problems = Problems()  # every problem of the request, in one refusal
    problems.check(check_run_name, run_name)
    problems.check(check_user_id, user_id)
    problems.check(check_time, start_time, "start_time")
    check_tags(tag_pairs.items(), problems=problems)
    problems.raise_if_any()
    exp = await experiment_queries.get_active(conn, exp_id)
    if parent_run_id:
        await get_row(conn, parent_run_id, field_name="parent_run_id")
    run_id = uuid.uuid4().hex
    await conn.execute(
        insert(runs).values(
            run_id=run_id,
            experiment_id=exp_id,
            run_name=run_name or f"run-{run_id[:8]}",
            status=pb.RUN_STATUS_RUNNING,
            start_time=start_time or now_ms(),
            end_time=None,
            lifecycle_stage=lifecycle.ACTIVE,
            parent_run_id=parent_run_id or None,
            artifact_uri=f"{exp.artifact_location}/{run_id}/artifacts",
            user_id=user_id,
        )
    )
    await tags.insert_new(conn, run_tags, run_id, tag_pairs)
    return run_id


async def get_row(reader: Reader, run_id: str, field_name: str = "run_id") -> RunRow:
    """The run's own row (no params, tags or metrics); NOT_FOUND RUN_NOT_FOUND, naming
    ``field_name``, when absent."""
    row = await first(reader, _RUN_BY_ID, {"run_id": run_id}) if findable(run_id) else None
    if row is None:
        raise not_found(run_id, field_name)
    return RunRow(*row)


async def get_active(conn: AsyncConnection, run_id: str) -> RunRow:
    """The run, for a write to it: FAILED_PRECONDITION when the run (RUN_DELETED) or its
    experiment (EXPERIMENT_DELETED) is soft-deleted. One query."""
    row = await first(conn, _ACTIVE, {"run_id": run_id}) if findable(run_id) else None
    if row is None:
        raise not_found(run_id)
    *fields, experiment_stage = row
    run = RunRow(*fields)
    error = unwritable(run_id, run.experiment_id, run.lifecycle_stage, experiment_stage)
    if error is not None:
        raise error
    return run


def unwritable(
    run_id: str, experiment_id: int, stage: int, experiment_stage: int
) -> FailedPrecondition | None:
    """Why a run in these lifecycle stages takes no writes (RUN_DELETED, EXPERIMENT_DELETED),
    or None: the one rule for unary writes (``get_active``) and the writer's flushes
    (``writable.refused_runs``)."""
    return lifecycle.inactive(stage, "RUN_DELETED", f"run {shown(run_id)}") or lifecycle.inactive(
        experiment_stage,
        "EXPERIMENT_DELETED",
        f"the experiment of run {shown(run_id)} ('{experiment_id}')",
    )


async def get(reader: Reader, run_id: str) -> pb.Run:
    """The run with its params, tags, latest metrics and inputs."""
    found = await load(reader, [run_id]) if findable(run_id) else []
    if not found:
        raise not_found(run_id)
    return found[0]


async def update_run(
    conn: AsyncConnection, run_id: str, status: int, end_time: int | None, run_name: str | None
) -> None:
    """Sets what is given (status 0: unchanged). A deleted run (or a run of a deleted
    experiment) is FAILED_PRECONDITION: restore it before resuming or ending it. An end_time
    before the start_time is accepted, as MLflow does; the run shows a negative duration."""
    problems = Problems()
    problems.check(check_run_status, status)
    if end_time is not None:
        problems.check(check_time, end_time, "end_time")
    if run_name is not None:
        problems.check(check_run_name, run_name)
    problems.raise_if_any()
    await get_active(conn, run_id)
    values: dict[str, object] = {}
    if status:
        values["status"] = status
    if end_time is not None:
        values["end_time"] = end_time
    if run_name is not None:
        values["run_name"] = run_name
    if values:
        await conn.execute(update(runs).where(runs.c.run_id == run_id).values(**values))


async def log_params_and_tags(
    conn: AsyncConnection,
    run_id: str,
    param_pairs: list[tuple[str, str]],
    tag_pairs: list[tuple[str, str]],
) -> None:
    """Adds params (immutable: a key logged with another value is INVALID_ARGUMENT
    PARAM_CONFLICT, before anything is written) and sets tags. Keys, values and sizes are
    checked by the caller."""
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
    await tags.upsert(conn, run_tags, run_id, tag_pairs)


async def set_stage(conn: AsyncConnection, run_id: str, stage: int) -> None:
    """Soft-deletes or restores a run (``lifecycle.move``)."""
    run = await get_row(conn, run_id)
    await lifecycle.move(
        conn, runs, runs.c.run_id, run_id, run.lifecycle_stage, stage, f"run {shown(run_id)}"
    )


async def delete_tag(conn: AsyncConnection, run_id: str, key: str) -> None:
    await get_active(conn, run_id)
    await tags.delete(conn, run_tags, run_id, key, f"run {shown(run_id)}")


async def load(reader: Reader, run_ids: list[str], add: AddRun = pb.Run) -> list[pb.Run]:
    """The runs with their params, tags, latest metrics and inputs, made by ``add`` in the
    order of ``run_ids`` (absent ones left out); five queries whatever the number of runs."""
    if not run_ids:
        return []
    own = {row[0]: row for row in await rows(reader, _RUNS_OF, {"ids": run_ids})}
    return await fill(reader, [own[r] for r in run_ids if r in own], add)


@dataclass(frozen=True)
class Budget:
    """A reply's room for runs: a page ends before the run that would take its estimated
    size past ``max_bytes`` (it keeps at least one run), and a first run past ``max_single``
    is refused with ``too_large(run_id, size)``."""

    max_bytes: int
    max_single: int
    too_large: Callable[[str, int], Exception]


# Upper bounds of the protobuf framing around the stored strings: a run's own fields, one
# param or tag (a latest metric's: latest_values.METRIC_OVERHEAD).
RUN_OVERHEAD = 256
ENTRY_OVERHEAD = 16


async def fill(
    reader: Reader,
    run_rows: list[Any],
    add: AddRun = pb.Run,
    budget: Budget | None = None,
    fields: frozenset[str] | None = None,
) -> list[pb.Run]:
    """``load``, for runs whose own rows (``COLUMNS``) the caller has read: four queries.
    Params, tags and metrics come in key order, as clients see them; inputs by dataset name,
    then digest (``datasets.OF_RUNS``). With ``fields`` (names of Run's fields: a read
    mask), only those: no query for params, tags, latest_metrics or inputs left out.

    With a ``budget``, the runs of the longest prefix of ``run_rows`` within it. Params,
    tags, metrics and inputs are read in the runs' order, in batches, each with its stored size,
    and reading stops at the first run that would not fit: sizing a page never reads its
    rows twice, and never holds more than a batch beyond what the reply can carry. The
    messages of runs past the page were made with ``add`` all the same; the caller drops
    them (``del reply.runs[len(page):]``)."""
    found = [messages.run(add, row) for row in run_rows]
    if fields is not None:
        dropped = [name for name in OWN_FIELDS if name not in fields]
        for msg in found:
            for name in dropped:
                msg.ClearField(name)
    used = [RUN_OVERHEAD + len(row[2].encode()) + len(row[8].encode()) for row in run_rows]
    limit = _within(used, budget, run_rows)
    for name, query, put in _ENTRIES:
        if not limit:
            break
        if fields is not None and name not in fields:
            continue
        ids = [row[0] for row in run_rows[:limit]]
        prefix, upto = 0, 0  # prefix == sum(used[:upto])
        async for batch in batches(reader, query, {"ids": ids}):
            for row in batch:
                i = row[0]
                put(found[i], row)
                used[i] += row[-1]
                if budget is None:
                    continue
                while upto < i:
                    prefix += used[upto]
                    upto += 1
                if i and prefix + used[i] > budget.max_bytes:
                    limit = i  # run i and those after it wait for the next page
                    break
                if not i and used[0] > budget.max_single:
                    raise budget.too_large(run_rows[0][0], used[0])
            else:
                continue
            break
        limit = _within(used[:limit], budget, run_rows)
    return found[:limit]


def _within(used: list[int], budget: Budget | None, run_rows: list[Any]) -> int:
    """How many of the runs of sizes ``used`` (a prefix, at least one) fit ``budget``."""
    if budget is None or not used:
        return len(used)
    if used[0] > budget.max_single:
        raise budget.too_large(run_rows[0][0], used[0])
    total = 0
    for n, size in enumerate(used):
        total += size
        if n and total > budget.max_bytes:
            return n
    return len(used)


def _text_size(table: Any) -> Callable[[str], Any]:
    return lambda d: octets(table.c.key, d) + octets(table.c.value, d) + ENTRY_OVERHEAD


# What a run's message is filled from: (its field, the query, how a row is added to it).
_ENTRIES: tuple[tuple[str, Query, Callable[[pb.Run, Any], object]], ...] = (
    (
        "params",
        in_order_of(params, params.c.run_id, (params.c.key, params.c.value), _text_size(params)),
        lambda msg, row: msg.params.add(key=row[1], value=row[2]),
    ),
    (
        "tags",
        in_order_of(
            run_tags, run_tags.c.run_id, (run_tags.c.key, run_tags.c.value), _text_size(run_tags)
        ),
        lambda msg, row: msg.tags.add(key=row[1], value=row[2]),
    ),
    ("latest_metrics", latest_values.OF_RUNS, latest_values.put),
    ("inputs", datasets.OF_RUNS, datasets.put),
)
# Run's fields made from its own row (``messages.run``); the others are ``_ENTRIES``'.
OWN_FIELDS = tuple(
    f.name for f in pb.Run.DESCRIPTOR.fields if f.name not in {e[0] for e in _ENTRIES}
)
