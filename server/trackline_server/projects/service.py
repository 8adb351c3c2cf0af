"""ProjectService: the queue of project runs that ``trackline worker`` processes lease, renew,
stream logs into and complete, written once for every transport (``transport/grpc_server.py``
serves it).

``@reads``/``@writes`` methods run inside the unit of work the edge opened and never commit.
SubmitProjectRun commits its own transaction so that it can wake the leases waiting in this
process once the run is visible (``Doorbell``); LeaseProjectRun waits for a run in short
snapshots and leases it in a write transaction of its own; StreamProjectRunLogs polls the
log in snapshots, on any replica, until the run has ended, the caller goes away or the server
begins to shut down (``begin_shutdown``). The lease checker (``leases.LeaseChecker``) runs
in the background from ``start`` to ``close``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from trackline.v1 import projects_pb2 as ppb

from .. import idempotency, limits, validation
from ..database import Database
from ..errors import Unavailable
from ..transport import Call, own_transactions, reads, writes
from . import leases, logs, queue, runs, search
from .queue import Doorbell

_SUBMIT = "SubmitProjectRun"


class ProjectService:
    def __init__(self, db: Database, lease_check_s: float = limits.PROJECT_LEASE_CHECK_S) -> None:
        self.db = db
        self.doorbell = Doorbell()
        self.checker = leases.LeaseChecker(db, lease_check_s, self.doorbell.ring)
        self._closing = asyncio.Event()

    def start(self) -> None:
        """Starts the lease checker."""
        self.checker.start()

    def begin_shutdown(self) -> None:
        """Waiting leases answer without a run and followed log streams end (UNAVAILABLE
        SHUTTING_DOWN) within a poll interval, instead of holding the shutdown's grace period;
        a follower resumes on another server, or this one restarted, from its offset."""
        self._closing.set()
        self.doorbell.ring()

    async def close(self) -> None:
        await self.checker.close()

    # Callers

    @own_transactions
    async def submit_project_run(
        self, request: ppb.SubmitProjectRunRequest, call: Call
    ) -> ppb.SubmitProjectRunResponse:
        rid = request.request_id
        validation.check_request_id(rid)
        async with self.db.write() as conn:
            done = await idempotency.applied(conn, rid, _SUBMIT) if rid else None
            project_run_id = done or await queue.submit(conn, request)
            if rid and not done:
                await idempotency.record(conn, rid, _SUBMIT, project_run_id)
            found = await runs.get_message(conn, project_run_id)
        if not done:
            self.doorbell.ring()
        return ppb.SubmitProjectRunResponse(project_run=found)

    @reads
    async def get_project_run(
        self, request: ppb.GetProjectRunRequest, call: Call
    ) -> ppb.GetProjectRunResponse:
        found = await runs.get_message(call.reader, request.project_run_id)
        return ppb.GetProjectRunResponse(project_run=found)

    @reads
    async def search_project_runs(
        self, request: ppb.SearchProjectRunsRequest, call: Call
    ) -> ppb.SearchProjectRunsResponse:
        found, token = await search.search(
            call.reader, list(request.states), request.experiment_id, request.page_size,
            request.page_token, call.principal.experiments,
        )  # fmt: skip
        return ppb.SearchProjectRunsResponse(project_runs=found, next_page_token=token)

    @own_transactions
    async def stream_project_run_logs(
        self, request: ppb.StreamProjectRunLogsRequest, call: Call
    ) -> AsyncIterator[ppb.StreamProjectRunLogsResponse]:
        """Sends the lines from ``offset`` in batches, each with the state read beside it.
        The stream ends after a read that found the run ended (or, without follow, after the
        lines stored now) and fewer lines than a batch; that last message may be empty, so
        the caller learns the state the run ended in."""
        logs.check_offset(request.offset, "offset")
        cursor = request.offset
        while True:
            async with self.db.snapshot() as snap:
                run = await runs.get(snap, request.project_run_id)
                lines = await logs.read(snap, run.seq, cursor, limits.PROJECT_LOG_BATCH)
            last = len(lines) < limits.PROJECT_LOG_BATCH and (
                run.state in runs.ENDED or not request.follow
            )
            if lines or last:
                yield ppb.StreamProjectRunLogsResponse(
                    first_offset=cursor,
                    lines=lines,
                    state=run.state,  # type: ignore[arg-type]  # a ProjectRunState value
                )
                cursor += len(lines)
            if last:
                return
            if len(lines) < limits.PROJECT_LOG_BATCH:
                if self._closing.is_set():
                    raise Unavailable(
                        "SHUTTING_DOWN",
                        f"the server is shutting down; stream again from offset {cursor}",
                    )
                await asyncio.sleep(limits.PROJECT_LOG_POLL_S)

    @writes
    async def cancel_project_run(
        self, request: ppb.CancelProjectRunRequest, call: Call
    ) -> ppb.CancelProjectRunResponse:
        await leases.cancel(call.conn, request.project_run_id)
        found = await runs.get_message(call.conn, request.project_run_id)
        return ppb.CancelProjectRunResponse(project_run=found)

    # Workers

    @own_transactions
    async def lease_project_run(
        self, request: ppb.LeaseProjectRunRequest, call: Call
    ) -> ppb.LeaseProjectRunResponse:
        """Looks for a run in a snapshot (cheap, no lock), and leases it in a write
        transaction only when there is one; between looks it waits for this server's doorbell
        or PROJECT_QUEUE_POLL_S. Answers before the caller's deadline."""
        lease_s = request.lease_seconds or limits.DEFAULT_LEASE_S
        labels = sorted(set(request.labels))
        scope = call.principal.experiments  # a scoped worker leases runs in its scope only
        queue.check_lease_request(request, lease_s)
        wait = request.wait_seconds
        left = call.time_left()
        if left is not None:
            wait = min(wait, max(0.0, left - 1.0))
        deadline = time.monotonic() + wait
        while True:
            async with self.db.snapshot() as snap:
                ready = await queue.leasable(snap, labels, scope)
            if ready:
                async with self.db.write() as conn:
                    leased = await queue.lease(
                        conn, request.worker_id, labels, lease_s * 1000, scope
                    )
                    found = await runs.load(conn, [leased]) if leased is not None else []
                if leased is not None:
                    return ppb.LeaseProjectRunResponse(
                        project_run=found[0], lease_id=leased.lease_id
                    )
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closing.is_set():
                return ppb.LeaseProjectRunResponse()
            await self.doorbell.wait(min(remaining, limits.PROJECT_QUEUE_POLL_S))

    @writes
    async def renew_project_run_lease(
        self, request: ppb.RenewProjectRunLeaseRequest, call: Call
    ) -> ppb.RenewProjectRunLeaseResponse:
        cancel, expiry = await leases.renew(
            call.conn, request.project_run_id, request.lease_id, request.tracking_run_id
        )
        return ppb.RenewProjectRunLeaseResponse(cancel_requested=cancel, lease_expiry_time=expiry)

    @writes
    async def append_project_run_logs(
        self, request: ppb.AppendProjectRunLogsRequest, call: Call
    ) -> ppb.AppendProjectRunLogsResponse:
        lines = list(request.lines)
        logs.check_offset(request.first_offset, "first_offset")
        logs.check_lines(lines)
        run = await leases.held(call.conn, request.project_run_id, request.lease_id)
        count = await logs.append(call.conn, run, request.first_offset, lines)
        return ppb.AppendProjectRunLogsResponse(next_offset=count)

    @own_transactions
    async def complete_project_run(
        self, request: ppb.CompleteProjectRunRequest, call: Call
    ) -> ppb.CompleteProjectRunResponse:
        """Commits its own transaction: a run handed back (QUEUED) wakes the waiting leases
        once they can see it."""
        exit_code = request.exit_code if request.HasField("exit_code") else None
        async with self.db.write() as conn:
            await leases.complete(
                conn, request.project_run_id, request.lease_id, request.state, exit_code,
                request.tracking_run_id, request.status_message,
            )  # fmt: skip
            found = await runs.get_message(conn, request.project_run_id)
        if found.state == runs.QUEUED:
            self.doorbell.ring()
        return ppb.CompleteProjectRunResponse(project_run=found)
