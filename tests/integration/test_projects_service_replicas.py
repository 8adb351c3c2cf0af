"""Two server replicas over one PostgreSQL share one queue of project runs: concurrent leases
through both never take a run twice, a lease waiting on one replica gets a run submitted
through the other, a follower on one sees the lines appended through the other, and an
expired lease is taken back once although both replicas' checkers look for it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from trackline.v1 import projects_pb2 as ppb
from trackline.v1 import projects_pb2_grpc

from tests.support.servers import ServerProcess, start_server

S = ppb.ProjectRunState
Stub = projects_pb2_grpc.ProjectServiceStub


@pytest.fixture
def replicas(postgres_url: str, tmp_path: Path) -> tuple[ServerProcess, ServerProcess]:
    flags = ["--project-lease-check-seconds", "0.2"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return (
        start_server(tmp_path / "a", postgres_url, flags),
        start_server(tmp_path / "b", postgres_url, flags),
    )


@pytest.fixture
def stubs(replicas: tuple[ServerProcess, ServerProcess]) -> Iterator[tuple[Stub, Stub]]:
    with (
        grpc.insecure_channel(replicas[0].address) as a,
        grpc.insecure_channel(replicas[1].address) as b,
    ):
        yield Stub(a), Stub(b)


def submit(stub: Stub, **fields: object) -> ppb.ProjectRun:
    request = ppb.SubmitProjectRunRequest(uri="/projects/p", **fields)  # type: ignore[arg-type]
    return stub.SubmitProjectRun(request, timeout=30).project_run


def lease(
    stub: Stub, worker: str, wait: float = 0, seconds: int = 30
) -> ppb.LeaseProjectRunResponse:
    request = ppb.LeaseProjectRunRequest(worker_id=worker, wait_seconds=wait, lease_seconds=seconds)
    return stub.LeaseProjectRun(request, timeout=60)


def test_leases_through_both_replicas_never_take_a_run_twice(stubs: tuple[Stub, Stub]) -> None:
    a, b = stubs
    submitted = {submit(a if i % 2 else b).project_run_id for i in range(60)}
    taken: list[str] = []
    lock = threading.Lock()

    def worker(stub: Stub, name: str) -> None:
        while True:
            got = lease(stub, name)
            if not got.HasField("project_run"):
                return
            with lock:
                taken.append(got.project_run.project_run_id)

    threads = [
        threading.Thread(target=worker, args=(stub, f"{side}{i}"))
        for side, stub in (("a", a), ("b", b))
        for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(taken) == sorted(submitted)


def test_a_lease_waiting_on_one_replica_gets_a_run_submitted_through_the_other(
    stubs: tuple[Stub, Stub],
) -> None:
    a, b = stubs
    got: list[ppb.LeaseProjectRunResponse] = []
    waiter = threading.Thread(target=lambda: got.append(lease(b, "waiting", wait=10)))
    waiter.start()
    time.sleep(0.5)
    submitted_at = time.monotonic()
    run = submit(a)
    waiter.join(15)
    assert got and got[0].project_run.project_run_id == run.project_run_id
    assert time.monotonic() - submitted_at < 1.0


def test_a_follower_on_one_replica_sees_lines_appended_through_the_other(
    stubs: tuple[Stub, Stub],
) -> None:
    a, b = stubs
    run = submit(a)
    held = lease(a, "w")
    followed: list[str] = []
    request = ppb.StreamProjectRunLogsRequest(project_run_id=run.project_run_id, follow=True)

    def follow() -> None:
        for message in b.StreamProjectRunLogs(request, timeout=60):
            followed.extend(message.lines)

    follower = threading.Thread(target=follow)
    follower.start()
    for i in range(5):
        a.AppendProjectRunLogs(
            ppb.AppendProjectRunLogsRequest(
                project_run_id=run.project_run_id,
                lease_id=held.lease_id,
                first_offset=i,
                lines=[f"line {i}"],
            ),
            timeout=30,
        )
        time.sleep(0.05)
    a.CompleteProjectRun(
        ppb.CompleteProjectRunRequest(
            project_run_id=run.project_run_id,
            lease_id=held.lease_id,
            state=S.PROJECT_RUN_STATE_FINISHED,
            exit_code=0,
        ),
        timeout=30,
    )
    follower.join(30)
    assert not follower.is_alive()
    assert followed == [f"line {i}" for i in range(5)]


def test_an_expired_lease_is_taken_back_once(stubs: tuple[Stub, Stub]) -> None:
    a, b = stubs
    runs = [submit(a, max_retries=1).project_run_id for _ in range(10)]
    for _ in runs:
        assert lease(b, "lost", seconds=1).HasField("project_run")
    deadline = time.monotonic() + 20
    for run_id in runs:
        while True:
            run = a.GetProjectRun(ppb.GetProjectRunRequest(project_run_id=run_id), timeout=30)
            if run.project_run.state == S.PROJECT_RUN_STATE_QUEUED:
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert run.project_run.attempt == 1
        logs = a.StreamProjectRunLogs(ppb.StreamProjectRunLogsRequest(project_run_id=run_id))
        lines = [line for message in logs for line in message.lines]
        assert len(lines) == 1 and "lost stopped renewing its lease" in lines[0]
