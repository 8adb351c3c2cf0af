"""``trackline run`` and ``execute`` against a real server, local environment: a project that
logs through trackline ends FINISHED with its params, tags, metrics and log; a failing one
FAILED; Ctrl-C, SIGTERM and a cancel end it KILLED with no process of it left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from trackline import TracklineClient
from trackline.projects import ProjectError, execute
from trackline.v1 import resources_pb2 as pb

from tests.support.projects import TRACKED, pid_gone, write_project
from tests.support.servers import ServerProcess, start_server
from tests.support.waiting import eventually

HOSTILE_NOTE = "; rm -rf / $(echo x) 'q\" ünï ✓"


@pytest.fixture
def tracking(tmp_path: Path) -> ServerProcess:
    return start_server(tmp_path / "server")


@pytest.fixture
def client(tracking: ServerProcess) -> Iterator[TracklineClient]:
    c = TracklineClient(tracking.address, retry_seconds=5)
    yield c
    c.close()


def _tags(run: pb.Run) -> dict[str, str]:
    return {t.key: t.value for t in run.tags}


def _log(client: TracklineClient, run_id: str, tmp_path: Path) -> str:
    path = client.download_artifacts(run_id, "logs/output.txt", tmp_path / "download")
    return Path(path).read_text(encoding="utf-8")


def test_local_run_logs_params_metrics_and_ends_finished(
    client: TracklineClient, tmp_path: Path
) -> None:
    lines: list[str] = []
    started: list[str] = []
    result = execute(
        client,
        str(TRACKED),
        params={"alpha": "0.1", "note": HOSTILE_NOTE},
        experiment_name="projects",
        run_name="first",
        env_manager="local",
        on_started=started.append,
        on_output=lines.append,
        extra_tags={"team": "vision"},
    )
    assert (result.status, result.exit_code) == ("FINISHED", 0)
    assert started == [result.run_id]
    run = client.get_run(result.run_id)
    assert run.status == pb.RUN_STATUS_FINISHED and run.run_name == "first"
    assert run.experiment_id == client.get_experiment_by_name("projects").experiment_id
    params = {p.key: p.value for p in run.params}
    assert params == {"alpha": "0.1", "l1_ratio": "0.5", "epochs": "3", "note": HOSTILE_NOTE}
    tags = _tags(run)
    assert tags["note"] == HOSTILE_NOTE  # set by the project: the value arrived whole
    assert tags["trackline.source.name"] == str(TRACKED)
    assert tags["trackline.source.type"] == "PROJECT"
    assert tags["trackline.project.entry_point"] == "main"
    assert tags["trackline.project.env_manager"] == "local"
    assert tags["trackline.project.backend"] == "local"
    assert tags["trackline.project.name"] == "tracked"
    assert tags["team"] == "vision"
    # The fixture lies in this repository's work tree, when the tests run from a clone.
    head = subprocess.run(
        ["git", "-C", str(TRACKED), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    assert tags.get("trackline.source.git.commit") == (head.stdout.strip() or None)
    history = client.get_metric_history(result.run_id, "loss")
    assert [p.step for p in history] == [0, 1, 2]
    assert "epoch 2 loss 0.5333" in lines
    assert f"warning on stderr, run {result.run_id}" in lines  # stderr too
    log = _log(client, result.run_id, tmp_path)
    assert "epoch 0 loss 0.6000\n" in log and "warning on stderr" in log


def test_failing_project_ends_failed(client: TracklineClient, tmp_path: Path) -> None:
    lines: list[str] = []
    result = execute(
        client, str(TRACKED), entry_point="fail", env_manager="local", on_output=lines.append
    )
    assert (result.status, result.exit_code) == ("FAILED", 3)
    assert client.get_run(result.run_id).status == pb.RUN_STATUS_FAILED
    assert "failing now" in lines
    assert "failing now" in _log(client, result.run_id, tmp_path)


def test_output_callback_that_raises_loses_no_log(client: TracklineClient, tmp_path: Path) -> None:
    def broken(line: str) -> None:
        raise RuntimeError("the consumer is gone")

    result = execute(client, str(TRACKED), params={"alpha": "1"}, on_output=broken)
    assert result.status == "FINISHED"  # the pipe was drained: the child did not block
    assert "epoch 2 loss 0.8333" in _log(client, result.run_id, tmp_path)


def test_child_gets_the_tracking_variables(client: TracklineClient, tmp_path: Path) -> None:
    project = write_project(
        tmp_path / "p",
        {
            "env.sh": 'echo "$TRACKLINE_URI|$TRACKLINE_RUN_ID|$TRACKLINE_EXPERIMENT_ID|'
            '$TRACKLINE_EXPERIMENT|$PYTHONUNBUFFERED"\n'
        },
    )
    exp_id = client.create_experiment("by-id").experiment_id
    lines: list[str] = []
    result = execute(
        client, str(project), entry_point="env.sh", experiment_id=exp_id, on_output=lines.append
    )
    assert f"{client.uri}|{result.run_id}|{exp_id}|by-id|1" in lines
    assert _tags(client.get_run(result.run_id))["trackline.project.env_manager"] == "local"


def test_bad_requests_create_no_run(client: TracklineClient, tmp_path: Path) -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({}, "no value for the required parameters alpha"),
        ({"params": {"alpha": "x"}}, "parameter 'alpha': expected a float, got 'x'"),
        ({"params": {"alpha": "1", "epochs": "2.5"}}, "expected an int, got '2.5'"),
        ({"entry_point": "nope"}, "unknown entry point 'nope'"),
        (
            {"params": {"alpha": "1"}, "env_manager": "pipenv"},
            "expected one of local, uv, virtualenv, conda",
        ),
        ({"experiment_id": "1", "experiment_name": "x"}, "not both"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ProjectError, match=message):
            execute(client, str(TRACKED), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ProjectError, match="no such folder"):
        execute(client, str(tmp_path / "missing"))
    assert list(client.search_runs(["0"])) == []


def test_cancel_ends_killed_and_stops_the_group(client: TracklineClient, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    cancel = threading.Event()
    results = []
    worker = threading.Thread(
        target=lambda: results.append(
            execute(
                client,
                str(TRACKED),
                entry_point="sleep",
                params={"pid_file": str(pid_file)},
                env_manager="local",
                on_output=lambda _line: None,
                cancel=cancel,
            )
        )
    )
    worker.start()
    assert eventually(pid_file.exists, 30)
    pids = [int(p) for p in pid_file.read_text().split()]
    cancel.set()
    worker.join(30)
    assert results and results[0].status == "KILLED"
    assert client.get_run(results[0].run_id).status == pb.RUN_STATUS_KILLED
    assert all(pid_gone(p) for p in pids)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_to_trackline_run_ends_killed_without_orphans(
    tracking: ServerProcess, client: TracklineClient, tmp_path: Path, sig: int, code: int
) -> None:
    pid_file = tmp_path / "pids"
    proc = subprocess.Popen(
        [sys.executable, "-m", "trackline.cli", "--uri", tracking.address, "run", str(TRACKED),
         "-e", "sleep", "-P", f"pid_file={pid_file}", "--experiment-name", "signals"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert eventually(pid_file.exists, 30), proc.stderr.read() if proc.poll() is not None else ""
    pids = [int(p) for p in pid_file.read_text().split()]
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "sleeping" in out
    (run,) = client.search_runs([client.get_experiment_by_name("signals").experiment_id])
    assert run.status == pb.RUN_STATUS_KILLED
    assert f"trackline: run {run.run_id} KILLED" in err
    assert all(pid_gone(p) for p in pids), pids


def test_cli_exit_status_and_errors(tracking: ServerProcess, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "trackline.cli", "--uri", tracking.address, "run", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    done = run(str(TRACKED), "-e", "fail", "-P", "code=4")
    assert done.returncode == 4 and "failing now" in done.stdout
    done = run(str(TRACKED), "-P", "alpha=0.2", "-P", "epochs=1")
    assert done.returncode == 0, done.stderr
    assert "epoch 0 loss 0.7000" in done.stdout
    for args, message in [
        ((str(TRACKED),), "no value for the required parameters alpha"),
        ((str(TRACKED), "-P", "alpha"), "-P 'alpha': expected KEY=VALUE"),
        ((str(TRACKED), "-P", "alpha=1", "-P", "alpha=2"), "-P alpha: given twice"),
        ((str(tmp_path / "nothing"),), "no such folder"),
    ]:
        done = run(*args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("trackline: ") and message in done.stderr
        assert done.stderr.count("\n") == 1, done.stderr


def test_import_trackline_stays_light() -> None:
    code = (
        "import sys, trackline, trackline.cli; "
        "print(sorted(m for m in sys.modules if m.startswith(('yaml', 'trackline.projects'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert os.environ.get("TRACKLINE_RUN_ID") is None
