"""What a run records about where it came from: its user, its source and, inside a git work
tree, the commit, branch and dirty flag (start_run's system tags); and runs as a DataFrame."""

from __future__ import annotations

import getpass
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trackline
from trackline import InvalidArgument, TracklineClient
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb

from tests.support.servers import ServerProcess

SCRIPT = """
import sys
import trackline

trackline.set_tracking_uri(sys.argv[1])
with trackline.start_run(tags={k: v for k, v in (a.split("=") for a in sys.argv[2:])}) as run:
    print(run.run_id)
"""


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text(SCRIPT)
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "first")
    return repo


def _started(
    server: ServerProcess, cwd: Path, args: list[str], env: dict[str, str] | None = None
) -> pb.Run:
    """The run a script started with trackline.start_run, in a process of its own."""
    done = subprocess.run(
        [sys.executable, *args, server.address],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        # The test's own tree must not count as the script's repository.
        env={**os.environ, "GIT_CEILING_DIRECTORIES": str(cwd.parent), **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    return TracklineClient(server.address).get_run(run_id)


def _tags(run: pb.Run) -> dict[str, str]:
    return {t.key: t.value for t in run.tags}


def test_a_run_in_a_git_work_tree_records_commit_branch_and_cleanliness(
    server: ServerProcess, tmp_path: Path
) -> None:
    repo = _repo(tmp_path)
    run = _started(server, repo, ["train.py"], {"TRACKLINE_USER": "alice"})
    tags = _tags(run)
    assert run.user_id == "alice"
    assert tags["trackline.source.name"] == str(repo / "train.py")
    assert tags["trackline.source.type"] == "LOCAL"
    assert tags["trackline.source.entry_point"] == "train.py"
    assert tags["trackline.source.git.commit"] == _git(repo, "rev-parse", "HEAD")
    assert tags["trackline.source.git.branch"] == "main"
    assert tags["trackline.source.git.dirty"] == "false"
    assert "trackline.source.git.repo_url" not in tags  # no remote

    (repo / "train.py").write_text(SCRIPT + "\n# an uncommitted change\n")
    _git(repo, "remote", "add", "origin", "https://bot:s3cret@git.example.com/ml/train.git")
    tags = _tags(_started(server, repo, ["train.py"]))
    assert tags["trackline.source.git.dirty"] == "true"
    assert tags["trackline.source.git.repo_url"] == "https://git.example.com/ml/train.git"

    _git(repo, "checkout", "-q", "--detach", "HEAD")
    tags = _tags(_started(server, repo, ["train.py"]))
    assert "trackline.source.git.branch" not in tags  # a detached HEAD is on no branch
    assert tags["trackline.source.git.commit"] == _git(repo, "rev-parse", "HEAD")


def test_outside_a_repository_a_run_has_source_tags_only(
    server: ServerProcess, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "job.py").write_text(SCRIPT)
    run = _started(server, plain, ["job.py"], {"TRACKLINE_USER": ""})
    tags = _tags(run)
    assert not [k for k in tags if k.startswith("trackline.source.git.")]
    assert tags["trackline.source.name"] == str(plain / "job.py")
    assert run.user_id == getpass.getuser()  # TRACKLINE_USER empty: the OS user


def test_a_module_run_with_dash_m_is_its_entry_point_and_given_tags_win(
    server: ServerProcess, tmp_path: Path
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "train.py").write_text(SCRIPT)
    run = _started(
        server, tmp_path, ["-m", "pkg.train"], {"TRACKLINE_USER": "bob"}
    )  # fmt: skip
    assert _tags(run)["trackline.source.entry_point"] == "pkg.train"
    done = subprocess.run(
        [sys.executable, "-m", "pkg.train", server.address, "trackline.source.type=JOB", "x=1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    tags = _tags(TracklineClient(server.address).get_run(done.stdout.strip()))
    assert tags["trackline.source.type"] == "JOB" and tags["x"] == "1"


def test_client_runs_take_the_user_given_or_none(client: TracklineClient) -> None:
    assert client.create_run(user_id="carol").user_id == "carol"
    assert client.create_run(user_id="").user_id == ""
    assert client.get_run(client.create_run(user_id="ユーザー").run_id).user_id == "ユーザー"
    # The default is the process's user, and a run created so carries no system tags.
    run = client.create_run()
    assert run.user_id == (os.environ.get("TRACKLINE_USER") or getpass.getuser())
    assert not run.tags


@pytest.mark.parametrize(
    ("user_id", "fragment"), [("u" * 257, "at most 256"), ("a\nb", "control character")]
)
def test_bad_user_id_is_refused(client: TracklineClient, user_id: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment) as err:
        client.calls.CreateRun(tpb.CreateRunRequest(user_id=user_id))
    assert "user_id" in err.value.field_violations


def test_search_runs_as_a_dataframe_is_shaped_as_mlflows(server: ServerProcess) -> None:
    trackline.set_tracking_uri(server.address)
    trackline.set_experiment("frames")
    with trackline.start_run(run_name="a", tags={"team": "cv"}) as first:
        trackline.log_metric("loss", 0.5)
        trackline.log_param("lr", "0.1")
    with trackline.start_run(run_name="b") as second:
        trackline.log_metric("acc", math.nan)
    frame = trackline.search_runs(output_format="pandas", order_by=["run_name"])
    assert list(frame["run_id"]) == [first.run_id, second.run_id]
    own = ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
    assert list(frame.columns[:6]) == own
    assert {"metrics.loss", "metrics.acc", "params.lr", "tags.team"} <= set(frame.columns)
    assert list(frame["status"]) == ["FINISHED", "FINISHED"]
    assert (
        str(frame["start_time"].dtype).startswith("datetime64") and frame["end_time"].notna().all()
    )
    assert frame["metrics.loss"].iloc[0] == 0.5 and math.isnan(frame["metrics.loss"].iloc[1])
    assert math.isnan(frame["metrics.acc"].iloc[1])
    assert frame["params.lr"].iloc[0] == "0.1" and frame["params.lr"].iloc[1] is None
    assert trackline.search_runs("run_name = 'none'", output_format="pandas").empty
    assert isinstance(trackline.search_runs(), list)  # the default stays a list
    with pytest.raises(ValueError, match="output_format"):
        trackline.search_runs(output_format="csv")  # type: ignore[call-overload]
