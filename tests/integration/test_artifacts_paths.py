"""Paths that try to leave a run's artifact root, refused by every call with
INVALID_ARTIFACT_PATH naming them; symlinks planted on the server's disk that lead out;
and the rules for an experiment's own artifact location."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest
from trackline.v1 import artifacts_pb2 as apb
from trackline.v1 import tracking_pb2 as tpb

from tests.support.artifact_stubs import Stubs, download, listing, reason, stubs, upload
from tests.support.servers import ServerProcess, start_server

ATTACKS = ["../x", "a/../../x", "/etc/passwd", "a\x00b", "a\x1bb", "a\\..\\x", "x" * 1025, "a//b"]


@pytest.fixture
def s(server: ServerProcess) -> Stubs:
    return stubs(server.address)


def refused_path(call: object, path: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(err) == "INVALID_ARTIFACT_PATH"
    assert repr(path)[:20] in (err.details() or "")


@pytest.mark.parametrize("path", ATTACKS)
def test_every_call_refuses_a_path_that_escapes(s: Stubs, path: str) -> None:
    run_id = s.new_run()
    a = s.artifacts
    refused_path(lambda: upload(s, run_id, path, b"x"), path)
    refused_path(lambda: download(s, run_id, path), path)
    refused_path(lambda: a.ListArtifacts(apb.ListArtifactsRequest(run_id=run_id, path=path)), path)
    refused_path(
        lambda: a.DeleteArtifact(apb.DeleteArtifactRequest(run_id=run_id, path=path)), path
    )
    refused_path(
        lambda: a.CreateArtifactUploadUrls(
            apb.CreateArtifactUploadUrlsRequest(run_id=run_id, path=path, sha256="0" * 64)
        ),
        path,
    )
    refused_path(
        lambda: a.CreateArtifactDownloadUrl(
            apb.CreateArtifactDownloadUrlRequest(run_id=run_id, path=path)
        ),
        path,
    )


def test_unicode_names_are_fine(s: Stubs) -> None:
    run_id = s.new_run()
    upload(s, run_id, "données/模型 🙂.bin", b"x")
    assert download(s, run_id, "données/模型 🙂.bin")[1] == b"x"


def run_root(s: Stubs, run_id: str) -> Path:
    return Path(s.tracking.GetRun(tpb.GetRunRequest(run_id=run_id)).run.artifact_uri)


def test_a_symlink_leading_out_of_the_root_is_refused(
    s: Stubs, server: ServerProcess, tmp_path: Path
) -> None:
    run_id = s.new_run()
    upload(s, run_id, "inside/f", b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    root = run_root(s, run_id)
    os.symlink(outside, root / "link")
    refused_path(lambda: upload(s, run_id, "link/new", b"x"), "link/new")
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    os.symlink(outside / "secret", root / "inside" / "f.tmp")
    os.replace(root / "inside" / "f.tmp", root / "inside" / "f")  # the indexed file, now a link
    refused_path(lambda: download(s, run_id, "inside/f"), "inside/f")


def test_a_local_experiment_location_must_lie_under_the_server_root(
    s: Stubs, server: ServerProcess, tmp_path: Path
) -> None:
    create = s.tracking.CreateExperiment
    for location in (str(tmp_path / "elsewhere"), "/etc", f"{server.artifacts}/../x", "gs://b/p"):
        with pytest.raises(grpc.RpcError) as info:
            create(tpb.CreateExperimentRequest(name="e", artifact_location=location))
        assert reason(info.value) == "INVALID_ARTIFACT_LOCATION", location
    inside = server.artifacts / "team" / "vision"
    for name, location in (("a", str(inside)), ("b", f"file://{inside}-b"), ("c", "s3://bkt/p")):
        exp = create(tpb.CreateExperimentRequest(name=name, artifact_location=location)).experiment
        assert exp.artifact_location == location


def test_runs_of_an_experiment_with_its_own_location_store_there(
    s: Stubs, server: ServerProcess
) -> None:
    inside = server.artifacts / "team"
    exp = s.tracking.CreateExperiment(
        tpb.CreateExperimentRequest(name="own", artifact_location=f"file://{inside}")
    ).experiment
    run_id = s.new_run(exp.experiment_id)
    upload(s, run_id, "m/f", b"bytes")
    assert (inside / run_id / "artifacts" / "m" / "f").read_bytes() == b"bytes"
    assert listing(s, run_id)[0].path == "m"


def test_an_s3_server_refuses_local_experiment_locations(tmp_path: Path) -> None:
    server = start_server(tmp_path, extra_args=["--artifact-root", "s3://bucket/prefix"])
    assert "artifacts s3://bucket/prefix;" in server.banner
    with pytest.raises(grpc.RpcError) as info:
        stubs(server.address).tracking.CreateExperiment(
            tpb.CreateExperimentRequest(name="e", artifact_location=str(tmp_path))
        )
    assert reason(info.value) == "INVALID_ARTIFACT_LOCATION"
