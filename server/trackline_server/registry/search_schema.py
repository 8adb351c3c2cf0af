"""Registered models and model versions as entities of the search filter language: what the
filter and order_by of SearchRegisteredModels and SearchModelVersions may name (MLflow's
names: ``name``, ``tags.<key>``, ``version_number``, ``run_id``, ``source``), and the columns
and tables behind it."""

from __future__ import annotations

from trackline.v1 import registry_pb2 as rpb

from ..models import model_version_tags, model_versions, registered_model_tags, registered_models
from ..search import Attribute, EntitySchema, Enum, Examples, Int64, KeyKind, Text

_MILLIS = Int64(unit="milliseconds since the epoch")
_M = registered_models.c
_V = model_versions.c
STATUS = Enum(
    "status",
    {
        name.removeprefix("MODEL_VERSION_STATUS_"): int(value)
        for name, value in rpb.ModelVersionStatus.items()
        if value != rpb.MODEL_VERSION_STATUS_UNSPECIFIED
    },
)
STAGE = Enum(
    "stage",
    {
        name.removeprefix("MODEL_STAGE_"): int(value)
        for name, value in rpb.ModelStage.items()
        if value != rpb.MODEL_STAGE_UNSPECIFIED
    },
)

REGISTERED_MODELS = EntitySchema(
    name="registered model",
    id_column=_M.model_id,
    attributes=(
        Attribute("name", Text(), _M.name),
        Attribute("creation_time", _MILLIS, _M.creation_time, aliases=("creation_timestamp",)),
        Attribute(
            "last_updated_time", _MILLIS, _M.last_updated_time, aliases=("last_updated_timestamp",)
        ),
        Attribute("description", Text(), _M.description),
    ),
    examples=Examples(
        comparison="name LIKE 'fraud%'", identifiers="name or last_updated_time", key_prefix="tags"
    ),
    kinds=(KeyKind("tag", Text(), registered_model_tags, owner="model_id", aliases=("tag",)),),
    default_order=(("name", False),),
)

MODEL_VERSIONS = EntitySchema(
    name="model version",
    id_column=_V.version_id,
    attributes=(
        Attribute("name", Text(), _V.name),
        Attribute("version_number", Int64(), _V.version, aliases=("version",)),
        Attribute("run_id", Text(), _V.run_id),
        Attribute("source", Text(), _V.source),
        Attribute("status", STATUS, _V.status),
        Attribute("stage", STAGE, _V.stage, aliases=("current_stage",)),
        Attribute("creation_time", _MILLIS, _V.creation_time, aliases=("creation_timestamp",)),
        Attribute(
            "last_updated_time", _MILLIS, _V.last_updated_time, aliases=("last_updated_timestamp",)
        ),
    ),
    examples=Examples(
        comparison="version_number > 3", identifiers="version_number or name", key_prefix="tags"
    ),
    kinds=(KeyKind("tag", Text(), model_version_tags, owner="version_id", aliases=("tag",)),),
    default_order=(("name", False), ("version_number", True)),
)
