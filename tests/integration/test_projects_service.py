"""ProjectService through the generated stub, on SQLite and PostgreSQL: submissions and their
refusals, searches, labels, leases, log appends and streams, cancels, completions. The
worker's side is played by the test itself; tests/integration/test_projects_worker*.py run
real ``trackline worker`` processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from trackline._exceptions import from_rpc_error
from trackline.v1 import projects_pb2 as ppb
from trackline.v1 import projects_pb2_grpc
from trackline.v1 import resources_pb2 as pb

from tests.support.databases import store_url
from tests.support.servers import ServerProcess, start_server

S = ppb.ProjectRunState
Stub = projects_pb2_grpc.ProjectServiceStub


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> ServerProcess:
    """A server that looks for expired leases every 0.2 s."""
    return start_server(
        tmp_path,
        store_url(request.param, tmp_path),
        ["--project-lease-check-seconds", "0.2"],
    )


@pytest.fixture
def stub(server: ServerProcess) -> Iterator[Stub]:
    with grpc.insecure_channel(server.address) as channel:
        yield Stub(channel)


def submit(stub: Stub, uri: str = "/projects/p", **fields: object) -> ppb.ProjectRun:
    request = ppb.SubmitProjectRunRequest(uri=uri, **fields)  # type: ignore[arg-type]
    return stub.SubmitProjectRun(request, timeout=30).project_run


def lease(
    stub: Stub, worker: str = "w", labels: tuple[str, ...] = (), wait: float = 0, seconds: int = 30
) -> ppb.LeaseProjectRunResponse:
    request = ppb.LeaseProjectRunRequest(
        worker_id=worker, labels=labels, wait_seconds=wait, lease_seconds=seconds
    )
    return stub.LeaseProjectRun(request, timeout=60)


def get(stub: Stub, run_id: str) -> ppb.ProjectRun:
    return stub.GetProjectRun(
        ppb.GetProjectRunRequest(project_run_id=run_id), timeout=30
    ).project_run


def refused(call: object, request: object) -> tuple[grpc.StatusCode, str, str]:
    """(code, reason, message) of the refusal of ``call(request)``."""
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)  # type: ignore[operator]
    err = from_rpc_error(info.value)
    return err.code, err.reason, err.message


def append(stub: Stub, held: ppb.LeaseProjectRunResponse, offset: int, lines: list[str]) -> int:
    request = ppb.AppendProjectRunLogsRequest(
        project_run_id=held.project_run.project_run_id,
        lease_id=held.lease_id,
        first_offset=offset,
        lines=lines,
    )
    return stub.AppendProjectRunLogs(request, timeout=30).next_offset


def complete(
    stub: Stub, held: ppb.LeaseProjectRunResponse, state: int, **fields: object
) -> ppb.ProjectRun:
    request = ppb.CompleteProjectRunRequest(
        project_run_id=held.project_run.project_run_id,
        lease_id=held.lease_id,
        state=state,  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )
    return stub.CompleteProjectRun(request, timeout=30).project_run


def renew(stub: Stub, held: ppb.LeaseProjectRunResponse) -> ppb.RenewProjectRunLeaseResponse:
    request = ppb.RenewProjectRunLeaseRequest(
        project_run_id=held.project_run.project_run_id, lease_id=held.lease_id
    )
    return stub.RenewProjectRunLease(request, timeout=30)


def test_submit_get_and_search(stub: Stub) -> None:
    params = [pb.Param(key="alpha", value="0.1"), pb.Param(key="名前", value="värde ✓")]
    first = submit(
        stub,
        "https://example.com/repo.git#sub dir/ü",
        version="v1",
        entry_point="train",
        params=params,
        experiment_name="exp ✓",
        run_name="run 1",
        env_manager="uv",
        required_labels=["gpu", "cuda:12", "gpu"],
        max_retries=2,
    )
    assert len(first.project_run_id) == 32 and first.state == S.PROJECT_RUN_STATE_QUEUED
    assert first.uri == "https://example.com/repo.git#sub dir/ü"
    assert [(p.key, p.value) for p in first.params] == [("alpha", "0.1"), ("名前", "värde ✓")]
    assert list(first.required_labels) == ["cuda:12", "gpu"]
    assert (first.max_retries, first.attempt, first.log_line_count) == (2, 0, 0)
    assert not first.HasField("exit_code") and first.creation_time > 0
    assert get(stub, first.project_run_id) == first
    second = submit(stub, entry_point="")
    assert second.entry_point == "main"

    found = stub.SearchProjectRuns(ppb.SearchProjectRunsRequest(), timeout=30)
    assert [r.project_run_id for r in found.project_runs] == [
        second.project_run_id,
        first.project_run_id,
    ]
    page = stub.SearchProjectRuns(ppb.SearchProjectRunsRequest(page_size=1), timeout=30)
    assert [r.project_run_id for r in page.project_runs] == [second.project_run_id]
    rest = stub.SearchProjectRuns(
        ppb.SearchProjectRunsRequest(page_size=1, page_token=page.next_page_token), timeout=30
    )
    assert [r.project_run_id for r in rest.project_runs] == [first.project_run_id]
    assert rest.next_page_token == ""
    other = ppb.SearchProjectRunsRequest(
        states=[S.PROJECT_RUN_STATE_KILLED], page_token=page.next_page_token
    )
    assert refused(stub.SearchProjectRuns, other)[1] == "INVALID_PAGE_TOKEN"
    killed = ppb.SearchProjectRunsRequest(states=[S.PROJECT_RUN_STATE_KILLED])
    assert not stub.SearchProjectRuns(killed, timeout=30).project_runs
    in_default = submit(stub, experiment_id="0")
    by_experiment = ppb.SearchProjectRunsRequest(experiment_id="0")
    found = stub.SearchProjectRuns(by_experiment, timeout=30).project_runs
    assert [r.project_run_id for r in found] == [in_default.project_run_id]
    queued = ppb.SearchProjectRunsRequest(states=[S.PROJECT_RUN_STATE_QUEUED], page_size=2)
    assert len(stub.SearchProjectRuns(queued, timeout=30).project_runs) == 2


def test_submit_is_idempotent_by_request_id(stub: Stub) -> None:
    a = submit(stub, request_id="same")
    b = submit(stub, request_id="same")
    assert a.project_run_id == b.project_run_id
    assert len(stub.SearchProjectRuns(ppb.SearchProjectRunsRequest(), timeout=30).project_runs) == 1
    assert submit(stub, request_id="other").project_run_id != a.project_run_id


def test_bad_input_is_refused_with_its_reason(stub: Stub) -> None:
    cases = [
        (ppb.SubmitProjectRunRequest(uri=""), "INVALID_PROJECT_URI", "uri"),
        (ppb.SubmitProjectRunRequest(uri="  "), "INVALID_PROJECT_URI", "uri"),
        (ppb.SubmitProjectRunRequest(uri="a\nb"), "INVALID_PROJECT_URI", "uri"),
        (ppb.SubmitProjectRunRequest(uri="x" * 4097), "INVALID_PROJECT_URI", "uri"),
        (
            ppb.SubmitProjectRunRequest(uri="/p", entry_point="e\x00"),
            "INVALID_ENTRY_POINT",
            "entry",
        ),
        (
            ppb.SubmitProjectRunRequest(uri="/p", params=[pb.Param(key="k", value="v" * 65537)]),
            "INVALID_PROJECT_PARAM",
            "65536",
        ),
        (
            ppb.SubmitProjectRunRequest(
                uri="/p", params=[pb.Param(key=f"k{i}", value="") for i in range(1001)]
            ),
            "INVALID_PROJECT_PARAM",
            "1000",
        ),
        (
            ppb.SubmitProjectRunRequest(
                uri="/p", params=[pb.Param(key="k", value="1"), pb.Param(key="k", value="2")]
            ),
            "INVALID_PROJECT_PARAM",
            "twice",
        ),
        (
            ppb.SubmitProjectRunRequest(uri="/p", params=[pb.Param(key="", value="1")]),
            "INVALID_PROJECT_PARAM",
            "empty",
        ),
        (ppb.SubmitProjectRunRequest(uri="/p", env_manager="pip"), "INVALID_ENV_MANAGER", "pip"),
        (ppb.SubmitProjectRunRequest(uri="/p", required_labels=["a b"]), "INVALID_LABEL", "a b"),
        (ppb.SubmitProjectRunRequest(uri="/p", required_labels=[""]), "INVALID_LABEL", "label"),
        (ppb.SubmitProjectRunRequest(uri="/p", max_retries=101), "INVALID_MAX_RETRIES", "101"),
        (ppb.SubmitProjectRunRequest(uri="/p", max_retries=-1), "INVALID_MAX_RETRIES", "-1"),
        (
            ppb.SubmitProjectRunRequest(uri="/p", experiment_id="1", experiment_name="x"),
            "INVALID_NAME",
            "not both",
        ),
        (ppb.SubmitProjectRunRequest(uri="/p", experiment_id="x1"), "INVALID_EXPERIMENT_ID", "x1"),
        (ppb.SubmitProjectRunRequest(uri="/p", request_id="r" * 129), "INVALID_REQUEST_ID", "128"),
    ]
    for request, reason, said in cases:
        code, got, message = refused(stub.SubmitProjectRun, request)
        assert (code, got) == (grpc.StatusCode.INVALID_ARGUMENT, reason), request
        assert said in message, (request, message)
    many = ppb.SubmitProjectRunRequest(uri="", env_manager="pip", max_retries=-5)
    code, reason, message = refused(stub.SubmitProjectRun, many)
    assert reason == "INVALID_PROJECT_URI" and "2 more problems" in message
    unknown = ppb.SubmitProjectRunRequest(uri="/p", experiment_id="999")
    assert refused(stub.SubmitProjectRun, unknown)[:2] == (
        grpc.StatusCode.NOT_FOUND,
        "EXPERIMENT_NOT_FOUND",
    )
    assert not stub.SearchProjectRuns(ppb.SearchProjectRunsRequest(), timeout=30).project_runs

    for run_id in ("0" * 32, "", "x" * 10_000, "a\x00b", "ünï"):
        request = ppb.GetProjectRunRequest(project_run_id=run_id)
        assert refused(stub.GetProjectRun, request)[:2] == (
            grpc.StatusCode.NOT_FOUND,
            "PROJECT_RUN_NOT_FOUND",
        )
    cancel = ppb.CancelProjectRunRequest(project_run_id="0" * 32)
    assert refused(stub.CancelProjectRun, cancel)[1] == "PROJECT_RUN_NOT_FOUND"
    logs = ppb.StreamProjectRunLogsRequest(project_run_id="0" * 32)
    assert (
        refused(lambda r, timeout: list(stub.StreamProjectRunLogs(r, timeout=timeout)), logs)[1]
        == "PROJECT_RUN_NOT_FOUND"
    )
    for states in ([0], [99], [S.PROJECT_RUN_STATE_QUEUED, 7]):
        search = ppb.SearchProjectRunsRequest(states=states)  # type: ignore[arg-type]
        assert refused(stub.SearchProjectRuns, search)[1] == "INVALID_PROJECT_RUN_STATE"
    negative = ppb.SearchProjectRunsRequest(page_size=-1)
    assert refused(stub.SearchProjectRuns, negative)[1] == "INVALID_PAGE_SIZE"
    leases = [
        (ppb.LeaseProjectRunRequest(worker_id=""), "INVALID_WORKER_ID"),
        (ppb.LeaseProjectRunRequest(worker_id="w\n"), "INVALID_WORKER_ID"),
        (ppb.LeaseProjectRunRequest(worker_id="w" * 257), "INVALID_WORKER_ID"),
        (ppb.LeaseProjectRunRequest(worker_id="w", labels=["é"]), "INVALID_LABEL"),
        (ppb.LeaseProjectRunRequest(worker_id="w", lease_seconds=3601), "INVALID_LEASE_DURATION"),
        (ppb.LeaseProjectRunRequest(worker_id="w", lease_seconds=-1), "INVALID_LEASE_DURATION"),
        (ppb.LeaseProjectRunRequest(worker_id="w", wait_seconds=31), "INVALID_LEASE_DURATION"),
        (
            ppb.LeaseProjectRunRequest(worker_id="w", wait_seconds=float("nan")),
            "INVALID_LEASE_DURATION",
        ),
    ]
    for request, reason in leases:
        assert refused(stub.LeaseProjectRun, request)[:2] == (
            grpc.StatusCode.INVALID_ARGUMENT,
            reason,
        ), request


def test_labels_decide_which_worker_leases_a_run(stub: Stub) -> None:
    gpu = submit(stub, required_labels=["gpu"])
    both = submit(stub, required_labels=["gpu", "big"])
    plain = submit(stub)
    # Oldest first among those the worker's labels allow; runs needing more are left.
    taken = lease(stub, "cpu-worker", labels=("cpu",))
    assert taken.project_run.project_run_id == plain.project_run_id
    assert not lease(stub, "cpu-worker", labels=("cpu",)).HasField("project_run")
    taken = lease(stub, "gpu-worker", labels=("gpu",))
    assert taken.project_run.project_run_id == gpu.project_run_id
    assert taken.project_run.state == S.PROJECT_RUN_STATE_LEASED
    assert taken.project_run.worker_id == "gpu-worker" and taken.project_run.attempt == 1
    assert taken.project_run.lease_expiry_time > taken.project_run.start_time > 0
    assert not lease(stub, "gpu-worker", labels=("gpu",)).HasField("project_run")
    taken = lease(stub, "big", labels=("big", "gpu", "extra"))
    assert taken.project_run.project_run_id == both.project_run_id


def test_a_waiting_lease_gets_a_run_submitted_meanwhile(stub: Stub) -> None:
    got: list[ppb.LeaseProjectRunResponse] = []
    waiter = threading.Thread(target=lambda: got.append(lease(stub, wait=10)))
    began = time.monotonic()
    waiter.start()
    time.sleep(0.5)
    run = submit(stub)
    waiter.join(15)
    assert got and got[0].project_run.project_run_id == run.project_run_id
    assert time.monotonic() - began < 2
    began = time.monotonic()
    assert not lease(stub, wait=0.5).HasField("project_run")
    assert 0.4 < time.monotonic() - began < 5


def test_logs_append_idempotently_and_stream_from_an_offset(stub: Stub) -> None:
    run = submit(stub)
    held = lease(stub)
    assert append(stub, held, 0, ["zero", "one"]) == 2
    assert append(stub, held, 1, ["one", "two ✓"]) == 3  # a retry overlapping what is stored
    assert append(stub, held, 0, ["zero"]) == 3
    assert append(stub, held, 3, []) == 3
    gap = ppb.AppendProjectRunLogsRequest(
        project_run_id=run.project_run_id, lease_id=held.lease_id, first_offset=5, lines=["x"]
    )
    assert refused(stub.AppendProjectRunLogs, gap)[1] == "INVALID_LOG_OFFSET"
    for lines in (["a\x00"], ["x" * 65537], ["y"] * 10_001):
        bad = ppb.AppendProjectRunLogsRequest(
            project_run_id=run.project_run_id, lease_id=held.lease_id, first_offset=3, lines=lines
        )
        assert refused(stub.AppendProjectRunLogs, bad)[1] == "INVALID_LOG_LINE"

    def stream(offset: int, follow: bool) -> list[ppb.StreamProjectRunLogsResponse]:
        request = ppb.StreamProjectRunLogsRequest(
            project_run_id=run.project_run_id, offset=offset, follow=follow
        )
        return list(stub.StreamProjectRunLogs(request, timeout=30))

    (now,) = stream(1, follow=False)
    assert (now.first_offset, list(now.lines)) == (1, ["one", "two ✓"])
    assert now.state == S.PROJECT_RUN_STATE_LEASED
    (past,) = stream(10, follow=False)
    assert (past.first_offset, list(past.lines)) == (10, [])
    bad_offset = ppb.StreamProjectRunLogsRequest(project_run_id=run.project_run_id, offset=-1)
    assert (
        refused(lambda r, timeout: list(stub.StreamProjectRunLogs(r, timeout=timeout)), bad_offset)[
            1
        ]
        == "INVALID_LOG_OFFSET"
    )

    # A follower gets lines as they are appended, and the end state once the run ends.
    followed: list[ppb.StreamProjectRunLogsResponse] = []
    follower = threading.Thread(target=lambda: followed.extend(stream(0, follow=True)))
    follower.start()
    for i in range(3, 8):
        time.sleep(0.1)
        append(stub, held, i, [f"line {i}"])
    ended = complete(stub, held, S.PROJECT_RUN_STATE_FINISHED, exit_code=0)
    follower.join(15)
    assert not follower.is_alive()
    lines = [line for m in followed for line in m.lines]
    assert lines == ["zero", "one", "two ✓", *(f"line {i}" for i in range(3, 8))]
    assert len(followed) > 1  # they came as they were appended, not at the end
    assert followed[-1].state == S.PROJECT_RUN_STATE_FINISHED
    assert ended.log_line_count == 8 and ended.exit_code == 0
    assert ended.end_time >= ended.start_time


def test_completion_is_repeatable_and_fences_old_leases(stub: Stub) -> None:
    run = submit(stub)
    held = lease(stub)
    tracked = ppb.RenewProjectRunLeaseRequest(
        project_run_id=run.project_run_id, lease_id=held.lease_id, tracking_run_id="f" * 32
    )
    assert refused(stub.RenewProjectRunLease, tracked)[1] == "RUN_NOT_FOUND"
    bad_state = ppb.CompleteProjectRunRequest(
        project_run_id=run.project_run_id, lease_id=held.lease_id, state=S.PROJECT_RUN_STATE_RUNNING
    )
    assert refused(stub.CompleteProjectRun, bad_state)[1] == "INVALID_PROJECT_RUN_STATE"
    other = ppb.CompleteProjectRunRequest(
        project_run_id=run.project_run_id, lease_id="0" * 32, state=S.PROJECT_RUN_STATE_FAILED
    )
    assert refused(stub.CompleteProjectRun, other)[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "LEASE_LOST",
    )
    done = complete(stub, held, S.PROJECT_RUN_STATE_FAILED, exit_code=3, status_message="x\x00y")
    assert (done.state, done.exit_code, done.status_message) == (
        S.PROJECT_RUN_STATE_FAILED,
        3,
        "xy",
    )
    assert complete(stub, held, S.PROJECT_RUN_STATE_FAILED, exit_code=3) == done  # a retry
    again = ppb.CompleteProjectRunRequest(
        project_run_id=run.project_run_id, lease_id=held.lease_id, state=S.PROJECT_RUN_STATE_KILLED
    )
    assert refused(stub.CompleteProjectRun, again)[1] == "LEASE_LOST"
    assert refused(stub.RenewProjectRunLease, tracked)[1] == "LEASE_LOST"
    late = ppb.AppendProjectRunLogsRequest(
        project_run_id=run.project_run_id, lease_id=held.lease_id, lines=["late"]
    )
    assert refused(stub.AppendProjectRunLogs, late)[1] == "LEASE_LOST"


def test_a_run_handed_back_is_queued_again_without_using_a_retry(stub: Stub) -> None:
    run = submit(stub)
    held = lease(stub)
    back = complete(stub, held, S.PROJECT_RUN_STATE_QUEUED)
    assert (back.state, back.attempt) == (S.PROJECT_RUN_STATE_QUEUED, 0)
    again = lease(stub, "other")
    assert again.project_run.project_run_id == run.project_run_id
    assert again.project_run.attempt == 1 and again.lease_id != held.lease_id
    stub.CancelProjectRun(ppb.CancelProjectRunRequest(project_run_id=run.project_run_id))
    cancelled = complete(stub, again, S.PROJECT_RUN_STATE_QUEUED)
    assert (cancelled.state, cancelled.status_message) == (S.PROJECT_RUN_STATE_KILLED, "cancelled")


def test_cancel(stub: Stub) -> None:
    queued = submit(stub)
    killed = stub.CancelProjectRun(
        ppb.CancelProjectRunRequest(project_run_id=queued.project_run_id), timeout=30
    ).project_run
    assert killed.state == S.PROJECT_RUN_STATE_KILLED and killed.end_time > 0
    assert not lease(stub).HasField("project_run")  # it left the queue
    again = ppb.CancelProjectRunRequest(project_run_id=queued.project_run_id)
    assert refused(stub.CancelProjectRun, again)[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PROJECT_RUN_FINISHED",
    )

    running = submit(stub)
    held = lease(stub)
    assert not renew(stub, held).cancel_requested
    asked = stub.CancelProjectRun(
        ppb.CancelProjectRunRequest(project_run_id=running.project_run_id), timeout=30
    ).project_run
    assert asked.state == S.PROJECT_RUN_STATE_LEASED and asked.cancel_requested
    assert renew(stub, held).cancel_requested
    # Asked twice: nothing changes; the worker then reports the run KILLED.
    assert stub.CancelProjectRun(
        ppb.CancelProjectRunRequest(project_run_id=running.project_run_id), timeout=30
    ).project_run.cancel_requested
    ended = complete(stub, held, S.PROJECT_RUN_STATE_KILLED, exit_code=-15)
    assert ended.state == S.PROJECT_RUN_STATE_KILLED
    request = ppb.StreamProjectRunLogsRequest(project_run_id=running.project_run_id, follow=True)
    lines = [line for m in stub.StreamProjectRunLogs(request, timeout=30) for line in m.lines]
    assert lines == ["[trackline] cancel requested; worker w stops the run"]


def test_an_expired_lease_requeues_the_run_while_retries_are_left(stub: Stub) -> None:
    run = submit(stub, max_retries=1)
    first = lease(stub, "lost-1", seconds=1)
    assert renew(stub, first).lease_expiry_time > 0  # renewals keep it...
    deadline = time.monotonic() + 15
    while get(stub, run.project_run_id).state != S.PROJECT_RUN_STATE_QUEUED:  # ...until they stop
        assert time.monotonic() < deadline
        time.sleep(0.1)
    requeued = get(stub, run.project_run_id)
    assert requeued.attempt == 1 and "lost-1 stopped renewing its lease" in requeued.status_message
    assert refused(stub.RenewProjectRunLease, ppb.RenewProjectRunLeaseRequest(
        project_run_id=run.project_run_id, lease_id=first.lease_id
    ))[1] == "LEASE_LOST"  # fmt: skip

    second = lease(stub, "lost-2", seconds=1)
    assert second.project_run.attempt == 2 and second.project_run.status_message == ""
    deadline = time.monotonic() + 15
    while get(stub, run.project_run_id).state != S.PROJECT_RUN_STATE_FAILED:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    failed = get(stub, run.project_run_id)
    assert "lost-2 stopped renewing its lease" in failed.status_message
    assert "no retries are left" in failed.status_message and failed.end_time > 0
    request = ppb.StreamProjectRunLogsRequest(project_run_id=run.project_run_id)
    lines = [line for m in stub.StreamProjectRunLogs(request, timeout=30) for line in m.lines]
    assert len(lines) == 2 and all(line.startswith("[trackline] worker lost-") for line in lines)


def test_concurrent_leases_never_take_a_run_twice(stub: Stub) -> None:
    submitted = {submit(stub).project_run_id for _ in range(40)}
    taken: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while True:
            got = lease(stub, name)
            if not got.HasField("project_run"):
                return
            with lock:
                taken.append(got.project_run.project_run_id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(taken) == sorted(submitted)
