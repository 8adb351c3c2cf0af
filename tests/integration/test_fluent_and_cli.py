"""The module-level API and the ``trackline`` command against a real server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import trackline
from trackline.v1 import resources_pb2 as pb

from tests.support.servers import ServerProcess


@pytest.fixture
def fluent(server: ServerProcess) -> ServerProcess:
    trackline.set_tracking_uri(server.address)
    return server


def test_fluent_run(fluent: ServerProcess) -> None:
    trackline.set_experiment("fluent")
    with trackline.start_run(run_name="r") as run:
        trackline.log_param("lr", 0.01)
        trackline.log_params({"bs": 32})
        trackline.set_tag("team", "nlp")
        for step in range(3):
            trackline.log_metric("loss", 1.0 / (step + 1), step=step)
        trackline.log_metrics({"acc": 0.5, "f1": 0.4}, step=3)
        with trackline.start_run(nested=True) as child:
            assert trackline.active_run() == child.run_id
        assert trackline.active_run() == run.run_id
    assert trackline.active_run() is None
    got = trackline.TracklineClient(fluent.address).get_run(run.run_id)
    assert got.status == pb.RUN_STATUS_FINISHED and got.HasField("end_time")
    assert {p.key: p.value for p in got.params} == {"lr": "0.01", "bs": "32"}
    assert {m.key: m.value for m in got.latest_metrics} == {"loss": 1 / 3, "acc": 0.5, "f1": 0.4}
    assert (
        trackline.TracklineClient(fluent.address).get_run(child.run_id).parent_run_id == run.run_id
    )


def test_failed_block_marks_run_failed(fluent: ServerProcess) -> None:
    with pytest.raises(ValueError), trackline.start_run() as run:
        raise ValueError("boom")
    assert (
        trackline.TracklineClient(fluent.address).get_run(run.run_id).status == pb.RUN_STATUS_FAILED
    )


def test_resume_from_env(fluent: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    run = trackline.TracklineClient(fluent.address).create_run()
    monkeypatch.setenv("TRACKLINE_RUN_ID", run.run_id)
    with trackline.start_run() as resumed:
        assert resumed.run_id == run.run_id


def test_log_without_run_is_clear_error(fluent: ServerProcess) -> None:
    with pytest.raises(RuntimeError, match="no active run"):
        trackline.log_metric("x", 1.0)


def _cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackline.cli", "--uri", server.address, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_show_run(server: ServerProcess) -> None:
    client = trackline.TracklineClient(server.address)
    run = client.create_run(run_name="cli-run", user_id="dana")
    client.log_param(run.run_id, "opt", "adam")
    client.log_metric(run.run_id, "loss", 0.25, step=4)
    out = _cli(server, "runs", "show", run.run_id)
    assert out.returncode == 0, out.stderr
    assert "params.opt" in out.stdout and "adam" in out.stdout and "0.25 (step 4)" in out.stdout
    assert any(line.split() == ["user_id", "dana"] for line in out.stdout.splitlines())
    data = json.loads(_cli(server, "runs", "show", run.run_id, "--json").stdout)
    assert data["runName"] == "cli-run" and data["userId"] == "dana"


def test_cli_errors_are_one_line(server: ServerProcess) -> None:
    out = _cli(server, "runs", "show", "missing")
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "RUN_NOT_FOUND" in out.stderr
    created = _cli(server, "experiments", "create", "from-cli")
    assert created.returncode == 0 and "from-cli" in created.stdout


def test_cli_lists_and_searches(server: ServerProcess) -> None:
    client = trackline.TracklineClient(server.address)
    exp = client.create_experiment("cli-search").experiment_id
    for name, loss, opt in (("a", 0.5, "adam"), ("b", 0.2, "sgd"), ("c", 0.1, "adam")):
        run = client.create_run(exp, run_name=name)
        client.log_batch(
            run.run_id,
            metrics=[pb.MetricSeries(key="loss", steps=[0], timestamps=[1], values=[loss])],
            params={"opt": opt},
        )
    listed = _cli(server, "experiments", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:3] == ["ID", "NAME", "STAGE"]
    assert {r.split()[1] for r in rows} == {"Default", "cli-search"}

    out = _cli(
        server, "runs", "search", "params.opt = 'adam'", "-n", "cli-search",
        "--order-by", "metrics.loss",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.split()[-2:] == ["params.opt", "metrics.loss"]  # keys named become columns
    assert [r.split()[2] for r in rows] == ["c", "a"]
    assert "metrics.loss" in header and "0.1" in rows[0]

    data = json.loads(_cli(server, "runs", "list", "-e", exp, "--json").stdout)
    assert sorted(r["runName"] for r in data) == ["a", "b", "c"]
    none = _cli(server, "runs", "search", "metrics.loss > 10", "-e", exp)
    assert none.returncode == 0 and none.stdout.strip() == "no runs found"


def test_cli_bad_filter_is_one_line(server: ServerProcess) -> None:
    out = _cli(server, "runs", "search", "metrics.loss <")
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "INVALID_FILTER" in out.stderr
    assert "position" in out.stderr
