"""Project runs through real ``trackline worker`` processes, on SQLite and PostgreSQL: submit ->
worker -> live logs -> FINISHED, two workers sharing one queue, labels, cancel of a running
run, a worker killed with SIGKILL mid-run (its lease expires: the run is queued again while
retries are left, else it fails with the reason), a worker stopped with SIGTERM, and
``trackline run --backend worker``."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from trackline import TracklineClient
from trackline.v1 import projects_pb2 as ppb
from trackline.v1 import resources_pb2 as pb

from tests.support.databases import store_url
from tests.support.projects import TRACKED, pid_gone, write_project
from tests.support.servers import ServerProcess, start_server
from tests.support.workers import start_worker, stop_started_workers

S = ppb.ProjectRunState
ENDED = (S.PROJECT_RUN_STATE_FINISHED, S.PROJECT_RUN_STATE_FAILED, S.PROJECT_RUN_STATE_KILLED)
# A project of trivial runs: 'main' prints a line, 'nap' sleeps a while between two lines.
QUICK = {
    "MLproject": """
        name: quick
        entry_points:
          main:
            parameters:
              n: {type: int, default: 0}
            command: "python -c 'print(\\"hello {n}\\")'"
          nap:
            parameters:
              seconds: {type: float, default: 4}
            command: "python nap.py {seconds}"
    """,
    "nap.py": """
        import sys, time
        print("napping", flush=True)
        time.sleep(float(sys.argv[1]))
        print("awake")
    """,
}


@pytest.fixture(autouse=True)
def _stop_workers() -> Iterator[None]:
    yield
    stop_started_workers()


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> ServerProcess:
    """A server that looks for expired leases every 0.2 s."""
    return start_server(
        tmp_path, store_url(request.param, tmp_path), ["--project-lease-check-seconds", "0.2"]
    )


@pytest.fixture
def client(server: ServerProcess) -> Iterator[TracklineClient]:
    c = TracklineClient(server.address, retry_seconds=5)
    yield c
    c.close()


@pytest.fixture
def quick(tmp_path: Path) -> Path:
    return write_project(tmp_path / "quick", QUICK)


def wait_for(
    client: TracklineClient, run_id: str, states: tuple[int, ...], seconds: float = 30
) -> ppb.ProjectRun:
    deadline = time.monotonic() + seconds
    while True:
        run = client.get_project_run(run_id)
        if run.state in states:
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.05)


def test_a_worker_runs_a_submitted_run_with_live_logs(
    server: ServerProcess, client: TracklineClient, tmp_path: Path
) -> None:
    worker = start_worker(server.address, tmp_path, "w1", once=True)
    submitted = client.submit_project_run(
        str(TRACKED),
        params={"alpha": 0.25, "epochs": 2},
        env_manager="local",
        run_name="via worker",
    )
    with client.stream_project_run_logs(submitted.project_run_id) as stream:
        lines = list(stream)
        assert stream.state == S.PROJECT_RUN_STATE_FINISHED
    assert "epoch 0 loss 0.7500" in lines and "epoch 1 loss 0.6250" in lines
    assert any(line.startswith("warning on stderr, run ") for line in lines)
    run = client.get_project_run(submitted.project_run_id)
    assert (run.state, run.exit_code, run.attempt, run.worker_id) == (
        S.PROJECT_RUN_STATE_FINISHED, 0, 1, "w1",
    )  # fmt: skip
    assert run.log_line_count == len(lines) and run.status_message == ""
    # Submit to lease with an idle worker: the server's own two timestamps.
    assert run.start_time - run.creation_time < 1000
    tracked = client.get_run(run.tracking_run_id)
    assert tracked.status == pb.RUN_STATUS_FINISHED and tracked.run_name == "via worker"
    assert {(p.key, p.value) for p in tracked.params} >= {("alpha", "0.25"), ("epochs", "2")}
    tags = {t.key: t.value for t in tracked.tags}
    assert tags["trackline.project_run_id"] == run.project_run_id
    assert tags["trackline.worker_id"] == "w1"
    assert tags["trackline.project.backend"] == "worker"
    assert [m.key for m in tracked.latest_metrics] == ["loss"]
    # Read again later from an offset: the stored lines, then the end.
    with client.stream_project_run_logs(run.project_run_id, offset=len(lines) - 1) as again:
        assert list(again) == lines[-1:]
    assert worker.proc.wait(15) == 0  # --once: one run, then it exits
    assert "stopped after 1 run" in worker.output()


def test_two_workers_share_one_queue_and_labels_route_runs(
    server: ServerProcess, client: TracklineClient, tmp_path: Path, quick: Path
) -> None:
    start_worker(server.address, tmp_path, "plain")
    start_worker(server.address, tmp_path, "gpu", labels=["gpu"])
    plain = [
        client.submit_project_run(str(quick), params={"n": i}, env_manager="local")
        for i in range(10)
    ]
    gpu = [
        client.submit_project_run(
            str(quick), params={"n": 100 + i}, env_manager="local", required_labels=["gpu"]
        )
        for i in range(2)
    ]
    done = [wait_for(client, r.project_run_id, ENDED, 90) for r in plain + gpu]
    assert all(r.state == S.PROJECT_RUN_STATE_FINISHED and r.attempt == 1 for r in done)
    assert len({r.tracking_run_id for r in done}) == len(done)  # each ran once, as one run
    assert {r.worker_id for r in done[:10]} == {"plain", "gpu"}
    assert {r.worker_id for r in done[10:]} == {"gpu"}
    for r, i in zip(done, [*range(10), 100, 101], strict=True):
        lines = list(client.stream_project_run_logs(r.project_run_id))
        assert f"hello {i}" in lines


def test_a_project_that_cannot_run_fails_with_the_reason(
    server: ServerProcess, client: TracklineClient, tmp_path: Path, quick: Path
) -> None:
    start_worker(server.address, tmp_path, "w1")
    missing = client.submit_project_run(str(tmp_path / "nowhere"), env_manager="local")
    unknown = client.submit_project_run(str(quick), entry_point="nope", env_manager="local")
    bad_param = client.submit_project_run(str(quick), params={"n": "many"}, env_manager="local")
    for submitted, said in ((missing, "nowhere"), (unknown, "nope"), (bad_param, "many")):
        run = wait_for(client, submitted.project_run_id, ENDED)
        assert run.state == S.PROJECT_RUN_STATE_FAILED and said in run.status_message
        assert not run.HasField("exit_code") and run.tracking_run_id == ""
        lines = list(client.stream_project_run_logs(run.project_run_id))
        assert lines == [f"trackline: {run.status_message}"]


def test_a_cancel_stops_a_running_run_within_seconds(
    server: ServerProcess, client: TracklineClient, tmp_path: Path
) -> None:
    start_worker(server.address, tmp_path, "w1")
    pid_file = tmp_path / "pids"
    submitted = client.submit_project_run(
        str(TRACKED), entry_point="sleep", params={"pid_file": pid_file}, env_manager="local"
    )
    wait_for(client, submitted.project_run_id, (S.PROJECT_RUN_STATE_RUNNING,))
    deadline = time.monotonic() + 30
    while not pid_file.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pids = [int(p) for p in pid_file.read_text().split()]
    asked = time.monotonic()
    assert client.cancel_project_run(submitted.project_run_id).cancel_requested
    run = wait_for(client, submitted.project_run_id, ENDED)
    assert time.monotonic() - asked < 10
    assert run.state == S.PROJECT_RUN_STATE_KILLED and run.status_message == "cancelled"
    assert all(pid_gone(p) for p in pids)  # the command and what it started
    assert client.get_run(run.tracking_run_id).status == pb.RUN_STATUS_KILLED


@pytest.mark.parametrize("retries", [1, 0])
def test_a_sigkilled_worker_loses_its_run(
    server: ServerProcess, client: TracklineClient, tmp_path: Path, quick: Path, retries: int
) -> None:
    doomed = start_worker(server.address, tmp_path, "doomed", lease_seconds=2)
    submitted = client.submit_project_run(
        str(quick), entry_point="nap", params={"seconds": 3}, env_manager="local",
        max_retries=retries,
    )  # fmt: skip
    first = wait_for(client, submitted.project_run_id, (S.PROJECT_RUN_STATE_RUNNING,))
    deadline = time.monotonic() + 30
    while "napping" not in list(client.stream_project_run_logs(first.project_run_id, follow=False)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    doomed.kill()
    if retries:
        queued = wait_for(client, submitted.project_run_id, (S.PROJECT_RUN_STATE_QUEUED,), 15)
        assert "doomed stopped renewing its lease" in queued.status_message
        start_worker(server.address, tmp_path, "rescuer")
        run = wait_for(client, submitted.project_run_id, ENDED)
        assert (run.state, run.attempt, run.worker_id) == (
            S.PROJECT_RUN_STATE_FINISHED, 2, "rescuer",
        )  # fmt: skip
        assert run.tracking_run_id != first.tracking_run_id
    else:
        run = wait_for(client, submitted.project_run_id, ENDED, 15)
        assert run.state == S.PROJECT_RUN_STATE_FAILED
        assert "doomed stopped renewing its lease" in run.status_message
        assert "no retries were asked" in run.status_message
    # The lost attempt's tracked run ended with it, and its log says what happened.
    assert client.get_run(first.tracking_run_id).status == pb.RUN_STATUS_FAILED
    lines = list(client.stream_project_run_logs(submitted.project_run_id))
    assert "napping" in lines
    assert any(line.startswith("[trackline] worker doomed stopped renewing") for line in lines)


def test_sigterm_stops_the_worker_and_kills_its_run(
    server: ServerProcess, client: TracklineClient, tmp_path: Path
) -> None:
    worker = start_worker(server.address, tmp_path, "w1")
    pid_file = tmp_path / "pids"
    submitted = client.submit_project_run(
        str(TRACKED), entry_point="sleep", params={"pid_file": pid_file}, env_manager="local"
    )
    wait_for(client, submitted.project_run_id, (S.PROJECT_RUN_STATE_RUNNING,))
    deadline = time.monotonic() + 30
    while not pid_file.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert worker.stop() == 0
    run = client.get_project_run(submitted.project_run_id)
    assert run.state == S.PROJECT_RUN_STATE_KILLED
    assert run.status_message == "the worker was stopped while the run ran"
    assert all(pid_gone(int(p)) for p in pid_file.read_text().split())
    assert "stopped after 1 run" in worker.output()


def _trackline(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackline.cli", "--uri", server.address, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_trackline_run_with_the_worker_backend(
    server: ServerProcess, client: TracklineClient, tmp_path: Path
) -> None:
    start_worker(server.address, tmp_path, "w1")
    common = ["--env-manager", "local", "--backend", "worker"]
    done = _trackline(server, "run", str(TRACKED), "-P", "alpha=0.5", *common)
    assert done.returncode == 0, done.stderr
    assert "epoch 2 loss" in done.stdout and "FINISHED" in done.stderr
    failed = _trackline(server, "run", str(TRACKED), "-e", "fail", "-P", "code=7", *common)
    assert failed.returncode == 7 and "failing now" in failed.stdout
    detached = _trackline(server, "run", str(TRACKED), "-P", "alpha=1", *common, "--detach")
    assert detached.returncode == 0, detached.stderr
    run_id = detached.stdout.strip()
    assert wait_for(client, run_id, ENDED).state == S.PROJECT_RUN_STATE_FINISHED
    bad = _trackline(server, "run", "", *common)
    assert bad.returncode == 2 and "INVALID_PROJECT_URI" in bad.stderr


def test_ctrl_c_while_following_a_worker_run_cancels_it(
    server: ServerProcess, client: TracklineClient, tmp_path: Path
) -> None:
    start_worker(server.address, tmp_path, "w1")
    pid_file = tmp_path / "pids"
    follower = subprocess.Popen(
        [
            sys.executable, "-m", "trackline.cli", "--uri", server.address, "run", str(TRACKED),
            "-e", "sleep", "-P", f"pid_file={pid_file}", "--env-manager", "local",
            "--backend", "worker",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert follower.stdout is not None
    while "sleeping" not in follower.stdout.readline():  # the run's line, through the server
        assert follower.poll() is None
    (run,) = client.search_project_runs()
    follower.send_signal(signal.SIGINT)
    out, err = follower.communicate(timeout=30)
    assert follower.returncode == 130 and "cancelled" in err
    ended = wait_for(client, run.project_run_id, ENDED)
    assert ended.state == S.PROJECT_RUN_STATE_KILLED and ended.status_message == "cancelled"
    assert all(pid_gone(int(p)) for p in pid_file.read_text().split())
