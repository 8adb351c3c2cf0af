"""Listing and deleting a run's artifacts (local backend, SQLite and PostgreSQL): one level
with directories or recursive, ordered by path and paged; deletes of a file, a directory or
everything; a deleted run's artifacts read-only."""

from __future__ import annotations

import grpc
import pytest
from trackline.v1 import artifacts_pb2 as apb
from trackline.v1 import tracking_pb2 as tpb

from tests.support.artifact_stubs import Stubs, download, listing, names, reason, stubs, upload
from tests.support.servers import ServerProcess

FILES = ["a.txt", "b/c.txt", "b/d/e.txt", "b-x.txt", "z/y/x.bin"]


@pytest.fixture
def s(server: ServerProcess) -> Stubs:
    return stubs(server.address)


def filled(s: Stubs) -> str:
    run_id = s.new_run()
    for path in FILES:
        upload(s, run_id, path, path.encode())
    return run_id


def test_one_level_lists_files_and_directories_by_path(s: Stubs) -> None:
    run_id = filled(s)
    assert names(listing(s, run_id)) == ["a.txt", "b/", "b-x.txt", "z/"]
    assert names(listing(s, run_id, "b")) == ["b/c.txt", "b/d/"]
    assert names(listing(s, run_id, "b/")) == ["b/c.txt", "b/d/"]
    assert names(listing(s, run_id, "z/y")) == ["z/y/x.bin"]
    assert listing(s, run_id, "nothing") == []


def test_recursive_lists_every_file_with_size_and_checksum(s: Stubs) -> None:
    run_id = filled(s)
    files = listing(s, run_id, recursive=True)
    assert names(files) == sorted(FILES)
    assert all(f.size == len(f.path) and len(f.sha256) == 64 for f in files)
    assert names(listing(s, run_id, "b", recursive=True)) == ["b/c.txt", "b/d/e.txt"]


def test_a_files_path_lists_that_file(s: Stubs) -> None:
    run_id = filled(s)
    assert names(listing(s, run_id, "b/c.txt")) == ["b/c.txt"]


def test_pages_follow_each_other_without_gaps(s: Stubs) -> None:
    run_id = s.new_run()
    paths = sorted(f"f{i:02d}" for i in range(7))
    for path in paths:
        upload(s, run_id, path, b"x")
    for size in (1, 2, 3, 7, 10):
        assert names(listing(s, run_id, recursive=True, page_size=size)) == paths


def test_a_page_token_of_another_listing_is_refused(s: Stubs) -> None:
    run_id = filled(s)
    first = s.artifacts.ListArtifacts(
        apb.ListArtifactsRequest(run_id=run_id, recursive=True, page_size=1)
    )
    for request in (
        apb.ListArtifactsRequest(run_id=run_id, page_token=first.next_page_token),
        apb.ListArtifactsRequest(run_id=run_id, page_token="garbage"),
        apb.ListArtifactsRequest(run_id=run_id, page_size=10_001),
    ):
        with pytest.raises(grpc.RpcError) as info:
            s.artifacts.ListArtifacts(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason(info.value) in ("INVALID_PAGE_TOKEN", "INVALID_PAGE_SIZE")


def test_the_listing_names_the_runs_root(s: Stubs) -> None:
    run_id = s.new_run()
    run = s.tracking.GetRun(tpb.GetRunRequest(run_id=run_id)).run
    root = s.artifacts.ListArtifacts(apb.ListArtifactsRequest(run_id=run_id)).root_uri
    assert root == run.artifact_uri and root.endswith(f"/{run_id}/artifacts")


def test_deleting_a_file_a_directory_or_everything(s: Stubs, server: ServerProcess) -> None:
    run_id = filled(s)
    delete = s.artifacts.DeleteArtifact
    assert delete(apb.DeleteArtifactRequest(run_id=run_id, path="a.txt")).deleted_files == 1
    assert delete(apb.DeleteArtifactRequest(run_id=run_id, path="b")).deleted_files == 2
    assert names(listing(s, run_id, recursive=True)) == ["b-x.txt", "z/y/x.bin"]
    with pytest.raises(grpc.RpcError) as info:
        delete(apb.DeleteArtifactRequest(run_id=run_id, path="b"))
    assert reason(info.value) == "ARTIFACT_NOT_FOUND"
    assert delete(apb.DeleteArtifactRequest(run_id=run_id)).deleted_files == 2
    assert listing(s, run_id, recursive=True) == []
    assert [p for p in server.artifacts.rglob("*") if p.is_file()] == []


def test_a_file_cannot_go_where_a_directory_is_or_under_a_file(s: Stubs) -> None:
    run_id = filled(s)
    with pytest.raises(grpc.RpcError) as info:
        upload(s, run_id, "b", b"x")
    assert (info.value.code(), reason(info.value)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "ARTIFACT_IS_DIRECTORY",
    )
    with pytest.raises(grpc.RpcError) as info:
        upload(s, run_id, "a.txt/inner", b"x")
    assert reason(info.value) == "INVALID_ARTIFACT_PATH"


def test_a_deleted_runs_artifacts_are_read_only(s: Stubs) -> None:
    run_id = filled(s)
    s.tracking.DeleteRun(tpb.DeleteRunRequest(run_id=run_id))
    writes = [
        lambda: upload(s, run_id, "new", b"x"),
        lambda: s.artifacts.DeleteArtifact(apb.DeleteArtifactRequest(run_id=run_id)),
        lambda: s.artifacts.CreateArtifactUploadUrls(
            apb.CreateArtifactUploadUrlsRequest(run_id=run_id, path="p", sha256="0" * 64)
        ),
    ]
    for write in writes:
        with pytest.raises(grpc.RpcError) as info:
            write()
        assert (info.value.code(), reason(info.value)) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "RUN_DELETED",
        )
    assert names(listing(s, run_id, recursive=True)) == sorted(FILES)
    assert download(s, run_id, "a.txt")[1] == b"a.txt"
    s.tracking.RestoreRun(tpb.RestoreRunRequest(run_id=run_id))
    upload(s, run_id, "new", b"x")
