"""Model versions: numbered creation, updates, deletion, tags, and their loading as
ModelVersion messages (with tags and aliases). Functions take a connection inside an open
transaction and never commit; writes lock the model first (``models.lock``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline.v1 import registry_pb2 as rpb
from trackline.v1 import resources_pb2 as pb

from .. import limits, tags
from ..clock import now_ms
from ..errors import FailedPrecondition, InvalidArgument, NotFound, shown
from ..models import model_aliases, model_version_tags, model_versions, registered_models
from ..sql import Query, Reader, among, by_code_point, first, rows
from ..validation import Problems, check_run_id, check_tags, findable
from .models import check_description

_V = model_versions.c
_A = model_aliases.c
PENDING = rpb.MODEL_VERSION_STATUS_PENDING_REGISTRATION
READY = rpb.MODEL_VERSION_STATUS_READY
FAILED = rpb.MODEL_VERSION_STATUS_FAILED_REGISTRATION
_STATUSES = frozenset({PENDING, READY, FAILED})
_COLUMNS = (
    _V.version_id, _V.name, _V.version, _V.creation_time, _V.last_updated_time,
    _V.description, _V.source, _V.run_id, _V.status, _V.status_message, _V.stage, _V.user_id,
)  # fmt: skip
_VERSIONS_OF = Query(lambda d: select(*_COLUMNS).where(among(_V.version_id, "ids", d)))
_ROW = Query(
    lambda _: select(_V.version_id, _V.version, _V.status, _V.stage).where(
        and_(_V.model_id == bindparam("model_id"), _V.version == bindparam("version"))
    )
)
_ALIASES_OF = Query(
    lambda d: (
        select(_A.version_id, _A.alias)
        .where(among(_A.version_id, "ids", d))
        .order_by(by_code_point(_A.alias, d))
    )
)
_NEXT_NUMBER = Query(
    lambda _: (
        update(registered_models)
        .where(registered_models.c.model_id == bindparam("model_id"))
        .values(next_version=registered_models.c.next_version + 1)
        .returning(registered_models.c.next_version)
    )
)


@dataclass(frozen=True)
class VersionRow:
    """What a write needs of a version: its id, number, status and stage."""

    version_id: int
    version: int
    status: int
    stage: int


def not_found(name: str, version: int, field_name: str = "version") -> NotFound:
    return NotFound(
        "MODEL_VERSION_NOT_FOUND",
        f"registered model {shown(name)} has no version {version}",
        field_name,
    )


def check_status(status: int, field_name: str = "status") -> None:
    if status not in _STATUSES:
        raise InvalidArgument(
            "INVALID_MODEL_VERSION_STATUS",
            f"status {status} is not a ModelVersionStatus",
            field_name,
        )


def check_source(source: str, field_name: str = "source") -> None:
    """Where a version's artifacts are: 1 to MAX_MODEL_SOURCE_LENGTH characters, no NUL."""
    if not source or len(source) > limits.MAX_MODEL_SOURCE_LENGTH or not findable(source):
        raise InvalidArgument(
            "INVALID_SOURCE",
            f"source must be 1 to {limits.MAX_MODEL_SOURCE_LENGTH} characters without NUL",
            field_name,
        )


def check_new(
    source: str,
    run_id: str,
    description: str,
    tag_pairs: list[tuple[str, str]],
    status: int,
    status_message: str,
) -> None:
    """Every problem of a CreateModelVersion request, raised together."""
    problems = Problems()
    problems.check(check_source, source)
    if run_id:
        problems.check(check_run_id, run_id, "run_id")
    problems.check(check_description, description, "description")
    problems.check(
        check_description, status_message, "status_message", limits.MAX_STATUS_MESSAGE_LENGTH
    )
    if status:
        problems.check(check_status, status)
    check_tags(tag_pairs, problems=problems)
    problems.raise_if_any()


async def create(
    conn: AsyncConnection,
    model_id: int,
    name: str,
    source: str,
    run_id: str,
    description: str,
    tag_pairs: list[tuple[str, str]],
    status: int,
    status_message: str,
    user_id: str,
) -> int:
    """Creates the model's next version (checked by ``check_new``, the model locked), by
    ``user_id`` (the principal's name), and returns its id. The number comes from the model
    row's next_version, bumped under its lock: a concurrent create waits for this transaction
    and gets the next number, and a rollback gives this one back."""
    bumped = await first(conn, _NEXT_NUMBER, {"model_id": model_id})
    assert bumped is not None  # the model is locked, so it exists
    number = int(bumped[0])
    ts = now_ms()
    result = await conn.execute(
        insert(model_versions).values(
            model_id=model_id,
            name=name,
            version=number - 1,
            creation_time=ts,
            last_updated_time=ts,
            description=description,
            source=source,
            run_id=run_id,
            status=status or READY,
            status_message=status_message,
            stage=rpb.MODEL_STAGE_NONE,
            user_id=user_id,
        )  # fmt: skip
    )
    assert result.inserted_primary_key is not None
    version_id = int(result.inserted_primary_key[0])
    await tags.insert_new(conn, model_version_tags, version_id, dict(tag_pairs))
    return version_id


async def row(reader: Reader, model_id: int, name: str, version: int) -> VersionRow:
    """The model's version numbered ``version``; NOT_FOUND MODEL_VERSION_NOT_FOUND."""
    found = None
    if 0 < version <= 2**63 - 1:
        found = await first(reader, _ROW, {"model_id": model_id, "version": version})
    if found is None:
        raise not_found(name, version)
    return VersionRow(*found)


def require_ready(version: VersionRow, name: str, doing: str) -> None:
    if version.status != READY:
        status = rpb.ModelVersionStatus.Name(version.status)  # type: ignore[arg-type]
        raise FailedPrecondition(
            "MODEL_VERSION_NOT_READY",
            f"version {version.version} of {shown(name)} is {status}, not READY: it cannot {doing}",
            "version",
        )


async def update_fields(
    conn: AsyncConnection,
    version: VersionRow,
    name: str,
    description: str | None,
    status: int,
    status_message: str | None,
) -> bool:
    """Sets what is given; returns whether the status changed. Only a PENDING_REGISTRATION
    version changes status (FAILED_PRECONDITION MODEL_VERSION_STATUS_FINAL), to READY or
    FAILED_REGISTRATION."""
    problems = Problems()
    if description is not None:
        problems.check(check_description, description, "description")
    if status_message is not None:
        problems.check(
            check_description, status_message, "status_message", limits.MAX_STATUS_MESSAGE_LENGTH
        )
    if status:
        problems.check(check_status, status)
        if status == PENDING:
            problems.add(
                InvalidArgument(
                    "INVALID_MODEL_VERSION_STATUS",
                    "a version cannot go back to PENDING_REGISTRATION",
                    "status",
                )
            )
    problems.raise_if_any()
    changed = bool(status) and status != version.status
    if changed and version.status != PENDING:
        was = rpb.ModelVersionStatus.Name(version.status)  # type: ignore[arg-type]
        raise FailedPrecondition(
            "MODEL_VERSION_STATUS_FINAL",
            f"version {version.version} of {shown(name)} is {was}, which is final",
            "status",
        )
    values: dict[str, object] = {"last_updated_time": now_ms()}
    if description is not None:
        values["description"] = description
    if status_message is not None:
        values["status_message"] = status_message
    if changed:
        values["status"] = status
    await conn.execute(
        update(model_versions).where(_V.version_id == version.version_id).values(values)
    )
    return changed


async def set_stage(conn: AsyncConnection, version_ids: list[int], stage: int) -> None:
    await conn.execute(
        update(model_versions)
        .where(_V.version_id.in_(version_ids))
        .values(stage=stage, last_updated_time=now_ms())
    )


async def delete_version(conn: AsyncConnection, version_id: int) -> list[str]:
    """Deletes the version with its tags and the aliases pointing at it; returns those
    aliases."""
    aliases = [
        a for (a,) in (await conn.execute(select(_A.alias).where(_A.version_id == version_id)))
    ]
    await conn.execute(delete(model_aliases).where(_A.version_id == version_id))
    await conn.execute(
        delete(model_version_tags).where(model_version_tags.c.version_id == version_id)
    )
    await conn.execute(delete(model_versions).where(_V.version_id == version_id))
    return sorted(aliases)


async def touch(conn: AsyncConnection, version_id: int) -> None:
    await conn.execute(
        update(model_versions).where(_V.version_id == version_id).values(last_updated_time=now_ms())
    )


async def get(reader: Reader, version_id: int) -> rpb.ModelVersion:
    """The version of id ``version_id`` (one the caller found, or a request id recorded:
    NOT_FOUND MODEL_VERSION_NOT_FOUND when it was deleted since)."""
    found = await load(reader, [version_id])
    if not found:
        raise NotFound("MODEL_VERSION_NOT_FOUND", "the model version was deleted", "version")
    return found[0]


async def load(reader: Reader, ids: list[int]) -> list[rpb.ModelVersion]:
    """The versions with their tags and aliases, in the order of ``ids`` (absent ones left
    out); three queries whatever their number."""
    if not ids:
        return []
    found = {
        vid: rpb.ModelVersion(
            name=name,
            version=number,
            creation_time=created,
            last_updated_time=updated,
            description=text,
            source=source,
            run_id=run_id,
            status=status,
            status_message=message,
            stage=stage,
            user_id=user_id,
        )  # fmt: skip
        for (
            vid,
            name,
            number,
            created,
            updated,
            text,
            source,
            run_id,
            status,
            message,
            stage,
            user_id,
        ) in await rows(reader, _VERSIONS_OF, {"ids": ids})  # fmt: skip
    }
    for vid, key, value in await tags.read(reader, model_version_tags, list(found)):
        found[vid].tags.append(pb.Tag(key=key, value=value))
    for vid, alias in await rows(reader, _ALIASES_OF, {"ids": list(found)}):
        found[vid].aliases.append(alias)
    return [found[v] for v in ids if v in found]
