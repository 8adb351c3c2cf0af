"""Project run rows: looking one up (``get``; ``lock`` for a write to it), loading them as
ProjectRun messages with their labels (``load``), and changing one (``update``). Functions
take a reader or a connection inside an open transaction and never commit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy import update as update_stmt
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline.v1 import projects_pb2 as ppb
from trackline.v1 import resources_pb2 as pb

from ..errors import NotFound, shown
from ..models import project_run_labels, project_runs
from ..sql import Query, Reader, among, by_code_point, first, rows
from ..validation import findable

S = ppb.ProjectRunState
QUEUED = int(S.PROJECT_RUN_STATE_QUEUED)
LEASED = int(S.PROJECT_RUN_STATE_LEASED)
RUNNING = int(S.PROJECT_RUN_STATE_RUNNING)
FINISHED = int(S.PROJECT_RUN_STATE_FINISHED)
FAILED = int(S.PROJECT_RUN_STATE_FAILED)
KILLED = int(S.PROJECT_RUN_STATE_KILLED)
HELD = (LEASED, RUNNING)  # a worker holds its lease
ENDED = (FINISHED, FAILED, KILLED)

_R = project_runs.c
_L = project_run_labels.c
COLUMNS = (
    _R.seq, _R.project_run_id, _R.uri, _R.version, _R.entry_point, _R.params, _R.experiment_id,
    _R.experiment_name, _R.run_name, _R.env_manager, _R.max_retries, _R.state, _R.attempt,
    _R.worker_id, _R.cancel_requested, _R.tracking_run_id, _R.exit_code, _R.status_message,
    _R.creation_time, _R.start_time, _R.end_time, _R.lease_expiry_time, _R.log_line_count,
    _R.lease_id, _R.lease_ms,
)  # fmt: skip
_BY_ID = select(*COLUMNS).where(_R.project_run_id == bindparam("id"))
_GET = Query(lambda _: _BY_ID)
# On PostgreSQL the row stays locked to the end of the transaction (SQLite's write lock
# already serialises every writer).
_LOCK = Query(lambda d: _BY_ID.with_for_update() if d == "postgresql" else _BY_ID)
_LABELS_OF = Query(
    lambda d: (
        select(_L.run_seq, _L.label)
        .where(among(_L.run_seq, "seqs", d))
        .order_by(_L.run_seq, by_code_point(_L.label, d))
    )
)


@dataclass(frozen=True)
class RunRow:
    """One row of project_runs, in ``COLUMNS`` order."""

    seq: int
    project_run_id: str
    uri: str
    version: str
    entry_point: str
    params: str  # JSON: [[key, value], ...]
    experiment_id: str
    experiment_name: str
    run_name: str
    env_manager: str
    max_retries: int
    state: int
    attempt: int
    worker_id: str
    cancel_requested: int
    tracking_run_id: str
    exit_code: int | None
    status_message: str
    creation_time: int
    start_time: int
    end_time: int
    lease_expiry_time: int
    log_line_count: int
    lease_id: str
    lease_ms: int

    @classmethod
    def of(cls, row: Any) -> RunRow:
        return cls(*row)


def not_found(project_run_id: str, field_name: str = "project_run_id") -> NotFound:
    return NotFound(
        "PROJECT_RUN_NOT_FOUND", f"no project run with id {shown(project_run_id)}", field_name
    )


async def get(reader: Reader, project_run_id: str) -> RunRow:
    """The run; NOT_FOUND PROJECT_RUN_NOT_FOUND when none has the id."""
    found = (
        await first(reader, _GET, {"id": project_run_id}) if _plausible(project_run_id) else None
    )
    if found is None:
        raise not_found(project_run_id)
    return RunRow.of(found)


async def lock(conn: AsyncConnection, project_run_id: str) -> RunRow:
    """``get``, for a write to the run: its row is locked until the transaction ends."""
    found = await first(conn, _LOCK, {"id": project_run_id}) if _plausible(project_run_id) else None
    if found is None:
        raise not_found(project_run_id)
    return RunRow.of(found)


async def update(conn: AsyncConnection, seq: int, **values: object) -> None:
    """Sets the columns ``values`` of the run ``seq``."""
    await conn.execute(update_stmt(project_runs).where(_R.seq == seq).values(**values))


async def load(reader: Reader, found: list[RunRow]) -> list[ppb.ProjectRun]:
    """The rows as ProjectRun messages, with their labels, in the same order."""
    labels: dict[int, list[str]] = {}
    if found:
        for seq, label in await rows(reader, _LABELS_OF, {"seqs": [r.seq for r in found]}):
            labels.setdefault(seq, []).append(label)
    return [message(r, labels.get(r.seq, [])) for r in found]


async def get_message(reader: Reader, project_run_id: str) -> ppb.ProjectRun:
    """The run as a ProjectRun message (``get``, then ``load``)."""
    return (await load(reader, [await get(reader, project_run_id)]))[0]


def message(r: RunRow, labels: list[str]) -> ppb.ProjectRun:
    out = ppb.ProjectRun(
        project_run_id=r.project_run_id,
        uri=r.uri,
        version=r.version,
        entry_point=r.entry_point,
        params=[pb.Param(key=k, value=v) for k, v in json.loads(r.params)],
        experiment_id=r.experiment_id,
        experiment_name=r.experiment_name,
        run_name=r.run_name,
        env_manager=r.env_manager,
        required_labels=labels,
        max_retries=r.max_retries,
        state=r.state,  # type: ignore[arg-type]  # a ProjectRunState value
        attempt=r.attempt,
        worker_id=r.worker_id,
        cancel_requested=bool(r.cancel_requested),
        tracking_run_id=r.tracking_run_id,
        status_message=r.status_message,
        creation_time=r.creation_time,
        start_time=r.start_time,
        end_time=r.end_time,
        lease_expiry_time=r.lease_expiry_time,
        log_line_count=r.log_line_count,
    )
    if r.exit_code is not None:
        out.exit_code = r.exit_code
    return out


def _plausible(project_run_id: str) -> bool:
    """Whether a run could have the id: ids are 32 characters, so a longer one (or one with
    NUL) is NOT_FOUND without asking the database."""
    return 0 < len(project_run_id) <= 32 and findable(project_run_id)
