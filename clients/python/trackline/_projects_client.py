"""TracklineClient's project run methods (ProjectService): submitting a project run to the
server's queue, following it and its log, cancelling it; and the calls a worker makes
(``trackline worker``, ``_worker.py``) to lease a run, renew the lease, append its log lines
and report its outcome.

States are spelled as the API's names without their prefix (``"QUEUED"``, ``"LEASED"``,
``"RUNNING"``, ``"FINISHED"``, ``"FAILED"``, ``"KILLED"``, in any case) or given as
``ProjectRunState`` values. Every refusal of the server raises the exception of its status
code with the server's reason.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from trackline.v1 import projects_pb2 as ppb
from trackline.v1 import resources_pb2 as pb

from ._calls import bind_calls
from ._transport import Metadata, ServerStream, StreamCall, Transport, UnaryCall

_PREFIX = "PROJECT_RUN_STATE_"
# The calls a repeat cannot apply twice: the reads; a renewal (it extends the lease again);
# an append (lines at offsets already stored are skipped); a completion (a repeat under the
# same lease returns the run). SubmitProjectRun is retried with its request_id. Neither
# LeaseProjectRun (a repeat could lease a second run, whose lease would then expire) nor
# CancelProjectRun (a repeat of a cancel that ended a queued run is PROJECT_RUN_FINISHED) is.
PROJECT_IDEMPOTENT = frozenset(
    {
        "GetProjectRun",
        "SearchProjectRuns",
        "RenewProjectRunLease",
        "AppendProjectRunLogs",
        "CompleteProjectRun",
    }
)
# How much longer than its wait a lease call may take before the client gives up on it.
_LEASE_MARGIN_S = 10.0


class ProjectCalls:
    """Every ProjectService method through one transport: a ``UnaryCall`` each (idempotent
    when in ``PROJECT_IDEMPOTENT``), StreamProjectRunLogs a ``StreamCall``."""

    SubmitProjectRun: UnaryCall[ppb.SubmitProjectRunRequest, ppb.SubmitProjectRunResponse]
    GetProjectRun: UnaryCall[ppb.GetProjectRunRequest, ppb.GetProjectRunResponse]
    SearchProjectRuns: UnaryCall[ppb.SearchProjectRunsRequest, ppb.SearchProjectRunsResponse]
    StreamProjectRunLogs: StreamCall[
        ppb.StreamProjectRunLogsRequest, ppb.StreamProjectRunLogsResponse
    ]
    CancelProjectRun: UnaryCall[ppb.CancelProjectRunRequest, ppb.CancelProjectRunResponse]
    LeaseProjectRun: UnaryCall[ppb.LeaseProjectRunRequest, ppb.LeaseProjectRunResponse]
    RenewProjectRunLease: UnaryCall[
        ppb.RenewProjectRunLeaseRequest, ppb.RenewProjectRunLeaseResponse
    ]
    AppendProjectRunLogs: UnaryCall[
        ppb.AppendProjectRunLogsRequest, ppb.AppendProjectRunLogsResponse
    ]
    CompleteProjectRun: UnaryCall[ppb.CompleteProjectRunRequest, ppb.CompleteProjectRunResponse]

    def __init__(self, transport: Transport) -> None:
        bind_calls(self, transport, ppb, "ProjectService", "projects", PROJECT_IDEMPOTENT)


class ProjectRunLease(NamedTuple):
    """A run a worker leased, and the lease its later calls name."""

    project_run: ppb.ProjectRun
    lease_id: str


class ProjectRunLogStream(Iterator[str]):
    """A run's log lines as they come, one at a time (``stream_project_run_logs``). It ends
    when the run has ended and every line was read (or, not following, after the lines stored
    when it was opened); ``close()`` (from any thread, or leaving a ``with`` block) ends it
    earlier. ``next_offset`` is the offset of the next line (a stream that broke is opened
    again from there), ``state`` the run's state as last read (its end state once the stream
    ended)."""

    def __init__(self, responses: ServerStream[ppb.StreamProjectRunLogsResponse], offset: int):
        self._responses = responses
        self._pending: Iterator[str] = iter(())
        self.next_offset = offset
        self.state: int = ppb.PROJECT_RUN_STATE_UNSPECIFIED

    def __next__(self) -> str:
        while True:
            for line in self._pending:
                self.next_offset += 1
                return line
            batch = next(self._responses)
            self.state = batch.state
            self.next_offset = batch.first_offset
            self._pending = iter(batch.lines)

    def close(self) -> None:
        self._responses.close()

    def __enter__(self) -> ProjectRunLogStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProjectMethods:
    """The project run methods of ``TracklineClient``, over its transport; each takes
    keyword-only ``timeout`` and ``metadata`` as every client method does."""

    transport: Transport

    @functools.cached_property
    def project_calls(self) -> ProjectCalls:
        """Every ProjectService method through the client's transport."""
        return ProjectCalls(self.transport)

    def submit_project_run(
        self,
        uri: str,
        *,
        entry_point: str = "main",
        params: Mapping[str, Any] | None = None,
        version: str = "",
        experiment_id: str = "",
        experiment_name: str = "",
        run_name: str = "",
        env_manager: str = "",
        required_labels: Iterable[str] = (),
        max_retries: int = 0,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> ppb.ProjectRun:
        """Queues a run of the project at ``uri`` (a folder or git repository as the worker's
        machine sees it; ``version`` a git ref) for a worker that has every one of
        ``required_labels``; a worker lost while it runs it gets it queued again up to
        ``max_retries`` times. Params are sent as ``str(value)``. The request id makes a retry
        of a dropped attempt return the run queued, never a second one."""
        req = ppb.SubmitProjectRunRequest(
            uri=uri,
            version=version,
            entry_point=entry_point,
            params=[pb.Param(key=k, value=str(v)) for k, v in (params or {}).items()],
            experiment_id=experiment_id,
            experiment_name=experiment_name,
            run_name=run_name,
            env_manager=env_manager,
            required_labels=list(required_labels),
            max_retries=max_retries,
            request_id=uuid.uuid4().hex,
        )
        call = self.project_calls.SubmitProjectRun
        return call(req, timeout=timeout, metadata=metadata).project_run

    def get_project_run(
        self, project_run_id: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> ppb.ProjectRun:
        """The run in its current state; NotFound (PROJECT_RUN_NOT_FOUND)."""
        req = ppb.GetProjectRunRequest(project_run_id=project_run_id)
        call = self.project_calls.GetProjectRun
        return call(req, timeout=timeout, metadata=metadata).project_run

    def search_project_runs(
        self,
        states: Iterable[str | int] = (),
        *,
        experiment_id: str = "",
        max_results: int | None = None,
        page_size: int = 0,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> Iterator[ppb.ProjectRun]:
        """Yields runs newest first, only those in ``states`` when given and of
        ``experiment_id`` when given, fetching pages as needed."""
        req = ppb.SearchProjectRunsRequest(
            states=[project_run_state(s) for s in states],
            experiment_id=experiment_id,
            page_size=page_size,
        )
        return self.project_calls.SearchProjectRuns.pages(
            req, "project_runs", max_results=max_results, timeout=timeout, metadata=metadata
        )

    def stream_project_run_logs(
        self,
        project_run_id: str,
        offset: int = 0,
        *,
        follow: bool = True,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> ProjectRunLogStream:
        """The run's log lines from line ``offset`` (see ``ProjectRunLogStream``); with
        ``follow``, new lines as the worker appends them, until the run ends. ``timeout``
        bounds the whole stream (None, the default: none). Not retried: a broken stream
        raises, and ``offset=stream.next_offset`` resumes."""
        req = ppb.StreamProjectRunLogsRequest(
            project_run_id=project_run_id, offset=offset, follow=follow
        )
        call = self.project_calls.StreamProjectRunLogs
        return ProjectRunLogStream(call(req, timeout=timeout, metadata=metadata), offset)

    def cancel_project_run(
        self, project_run_id: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> ppb.ProjectRun:
        """Cancels the run: a queued one ends KILLED at once; a running one is stopped by its
        worker within seconds (the run returned has ``cancel_requested``). FailedPrecondition
        (PROJECT_RUN_FINISHED) when it has ended already."""
        req = ppb.CancelProjectRunRequest(project_run_id=project_run_id)
        call = self.project_calls.CancelProjectRun
        return call(req, timeout=timeout, metadata=metadata).project_run

    # Worker side

    def lease_project_run(
        self,
        worker_id: str,
        *,
        labels: Iterable[str] = (),
        lease_seconds: int = 30,
        wait_seconds: float = 10.0,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> ProjectRunLease | None:
        """Leases the oldest queued run whose required labels are among ``labels``, waiting
        up to ``wait_seconds`` for one; None when none came. The lease lasts
        ``lease_seconds`` unless renewed. Not retried (a repeat could lease a second run)."""
        req = ppb.LeaseProjectRunRequest(
            worker_id=worker_id,
            labels=list(labels),
            lease_seconds=lease_seconds,
            wait_seconds=wait_seconds,
        )
        call = self.project_calls.LeaseProjectRun
        deadline = timeout if timeout is not None else wait_seconds + _LEASE_MARGIN_S
        resp = call(req, timeout=deadline, metadata=metadata)
        if not resp.HasField("project_run"):
            return None
        return ProjectRunLease(resp.project_run, resp.lease_id)

    def renew_project_run_lease(
        self,
        project_run_id: str,
        lease_id: str,
        *,
        tracking_run_id: str = "",
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> ppb.RenewProjectRunLeaseResponse:
        """Extends the lease; the response says whether a cancel was asked. The first renewal
        with ``tracking_run_id`` moves the run to RUNNING. FailedPrecondition (LEASE_LOST)
        when the lease expired or went to another worker: stop the run."""
        req = ppb.RenewProjectRunLeaseRequest(
            project_run_id=project_run_id, lease_id=lease_id, tracking_run_id=tracking_run_id
        )
        return self.project_calls.RenewProjectRunLease(req, timeout=timeout, metadata=metadata)

    def append_project_run_logs(
        self,
        project_run_id: str,
        lease_id: str,
        first_offset: int,
        lines: Iterable[str],
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> int:
        """Stores ``lines`` at ``first_offset`` and after (those stored already are skipped)
        and returns the offset of the next line."""
        req = ppb.AppendProjectRunLogsRequest(
            project_run_id=project_run_id,
            lease_id=lease_id,
            first_offset=first_offset,
            lines=list(lines),
        )
        call = self.project_calls.AppendProjectRunLogs
        return call(req, timeout=timeout, metadata=metadata).next_offset

    def complete_project_run(
        self,
        project_run_id: str,
        lease_id: str,
        state: str | int,
        *,
        exit_code: int | None = None,
        tracking_run_id: str = "",
        status_message: str = "",
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> ppb.ProjectRun:
        """Ends the leased run FINISHED, FAILED or KILLED with its outcome."""
        req = ppb.CompleteProjectRunRequest(
            project_run_id=project_run_id,
            lease_id=lease_id,
            state=project_run_state(state),
            tracking_run_id=tracking_run_id,
            status_message=status_message,
        )
        if exit_code is not None:
            req.exit_code = exit_code
        call = self.project_calls.CompleteProjectRun
        return call(req, timeout=timeout, metadata=metadata).project_run


def project_run_state(state: str | int) -> ppb.ProjectRunState:
    """A ProjectRunState from its name (``"running"``, ``"PROJECT_RUN_STATE_RUNNING"``) or
    value; an unknown name is a ValueError (an unknown value is the server's to refuse)."""
    if isinstance(state, int):
        return state  # type: ignore[return-value]  # a ProjectRunState value
    name = state.upper() if isinstance(state, str) else ""
    try:
        value = ppb.ProjectRunState.Value(name if name.startswith(_PREFIX) else _PREFIX + name)
    except ValueError:
        names = ", ".join(n.removeprefix(_PREFIX) for n in ppb.ProjectRunState.keys()[1:])
        raise ValueError(f"a project run state is one of {names}, not {state!r:.80}") from None
    return value  # type: ignore[return-value]  # a ProjectRunState value


def state_name(state: int) -> str:
    """The state's name without its prefix ("RUNNING"), or the number for an unknown one."""
    try:
        return ppb.ProjectRunState.Name(state).removeprefix(_PREFIX)  # type: ignore[arg-type]
    except ValueError:
        return str(state)


__all__ = [
    "ProjectCalls",
    "ProjectMethods",
    "ProjectRunLease",
    "ProjectRunLogStream",
    "project_run_state",
    "state_name",
]
