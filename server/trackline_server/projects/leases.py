"""Leases of project runs: what a worker does under its lease (``held``: renew, complete),
cancels (``cancel``), and the expiry of leases not renewed in time (``expire``, run by
``LeaseChecker`` in the background of every server).

A lease is named by its ``lease_id``; every worker call checks, under the run's row lock,
that the run is still leased or running under that id, else FAILED_PRECONDITION LEASE_LOST.
A lease past its expiry that no checker has taken back yet is still its worker's: a renewal
revives it. An expired lease is taken back once, in one transaction, whichever replica's
checker finds it (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: the write lock): the run
is queued again while retries are left, else it ends FAILED (KILLED when a cancel was asked),
with a line in its log saying why, and its tracked run, if still RUNNING, ends with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sqlalchemy import Executable, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline.v1 import resources_pb2 as pb

from .. import limits
from ..clock import now_ms
from ..database import Database
from ..errors import FailedPrecondition, InvalidArgument, shown
from ..models import project_runs
from ..models import runs as tracking_runs
from ..sql import Query, rows
from ..tracking import runs as tracking_run_rows
from ..validation import check_run_id
from . import logs, runs
from .runs import RunRow

log = logging.getLogger("trackline.projects")
_R = project_runs.c
_T = tracking_runs.c
_EXPIRY_BATCH = 100
_TERMINAL_RUN_STATUS = {
    runs.FINISHED: int(pb.RUN_STATUS_FINISHED),
    runs.FAILED: int(pb.RUN_STATUS_FAILED),
    runs.KILLED: int(pb.RUN_STATUS_KILLED),
}


def _expired(dialect_name: str) -> Executable:
    stmt = (
        select(*runs.COLUMNS)
        .where(or_(*(_R.state == s for s in runs.HELD)))
        .where(_R.lease_expiry_time < bindparam("now"))
        .order_by(_R.seq)
        .limit(_EXPIRY_BATCH)
    )
    return stmt.with_for_update(skip_locked=True) if dialect_name == "postgresql" else stmt


_EXPIRED = Query(_expired)


def lost(run: RunRow) -> FailedPrecondition:
    if run.state in runs.ENDED:
        since = "has ended"
    elif run.state == runs.QUEUED:
        since = "was queued again"
    else:
        since = "is held under another lease"
    return FailedPrecondition(
        "LEASE_LOST",
        f"the lease of project run {shown(run.project_run_id)} expired or was replaced (the run"
        f" {since}): stop it",
        "lease_id",
    )


async def held(conn: AsyncConnection, project_run_id: str, lease_id: str) -> RunRow:
    """The run, locked, when ``lease_id`` is its current lease; LEASE_LOST otherwise."""
    run = await runs.lock(conn, project_run_id)
    if run.state not in runs.HELD or not lease_id or run.lease_id != lease_id:
        raise lost(run)
    return run


async def renew(
    conn: AsyncConnection, project_run_id: str, lease_id: str, tracking_run_id: str
) -> tuple[bool, int]:
    """Extends the lease by its duration; a ``tracking_run_id`` moves a LEASED run to RUNNING.
    Returns (cancel_requested, the new expiry)."""
    run = await held(conn, project_run_id, lease_id)
    expiry = now_ms() + run.lease_ms
    values: dict[str, object] = {"lease_expiry_time": expiry}
    if tracking_run_id:
        await _check_tracking_run(conn, run, tracking_run_id)
        values["tracking_run_id"] = tracking_run_id
        if run.state == runs.LEASED:
            values["state"] = runs.RUNNING
    await runs.update(conn, run.seq, **values)
    return bool(run.cancel_requested), expiry


async def complete(
    conn: AsyncConnection,
    project_run_id: str,
    lease_id: str,
    state: int,
    exit_code: int | None,
    tracking_run_id: str,
    message: str,
) -> None:
    """Ends the leased run in ``state``. A repeat (the run ended in ``state`` under this very
    lease) changes nothing. QUEUED hands back a run its worker has not started: it is queued
    again, the attempt not counted (or, when a cancel was asked, it ends KILLED)."""
    if state not in runs.ENDED and state != runs.QUEUED:
        raise InvalidArgument(
            "INVALID_PROJECT_RUN_STATE",
            f"a run ends FINISHED, FAILED or KILLED (or is handed back QUEUED), not state {state}",
            "state",
        )
    run = await runs.lock(conn, project_run_id)
    if run.state == state and lease_id and run.lease_id == lease_id:
        return
    if run.state not in runs.HELD or not lease_id or run.lease_id != lease_id:
        raise lost(run)
    if state == runs.QUEUED:
        await _hand_back(conn, run)
        return
    if tracking_run_id:
        await _check_tracking_run(conn, run, tracking_run_id)
    await runs.update(
        conn,
        run.seq,
        state=state,
        exit_code=exit_code,
        tracking_run_id=tracking_run_id or run.tracking_run_id,
        status_message=message.replace("\x00", "")[: limits.MAX_STATUS_MESSAGE_LENGTH],
        end_time=now_ms(),
        lease_expiry_time=0,
    )


async def _hand_back(conn: AsyncConnection, run: RunRow) -> None:
    if run.state != runs.LEASED:
        raise InvalidArgument(
            "INVALID_PROJECT_RUN_STATE",
            "only a run that has not started (LEASED) can be handed back QUEUED",
            "state",
        )
    if run.cancel_requested:  # nothing to run again: the cancel ends it
        await runs.update(
            conn,
            run.seq,
            state=runs.KILLED,
            status_message="cancelled",
            end_time=now_ms(),
            lease_expiry_time=0,
        )
        return
    await runs.update(
        conn,
        run.seq,
        state=runs.QUEUED,
        attempt=run.attempt - 1,
        lease_id="",
        lease_expiry_time=0,
    )
    await logs.note(conn, run, f"worker {run.worker_id} handed the run back; queued again")


async def cancel(conn: AsyncConnection, project_run_id: str) -> None:
    """A queued run ends KILLED now; a leased or running one gets ``cancel_requested`` (its
    worker learns it at its next renewal). An ended run is PROJECT_RUN_FINISHED."""
    run = await runs.lock(conn, project_run_id)
    if run.state in runs.ENDED:
        raise FailedPrecondition(
            "PROJECT_RUN_FINISHED",
            f"project run {shown(project_run_id)} has ended already",
            "project_run_id",
        )
    if run.state == runs.QUEUED:
        await runs.update(
            conn,
            run.seq,
            state=runs.KILLED,
            status_message="cancelled while queued",
            end_time=now_ms(),
        )
        await logs.note(conn, run, "cancelled while queued")
    elif not run.cancel_requested:
        await runs.update(conn, run.seq, cancel_requested=1)
        await logs.note(conn, run, f"cancel requested; worker {run.worker_id} stops the run")


async def expire(conn: AsyncConnection) -> list[tuple[str, int]]:
    """Takes back up to a batch of leases past their expiry; returns (run id, new state) of
    each."""
    now = now_ms()
    taken: list[tuple[str, int]] = []
    for row in await rows(conn, _EXPIRED, {"now": now}):
        run = RunRow.of(row)
        who = f"worker {run.worker_id} stopped renewing its lease (attempt {run.attempt})"
        if run.cancel_requested:
            state, why = runs.KILLED, f"cancelled; {who}"
        elif run.attempt <= run.max_retries:
            retry = f"retry {run.attempt} of {run.max_retries}"
            state, why = runs.QUEUED, f"{who}; queued again ({retry})"
        else:
            retries = "no retries were asked" if not run.max_retries else "no retries are left"
            state, why = runs.FAILED, f"{who}; {retries} (max_retries {run.max_retries})"
        values: dict[str, object] = {
            "state": state,
            "lease_id": "",
            "lease_expiry_time": 0,
            "status_message": why,
        }
        if state != runs.QUEUED:
            values["end_time"] = now
        await runs.update(conn, run.seq, **values)
        await logs.note(conn, run, why)
        if run.tracking_run_id:
            await _end_tracked_run(conn, run.tracking_run_id, state, now)
        taken.append((run.project_run_id, state))
    return taken


async def _end_tracked_run(conn: AsyncConnection, run_id: str, state: int, now: int) -> None:
    """The tracked run of a lost worker, still RUNNING, ends FAILED (KILLED if cancelled):
    nothing else would end it."""
    status = _TERMINAL_RUN_STATUS.get(state, _TERMINAL_RUN_STATUS[runs.FAILED])
    await conn.execute(
        update(tracking_runs)
        .where(_T.run_id == run_id, _T.status == int(pb.RUN_STATUS_RUNNING))
        .values(status=status, end_time=now)
    )


async def _check_tracking_run(conn: AsyncConnection, run: RunRow, tracking_run_id: str) -> None:
    """A tracked run id new to ``run`` names a run: NOT_FOUND RUN_NOT_FOUND otherwise."""
    if tracking_run_id != run.tracking_run_id:
        check_run_id(tracking_run_id, "tracking_run_id")
        await tracking_run_rows.get_row(conn, tracking_run_id, "tracking_run_id")


class LeaseChecker:
    """Every ``interval`` seconds, takes back the leases past their expiry (``expire``);
    ``on_requeued`` is called after a round that queued runs again (to wake waiting leases)."""

    def __init__(self, db: Database, interval: float, on_requeued: Callable[[], None]) -> None:
        self.db = db
        self.interval = interval
        self.on_requeued = on_requeued
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="project-lease-checker")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def check(self) -> list[tuple[str, int]]:
        """One round: every expired lease taken back, a batch per transaction."""
        taken: list[tuple[str, int]] = []
        while True:
            async with self.db.write() as conn:
                batch = await expire(conn)
            taken += batch
            if len(batch) < _EXPIRY_BATCH:
                break
        for project_run_id, state in taken:
            log.warning(
                "project run %s lost its worker's lease: now %s",
                project_run_id,
                runs.S.Name(state),  # type: ignore[arg-type]
            )
        if any(state == runs.QUEUED for _, state in taken):
            self.on_requeued()
        return taken

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self.db.problem is not None:
                continue
            try:
                await self.check()
            except Exception:  # a busy or unreachable store: the next round tries again
                log.warning("checking project run leases failed", exc_info=True)
