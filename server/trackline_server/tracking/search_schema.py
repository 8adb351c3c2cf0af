"""Runs and experiments as entities of the search filter language: what the filter and
order_by of SearchRuns and SearchExperiments may name, and the columns and tables behind it.

The names follow MLflow's filter language: its prefixes (singular, plural, ``attr``, ``run``),
its attribute spellings (``run name``, ``created``, ``run_uuid``), ``datasets.name`` /
``digest`` / ``context`` over a run's inputs, and its system tags as aliases of what Trackline
keeps in their place (``tags.mlflow.runName`` is the attribute run_name, ``tags.mlflow.source.
name`` the tag trackline.source.name). Lifecycle stage is no attribute: view_type selects it.
"""

from __future__ import annotations

from trackline.v1 import resources_pb2 as pb

from ..models import (
    datasets,
    experiment_tags,
    experiments,
    latest_metrics,
    params,
    run_inputs,
    runs,
    tags,
)
from ..search import (
    Attribute,
    DecimalId,
    EntitySchema,
    Enum,
    Examples,
    Int64,
    KeyAlias,
    KeyKind,
    Number,
    Related,
    RelatedField,
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
    patterns=True,
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

# A run's dataset inputs: datasets.name and datasets.digest are those of an input's dataset,
# datasets.context the input's own ("training", "eval"; MLflow keeps it in an input tag).
DATASETS = Related(
    "dataset",
    run_inputs.join(datasets, run_inputs.c.dataset_id == datasets.c.dataset_id),
    run_inputs.c.run_id,
    (
        RelatedField("name", Text(), datasets.c.name),
        RelatedField("digest", Text(), datasets.c.digest),
        RelatedField("context", Text(), run_inputs.c.context),
    ),
    aliases=("dataset",),
)

# MLflow's system tags, as what Trackline keeps in their place: the run's own columns, or the
# trackline.* tags the client sets.
_SYSTEM_TAGS = (
    KeyAlias("tag", "mlflow.runName", "attribute", "run_name"),
    KeyAlias("tag", "mlflow.user", "attribute", "user_id"),
    KeyAlias("tag", "mlflow.parentRunId", "attribute", "parent_run_id"),
    *(
        KeyAlias("tag", f"mlflow.{name}", "tag", f"trackline.{name}")
        for name in ("source.name", "source.type", "source.git.commit", "source.git.branch")
    ),
)

RUNS = EntitySchema(
    name="run",
    id_column=runs.c.run_id,
    attributes=(
        Attribute("run_id", Text(), runs.c.run_id, aliases=("id", "run_uuid")),
        Attribute("run_name", Text(), runs.c.run_name, aliases=("name", "run name")),
        Attribute("status", RUN_STATUS, runs.c.status),
        Attribute("start_time", _MILLIS, runs.c.start_time, aliases=("created",)),
        Attribute("end_time", _MILLIS, runs.c.end_time, nullable=True),
        Attribute("experiment_id", EXPERIMENT_ID, runs.c.experiment_id),
        Attribute("parent_run_id", Text(), runs.c.parent_run_id, nullable=True),
        Attribute("artifact_uri", Text(), runs.c.artifact_uri),
        Attribute("user_id", Text(), runs.c.user_id),
    ),
    examples=_EXAMPLES,
    kinds=(
        METRICS,
        PARAMS,
        KeyKind("tag", Text(), tags, owner="run_id", aliases=("tag",)),
    ),
    default_order=(("start_time", True),),
    attribute_aliases=_ATTRIBUTE_ALIASES,
    related=(DATASETS,),
    key_aliases=_SYSTEM_TAGS,
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
    other_kinds=(METRICS, PARAMS, DATASETS),
)
