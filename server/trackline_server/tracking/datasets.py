"""Datasets as the inputs of runs (MLflow's log_input): the checks of LogInputs, its writes,
and the query that reads runs' inputs into their messages (an entry of ``runs.fill``).

A dataset is stored once per experiment by (name, digest): the first logging stores its
source, schema and profile, and every later one, by any run of the experiment, refers to that
row. A run's input names the dataset with a context ("training", "eval", ...; "" for none)
and tags of its own; logging the dataset again replaces the context and sets the tags given,
keeping the others. Functions take a connection inside an open transaction and never commit.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Executable, Text, and_, bindparam, cast, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline.v1 import resources_pb2 as pb

from .. import limits
from ..errors import InvalidArgument, shown
from ..models import datasets, run_input_tags, run_inputs
from ..sql import Query, among, by_code_point, execute_many, octets, positioned, rows
from ..validation import Problems, check_tags, findable

_D = datasets.c
_I = run_inputs.c
_T = run_input_tags.c
_CONTROL_CHARS = frozenset([*map(chr, range(32)), "\x7f"])
# Upper bound of the protobuf framing of one input around its stored strings (its tags'
# framing is counted per tag: runs.ENTRY_OVERHEAD).
INPUT_OVERHEAD = 64
TAG_OVERHEAD = 16


@dataclass
class Input:
    """One dataset input of a LogInputs call, checked; ``tags`` in the order given, a
    repeated key's last value winning."""

    name: str
    digest: str
    source_type: str
    source: str
    schema: str
    profile: str
    context: str
    tags: dict[str, str] = field(default_factory=dict)


def checked(given: Sequence[pb.DatasetInput]) -> list[Input]:
    """The inputs of a call, checked against limits.py without the database (INVALID_NAME,
    INVALID_DATASET, BATCH_TOO_LARGE, and run tags' reasons for input tags; fields named
    ``datasets[i].dataset.digest`` and so on). A dataset given twice is one input: the last
    context wins and the tags are merged, later values winning. Every problem of every input
    is reported (``validation.Problems``)."""
    if len(given) > limits.MAX_INPUTS_PER_CALL:
        raise InvalidArgument(
            "BATCH_TOO_LARGE",
            f"{len(given)} datasets in one call; at most {limits.MAX_INPUTS_PER_CALL}",
            "datasets",
        )
    problems = Problems()
    merged: dict[tuple[str, str], Input] = {}
    for i, item in enumerate(given):
        _check_input(item, f"datasets[{i}]", problems)
        d = item.dataset
        found = merged.get((d.name, d.digest))
        if found is None:
            found = Input(d.name, d.digest, d.source_type, d.source, d.schema, d.profile, "")
            merged[(d.name, d.digest)] = found
        found.context = item.context
        found.tags.update((t.key, t.value) for t in item.tags)
    problems.raise_if_any()
    return list(merged.values())


def _check_input(item: pb.DatasetInput, where: str, problems: Problems) -> None:
    d = item.dataset
    problems.check(_check_name, d.name, f"{where}.dataset.name")
    problems.check(_check_digest, d.digest, f"{where}.dataset.digest")
    problems.check(_check_text, d.source_type, f"{where}.dataset.source_type", "source_type",
                   limits.MAX_DATASET_SOURCE_TYPE_LENGTH, control=True)  # fmt: skip
    problems.check(_check_text, d.source, f"{where}.dataset.source", "source",
                   limits.MAX_DATASET_SOURCE_LENGTH)  # fmt: skip
    problems.check(_check_bytes, d.schema, f"{where}.dataset.schema", "schema",
                   limits.MAX_DATASET_SCHEMA_BYTES)  # fmt: skip
    problems.check(_check_bytes, d.profile, f"{where}.dataset.profile", "profile",
                   limits.MAX_DATASET_PROFILE_BYTES)  # fmt: skip
    problems.check(_check_text, item.context, f"{where}.context", "context",
                   limits.MAX_INPUT_CONTEXT_LENGTH)  # fmt: skip
    if len(item.tags) > limits.MAX_INPUT_TAGS:
        problems.add(InvalidArgument(
            "INVALID_DATASET",
            f"an input has {len(item.tags)} tags; at most {limits.MAX_INPUT_TAGS}",
            f"{where}.tags",
        ))  # fmt: skip
    check_tags([(t.key, t.value) for t in item.tags], f"{where}.tags", problems=problems)


def _check_name(name: str, field_name: str) -> None:
    if not name.strip():
        raise InvalidArgument("INVALID_NAME", "dataset name must not be empty", field_name)
    if len(name) > limits.MAX_NAME_LENGTH or not findable(name):
        raise InvalidArgument(
            "INVALID_NAME",
            f"dataset name {shown(name)} is longer than {limits.MAX_NAME_LENGTH} characters"
            " or holds NUL",
            field_name,
        )


def _check_digest(digest: str, field_name: str) -> None:
    if not digest:
        raise InvalidArgument("INVALID_DATASET", "dataset digest must not be empty", field_name)
    _check_text(digest, field_name, "digest", limits.MAX_DATASET_DIGEST_LENGTH, control=True)


def _check_text(text: str, field_name: str, what: str, limit: int, control: bool = False) -> None:
    """At most ``limit`` characters, without NUL (without any control character when
    ``control``)."""
    if len(text) > limit:
        raise InvalidArgument(
            "INVALID_DATASET", f"{what} is {len(text)} characters; at most {limit}", field_name
        )
    if control and not _CONTROL_CHARS.isdisjoint(text):
        raise InvalidArgument(
            "INVALID_DATASET", f"{what} {shown(text)} holds a control character", field_name
        )
    if not findable(text):
        raise InvalidArgument("INVALID_DATASET", f"{what} holds a NUL character", field_name)


def _check_bytes(text: str, field_name: str, what: str, limit: int) -> None:
    """At most ``limit`` bytes of UTF-8, without NUL (the message carries it as UTF-8: a
    character counts 1 to 4)."""
    size = len(text.encode())
    if size > limit:
        raise InvalidArgument(
            "INVALID_DATASET", f"{what} is {size} bytes; at most {limit}", field_name
        )
    if not findable(text):
        raise InvalidArgument("INVALID_DATASET", f"{what} holds a NUL character", field_name)


async def log(conn: AsyncConnection, run_id: str, experiment_id: int, inputs: list[Input]) -> None:
    """Records ``inputs`` (from ``checked``) as inputs of a run of ``experiment_id`` that the
    caller found writable (``runs.get_active``): datasets the experiment lacks are stored,
    each input's context is set and its tags upserted. At most five statements whatever the
    number of inputs; a dataset another call stores meanwhile is kept (ON CONFLICT DO NOTHING) and
    used."""
    if not inputs:
        return
    ids = await _dataset_ids(conn, experiment_id, inputs)
    missing = [i for i in inputs if (i.name, i.digest) not in ids]
    if missing:
        new = [
            {
                "dataset_id": uuid.uuid4().hex,
                "experiment_id": experiment_id,
                "name": i.name,
                "digest": i.digest,
                "source_type": i.source_type,
                "source": i.source,
                "schema": i.schema or None,
                "profile": i.profile or None,
            }
            for i in missing
        ]
        await execute_many(conn, _ADD_DATASET, new)
        ids.update(await _dataset_ids(conn, experiment_id, missing))
    await execute_many(
        conn,
        _SET_INPUT,
        [
            {"run_id": run_id, "dataset_id": ids[(i.name, i.digest)], "context": i.context}
            for i in inputs
        ],
    )
    tag_rows = [
        {"run_id": run_id, "dataset_id": ids[(i.name, i.digest)], "key": k, "value": v}
        for i in inputs
        for k, v in i.tags.items()
    ]
    await execute_many(conn, _SET_TAG, tag_rows)


async def _dataset_ids(
    conn: AsyncConnection, experiment_id: int, inputs: list[Input]
) -> dict[tuple[str, str], str]:
    """(name, digest) -> dataset id of those of ``inputs`` that the experiment has."""
    names = sorted({i.name for i in inputs})
    found = await rows(conn, _DATASETS_NAMED, {"experiment_id": experiment_id, "names": names})
    wanted = {(i.name, i.digest) for i in inputs}
    return {(n, d): dataset_id for dataset_id, n, d in found if (n, d) in wanted}


def _dialect(name: str) -> Any:
    return sqlite if name == "sqlite" else postgresql


_DATASETS_NAMED = Query(
    lambda d: select(_D.dataset_id, _D.name, _D.digest).where(
        and_(_D.experiment_id == bindparam("experiment_id"), among(_D.name, "names", d))
    )
)
_ADD_DATASET = Query(
    lambda d: (
        _dialect(d)
        .insert(datasets)
        .on_conflict_do_nothing(index_elements=[_D.experiment_id, _D.name, _D.digest])
    )
)


def _upsert(table: Any, keys: Sequence[str], column: str) -> Query:
    """INSERT into ``table``, setting ``column`` where a row with the same ``keys`` exists."""

    def build(d: str) -> Executable:
        stmt = _dialect(d).insert(table)
        upsert: Executable = stmt.on_conflict_do_update(
            index_elements=[table.c[k] for k in keys], set_={column: stmt.excluded[column]}
        )
        return upsert

    return Query(build)


_SET_INPUT = _upsert(run_inputs, ("run_id", "dataset_id"), "context")
_SET_TAG = _upsert(run_input_tags, ("run_id", "dataset_id", "key"), "value")


# Reading: the inputs of runs, as an entry of ``runs.fill``.


def _tags_of_input(d: str) -> tuple[Any, Any]:
    """Correlated subqueries of an input's tags: as a JSON array of [key, value] pairs (NULL
    or [] for none; unordered), and their size as ``runs.fill`` counts it."""
    own = and_(_T.run_id == _I.run_id, _T.dataset_id == _I.dataset_id)
    pairs: ColumnElement[str]
    if d == "postgresql":
        # As text, as SQLite's comes: the driver would decode json its own way.
        pairs = cast(func.json_agg(func.json_build_array(_T.key, _T.value)), Text)
    else:
        pairs = func.json_group_array(func.json_array(_T.key, _T.value))
    size = func.coalesce(func.sum(octets(_T.key, d) + octets(_T.value, d) + TAG_OVERHEAD), 0)
    return (
        select(pairs).where(own).scalar_subquery(),
        select(size).where(own).scalar_subquery(),
    )


def _inputs_of_runs(d: str) -> Executable:
    listed, position, value = positioned("ids", d)
    tags, tags_size = _tags_of_input(d)
    size = (
        octets(_D.name, d) + octets(_D.digest, d) + octets(_D.source_type, d)
        + octets(_D.source, d) + func.coalesce(octets(_D.schema, d), 0)
        + func.coalesce(octets(_D.profile, d), 0) + octets(_I.context, d) + tags_size
        + INPUT_OVERHEAD
    )  # fmt: skip
    return (
        select(
            position,
            _D.name,
            _D.digest,
            _D.source_type,
            _D.source,
            _D.schema,
            _D.profile,
            _I.context,
            tags,
            size,
        )  # fmt: skip
        .select_from(
            listed.join(run_inputs, _I.run_id == value).join(
                datasets, _D.dataset_id == _I.dataset_id
            )
        )
        .order_by(position, by_code_point(_D.name, d), by_code_point(_D.digest, d))
    )


# (position of the run among ``ids``, name, digest, source_type, source, schema, profile,
# context, tags as JSON, size): the rows ``put`` takes, in the runs' order, then by name and
# digest.
OF_RUNS = Query(_inputs_of_runs)


def put(run: pb.Run, row: Any) -> None:
    """Adds an ``OF_RUNS`` row to the run's inputs, its tags in key order."""
    _, name, digest, source_type, source, schema, profile, context, tags, _ = row
    run.inputs.add(
        dataset=pb.Dataset(
            name=name,
            digest=digest,
            source_type=source_type,
            source=source,
            schema=schema or "",
            profile=profile or "",
        ),
        context=context,
        tags=[pb.InputTag(key=k, value=v) for k, v in sorted(json.loads(tags or "[]"))],
    )
