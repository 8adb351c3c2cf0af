"""Stages (None, Staging, Production, Archived): transitions, with archiving of the versions
a promotion replaces, and the latest version per stage."""

from __future__ import annotations

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline.v1 import registry_pb2 as rpb

from ..errors import InvalidArgument
from ..models import model_versions
from ..sql import Query, Reader, among, rows
from . import versions
from .versions import VersionRow

_V = model_versions.c
STAGES = (
    rpb.MODEL_STAGE_NONE,
    rpb.MODEL_STAGE_STAGING,
    rpb.MODEL_STAGE_PRODUCTION,
    rpb.MODEL_STAGE_ARCHIVED,
)
# The stage names of models:/<name>/<stage> URIs (matched in any case), as MLflow writes them.
BY_NAME = {
    "none": rpb.MODEL_STAGE_NONE,
    "staging": rpb.MODEL_STAGE_STAGING,
    "production": rpb.MODEL_STAGE_PRODUCTION,
    "archived": rpb.MODEL_STAGE_ARCHIVED,
}
# (stage, id of the highest-numbered version in it) of one model.
_LATEST = Query(
    lambda _: (
        select(_V.stage, func.max(_V.version))
        .where(_V.model_id == bindparam("model_id"))
        .group_by(_V.stage)
    )
)
_IDS = Query(
    lambda d: select(_V.version_id, _V.version).where(
        and_(_V.model_id == bindparam("model_id"), among(_V.version, "numbers", d))
    )
)


def check_stage(stage: int, field_name: str = "stage") -> None:
    if stage not in STAGES:
        raise InvalidArgument(
            "INVALID_STAGE",
            f"stage {stage} is not one of NONE, STAGING, PRODUCTION, ARCHIVED",
            field_name,
        )


async def transition(
    conn: AsyncConnection,
    model_id: int,
    version: VersionRow,
    stage: int,
    archive_existing: bool,
) -> list[int]:
    """Moves the version (READY, the model locked) to ``stage``; with ``archive_existing``
    and a stage of Staging or Production, the model's other versions in it go to Archived.
    Returns the numbers of the versions archived so."""
    await versions.set_stage(conn, [version.version_id], stage)
    if not archive_existing or stage not in (rpb.MODEL_STAGE_STAGING, rpb.MODEL_STAGE_PRODUCTION):
        return []
    found = await conn.execute(
        select(_V.version_id, _V.version).where(
            and_(
                _V.model_id == model_id,
                _V.stage == stage,
                _V.version_id != version.version_id,
            )
        )
    )
    others = list(found)
    if others:
        await versions.set_stage(conn, [vid for vid, _ in others], rpb.MODEL_STAGE_ARCHIVED)
    return sorted(number for _, number in others)


async def latest(reader: Reader, model_id: int, wanted: list[int]) -> list[int]:
    """Ids of the highest-numbered version of each stage in ``wanted`` (every stage when
    empty) that has one, in stage order."""
    for i, stage in enumerate(wanted):
        check_stage(stage, f"stages[{i}]")
    found = await rows(reader, _LATEST, {"model_id": model_id})
    top = {int(stage): int(number) for stage, number in found}
    asked = [s for s in STAGES if not wanted or s in wanted]
    numbers = [top[s] for s in asked if s in top]
    if not numbers:
        return []
    found = await rows(reader, _IDS, {"model_id": model_id, "numbers": numbers})
    by_number = {int(n): int(v) for v, n in found}
    return [by_number[n] for n in numbers]
