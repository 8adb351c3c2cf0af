"""Runs and experiments as entities of the search filter language: what the filter and
order_by of SearchRuns and SearchExperiments may name, and the columns and tables behind it."""

from __future__ import annotations

from trackline.v1 import resources_pb2 as pb

from ..models import experiment_tags, experiments, latest_metrics, params, runs, tags
from ..search import (
    Attribute,
    DecimalId,
    EntitySchema,
    Enum,
    Examples,
    Int64,
    KeyKind,
    Number,
    Text,
)
from ..validation import MAX_EXPERIMENT_ID

_MILLIS = Int64(unit="milliseconds since the epoch")
EXPERIMENT_ID = DecimalId("an experiment ID", maximum=MAX_EXPERIMENT_ID)
RUN_STATUS = Enum(
    "status",
    {
        name.removeprefix("RUN_STATUS_"): int(value)
        for name, value in pb.RunStatus.items()
        if value != pb.RUN_STATUS_UNSPECIFIED
    },
)
# Prefixes of attributes besides "attributes"; "run." names an experiment's attributes too.
_ATTRIBUTE_ALIASES = ("attribute", "attr", "run")
# Both entities' messages suggest the same examples.
_EXAMPLES = Examples(
    comparison="metrics.loss < 1", identifiers="metrics.loss or start_time", key_prefix="tags"
)

METRICS = KeyKind("metric", Number(), latest_metrics, owner="run_id", aliases=("metric",))
PARAMS = KeyKind(
    "param", Text(), params, owner="run_id", aliases=("param", "parameters", "parameter")
)

RUNS = EntitySchema(
    name="run",
    id_column=runs.c.run_id,
    attributes=(
        Attribute("run_id", Text(), runs.c.run_id, aliases=("id",)),
        Attribute("run_name", Text(), runs.c.run_name, aliases=("name",)),
        Attribute("status", RUN_STATUS, runs.c.status),
        Attribute("start_time", _MILLIS, runs.c.start_time, aliases=("created",)),
        Attribute("end_time", _MILLIS, runs.c.end_time, nullable=True),
        Attribute("experiment_id", EXPERIMENT_ID, runs.c.experiment_id),
        Attribute("parent_run_id", Text(), runs.c.parent_run_id, nullable=True),
        Attribute("artifact_uri", Text(), runs.c.artifact_uri),
    ),
    examples=_EXAMPLES,
    kinds=(
        METRICS,
        PARAMS,
        KeyKind("tag", Text(), tags, owner="run_id", aliases=("tag",)),
    ),
    default_order=(("start_time", True),),
    attribute_aliases=_ATTRIBUTE_ALIASES,
)

EXPERIMENTS = EntitySchema(
    name="experiment",
    id_column=experiments.c.experiment_id,
    attributes=(
        Attribute("experiment_id", EXPERIMENT_ID, experiments.c.experiment_id),
        Attribute("name", Text(), experiments.c.name),
        Attribute("creation_time", _MILLIS, experiments.c.creation_time, aliases=("created",)),
        Attribute("last_update_time", _MILLIS, experiments.c.last_update_time),
        Attribute("artifact_location", Text(), experiments.c.artifact_location),
    ),
    examples=_EXAMPLES,
    kinds=(KeyKind("tag", Text(), experiment_tags, owner="experiment_id", aliases=("tag",)),),
    default_order=(("creation_time", True),),
    attribute_aliases=_ATTRIBUTE_ALIASES,
    other_kinds=(METRICS, PARAMS),
)
