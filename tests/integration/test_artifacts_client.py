"""TracklineClient's artifact methods and artifact URIs against a real server: round trips of
awkward files and trees, listings, replacement and deletion, refused paths and runs,
uploads and downloads broken by a server crash and resumed, presigned transfers to S3 (moto)
and the fallback to the proxy, and every URI form ``download_uri`` resolves."""

from __future__ import annotations

import os
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from trackline import FileInfo, InvalidArgument, NotFound, TracklineClient
from trackline._artifact_uris import download_uri

from tests.support.artifacts import TREE, Restartable, big_file, read_tree, sha256, write_tree
from tests.support.s3 import S3Bucket
from tests.support.servers import start_server


@pytest.fixture
def run_id(client: TracklineClient) -> str:
    return client.create_run("0").run_id


@pytest.fixture
def local_client(tmp_path: Path) -> TracklineClient:
    """A client of a SQLite server with local storage, for tests where the store matters
    little."""
    return TracklineClient(start_server(tmp_path / "srv").address, retry_seconds=10)


def test_round_trip_of_files(client: TracklineClient, run_id: str, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src")
    for rel in ("a.txt", "empty.bin", "naïve café ✓.txt"):
        client.log_artifact(run_id, src / rel)
    client.log_artifact(run_id, src / "deep/er/still/z.json", "nested/dir/")

    root = client.list_artifacts(run_id)
    assert root == [
        FileInfo("a.txt", False, 6, sha256(b"alpha\n")),
        FileInfo("empty.bin", False, 0, sha256(b"")),
        FileInfo(
            "naïve café ✓.txt",
            False,
            len(TREE["naïve café ✓.txt"]),
            sha256(TREE["naïve café ✓.txt"]),
        ),
        FileInfo("nested", True, None, None),
    ]
    assert [f.path for f in client.list_artifacts(run_id, "nested", recursive=True)] == [
        "nested/dir/z.json"
    ]
    assert client.list_artifacts(run_id, "nested/dir/z.json")[0].file_size == 8

    out = tmp_path / "out"
    for rel in ("a.txt", "empty.bin", "naïve café ✓.txt"):
        local = client.download_artifacts(run_id, rel, out)
        assert local == str(out / rel)
        assert Path(local).read_bytes() == TREE[rel]
    nested = client.download_artifacts(run_id, "nested", out)
    assert nested == str(out / "nested")
    assert read_tree(Path(nested)) == {"dir/z.json": b'{"z": 1}'}
    assert not [p for p in out.rglob("*.part")]  # no temporary file left behind


def test_log_artifacts_of_a_tree(local_client: TracklineClient, tmp_path: Path) -> None:
    client = local_client
    run_id = client.create_run("0").run_id
    src = write_tree(tmp_path / "src")
    (src / "deep" / "inside-link").symlink_to(src / "a.txt")  # inside the tree: followed
    client.log_artifacts(run_id, src, "data")
    client.log_artifacts(run_id, src)

    listed = client.list_artifacts(run_id, "data", recursive=True)
    expected = {**TREE, "deep/inside-link": TREE["a.txt"]}
    assert {f.path: (f.file_size, f.sha256) for f in listed} == {
        f"data/{rel}": (len(data), sha256(data)) for rel, data in expected.items()
    }
    got = client.download_artifacts(run_id, "data", tmp_path / "out")
    assert read_tree(Path(got)) == expected
    everything = client.download_artifacts(run_id)  # a new temporary directory
    tree = read_tree(Path(everything))
    assert tree == {**expected, **{f"data/{rel}": d for rel, d in expected.items()}}


def test_symlinks_out_of_the_tree_are_refused(
    local_client: TracklineClient, tmp_path: Path
) -> None:
    run_id = local_client.create_run("0").run_id
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    src = write_tree(tmp_path / "src", {"ok.txt": b"ok"})
    (src / "leak").symlink_to(outside)
    with pytest.raises(ValueError, match="leak.*outside"):
        local_client.log_artifacts(run_id, src)
    (src / "leak").unlink()
    (src / "loop").symlink_to(src)
    with pytest.raises(ValueError, match="loop"):
        local_client.log_artifacts(run_id, src)
    assert local_client.list_artifacts(run_id) == []  # nothing was sent


def test_replace_and_delete(client: TracklineClient, run_id: str, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src")
    client.log_artifacts(run_id, src)
    (src / "a.txt").write_bytes(b"second version")
    client.log_artifact(run_id, src / "a.txt")
    assert Path(client.download_artifacts(run_id, "a.txt", tmp_path / "o")).read_bytes() == (
        b"second version"
    )
    assert client.delete_artifacts(run_id, "a.txt") == 1
    assert client.delete_artifacts(run_id, "deep") == 2
    with pytest.raises(NotFound) as gone:
        client.delete_artifacts(run_id, "deep")
    assert gone.value.reason == "ARTIFACT_NOT_FOUND"
    assert [f.path for f in client.list_artifacts(run_id)] == [
        "bin",
        "empty.bin",
        "naïve café ✓.txt",
    ]
    assert client.delete_artifacts(run_id) == 3
    assert client.list_artifacts(run_id) == []


@pytest.mark.parametrize("hostile", ["../escape", "/etc", "a/../../b", "a\x00b", "a\\b", "c\x07"])
def test_hostile_paths_are_refused_naming_them(
    local_client: TracklineClient, tmp_path: Path, hostile: str
) -> None:
    run_id = local_client.create_run("0").run_id
    src = tmp_path / "f.txt"
    src.write_text("x")
    with pytest.raises(InvalidArgument) as upload:
        local_client.log_artifact(run_id, src, hostile)
    assert upload.value.reason == "INVALID_ARTIFACT_PATH"
    if hostile.isprintable():
        assert hostile in upload.value.message
    for call in (local_client.list_artifacts, local_client.download_artifacts):
        with pytest.raises(InvalidArgument) as read:
            call(run_id, hostile)
        assert read.value.reason == "INVALID_ARTIFACT_PATH"
    assert local_client.list_artifacts(run_id) == []
    assert not list((tmp_path / "srv").rglob("f.txt"))  # not written anywhere on the server


def test_unknown_run_and_missing_artifact(local_client: TracklineClient, tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_text("x")
    with pytest.raises(NotFound) as no_run:
        local_client.log_artifact("0" * 32, src)
    assert no_run.value.reason == "RUN_NOT_FOUND"
    with pytest.raises(NotFound):
        local_client.list_artifacts("0" * 32)
    run_id = local_client.create_run("0").run_id
    with pytest.raises(NotFound) as missing:
        local_client.download_artifacts(run_id, "nothing/here.txt", tmp_path / "out")
    assert missing.value.reason == "ARTIFACT_NOT_FOUND"
    assert "nothing/here.txt" in missing.value.message
    with pytest.raises(ValueError, match="directory"):
        local_client.log_artifact(run_id, tmp_path)


class KillOnce:
    """A Progress that kills the server and starts it again once ``after`` bytes moved; it
    records every advance, to tell a resumed transfer from one started over."""

    def __init__(self, server: Restartable, after: int) -> None:
        self.server = server
        self.after = after
        self.moved = 0
        self.at_kill: int | None = None
        self.backwards = False
        self.lock = threading.Lock()

    def expect(self, nbytes: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        with self.lock:
            self.backwards |= nbytes < 0
            self.moved += nbytes
            if self.at_kill is None and self.moved >= self.after:
                self.at_kill = self.moved
                self.server.kill_and_restart()


def test_download_resumes_after_the_server_restarts(tmp_path: Path) -> None:
    server = Restartable(tmp_path)
    client = TracklineClient(server.address, retry_seconds=20)
    run_id = client.create_run("0").run_id
    data = big_file(tmp_path / "big.bin", 48 * 1024 * 1024 + 123)
    client.log_artifact(run_id, tmp_path / "big.bin")

    sink = KillOnce(server, after=4 * 1024 * 1024)
    got = client.download_artifacts(run_id, "big.bin", tmp_path / "out", progress=sink)
    assert server.restarts == 1 and sink.at_kill is not None and sink.at_kill < len(data)
    assert not sink.backwards and sink.moved == len(data)  # resumed, not started over
    assert Path(got).read_bytes() == data
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["big.bin"]


def test_upload_retried_after_the_server_restarts(tmp_path: Path) -> None:
    server = Restartable(tmp_path)
    client = TracklineClient(server.address, retry_seconds=20)
    run_id = client.create_run("0").run_id
    data = big_file(tmp_path / "big.bin", 24 * 1024 * 1024)
    sink = KillOnce(server, after=8 * 1024 * 1024)
    client.log_artifact(run_id, tmp_path / "big.bin", progress=sink)
    assert server.restarts == 1
    assert client.list_artifacts(run_id) == [FileInfo("big.bin", False, len(data), sha256(data))]
    assert Path(client.download_artifacts(run_id, "big.bin", tmp_path / "o")).read_bytes() == data


def test_presigned_transfers_to_s3(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    server = start_server(tmp_path, extra_args=s3_bucket.server_args, env=s3_bucket.env)
    client = TracklineClient(server.address, retry_seconds=10)
    client.presigned_threshold = 1024 * 1024
    run_id = client.create_run("0").run_id
    data = big_file(tmp_path / "big.bin", 12 * 1024 * 1024 + 5)
    (tmp_path / "small.txt").write_text("small")
    client.log_artifact(run_id, tmp_path / "big.bin", "m")
    client.log_artifact(run_id, tmp_path / "small.txt", "m")  # below the threshold: proxied
    assert client.presigned_available
    stored = [k.rsplit("/", 2)[-2:] for k in s3_bucket.keys()]
    assert ["m", "big.bin"] in stored and ["m", "small.txt"] in stored
    assert {f.path: f.file_size for f in client.list_artifacts(run_id, "m")} == {
        "m/big.bin": len(data),
        "m/small.txt": 5,
    }
    got = client.download_artifacts(run_id, "m", tmp_path / "out")
    assert client.presigned_available
    assert read_tree(Path(got)) == {"big.bin": data, "small.txt": b"small"}


def test_unreachable_storage_falls_back_to_the_proxy(
    s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server(tmp_path, extra_args=s3_bucket.server_args, env=s3_bucket.env)
    client = TracklineClient(server.address, retry_seconds=10)
    client.presigned_threshold = 1024
    run_id = client.create_run("0").run_id
    data = big_file(tmp_path / "big.bin", 3 * 1024 * 1024)
    real = urllib.request.urlopen
    calls: list[str] = []

    def unreachable(request: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(request, "full_url", request))
        raise urllib.error.URLError(ConnectionRefusedError("refused"))

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    client.log_artifact(run_id, tmp_path / "big.bin")
    assert calls and not client.presigned_available  # tried once, then remembered
    client.log_artifact(run_id, tmp_path / "big.bin", "again")
    assert len(calls) == 1
    monkeypatch.setattr(urllib.request, "urlopen", real)
    got = client.download_artifacts(run_id, "big.bin", tmp_path / "out")
    assert Path(got).read_bytes() == data


def test_local_storage_offers_no_presigned_urls(
    local_client: TracklineClient, tmp_path: Path
) -> None:
    local_client.presigned_threshold = 1024
    run_id = local_client.create_run("0").run_id
    data = big_file(tmp_path / "f.bin", 4096)
    local_client.log_artifact(run_id, tmp_path / "f.bin")
    assert not local_client.presigned_available
    got = local_client.download_artifacts(run_id, "f.bin", tmp_path / "out")
    assert Path(got).read_bytes() == data


def test_uri_forms(local_client: TracklineClient, tmp_path: Path) -> None:
    client = local_client
    run_id = client.create_run("0").run_id
    client.log_artifacts(run_id, write_tree(tmp_path / "src"), "model")
    expected = read_tree(tmp_path / "src")

    got = download_uri(client, f"runs:/{run_id}/model", tmp_path / "a")
    assert got == str(tmp_path / "a" / "model") and read_tree(Path(got)) == expected
    one = download_uri(client, f"runs:/{run_id}/model/a.txt", tmp_path / "b")
    assert Path(one).read_bytes() == b"alpha\n"
    client.create_registered_model("m")
    client.create_model_version("m", f"runs:/{run_id}/model", run_id)
    client.set_registered_model_alias("m", "champion", 1)
    for uri in ("models:/m/1", "models:/m@champion", "models:/m/latest"):
        assert read_tree(Path(download_uri(client, uri))) == expected

    local = tmp_path / "src"
    assert download_uri(client, str(local)) == str(local)  # as it is, nothing copied
    assert download_uri(client, local.as_uri()) == str(local)
    copied = download_uri(client, local.as_uri(), tmp_path / "c")
    assert copied == str(tmp_path / "c" / "src") and read_tree(Path(copied)) == expected
    with pytest.raises(FileNotFoundError):
        download_uri(client, str(tmp_path / "missing"))
    for bad in ("gs://bucket/x", "runs:/", "ftp://host/f", "file://otherhost/x"):
        with pytest.raises(InvalidArgument) as refused:
            download_uri(client, bad)
        assert repr(bad) in refused.value.message


def test_s3_uris_read_straight_from_s3(
    s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = s3_bucket.client()
    for rel, data in TREE.items():
        s3.put_object(Bucket=s3_bucket.bucket, Key=f"models/fraud/{rel}", Body=data)
    for key, value in s3_bucket.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("TRACKLINE_S3_ENDPOINT_URL", s3_bucket.endpoint_url)
    uri = f"s3://{s3_bucket.bucket}/models/fraud"
    got = download_uri(None, uri, tmp_path / "out")
    assert got == str(tmp_path / "out" / "fraud") and read_tree(Path(got)) == TREE
    one = download_uri(None, f"{uri}/a.txt", tmp_path / "one")
    assert Path(one).read_bytes() == b"alpha\n"
    with pytest.raises(FileNotFoundError, match="nothing"):
        download_uri(None, f"s3://{s3_bucket.bucket}/nope", tmp_path / "x")

    monkeypatch.setitem(sys.modules, "boto3", None)  # as if the s3 extra were not installed
    with pytest.raises(ImportError, match=r"pip install 'trackline\[s3\]'"):
        download_uri(None, uri, tmp_path / "y")
    assert os.path.isdir(tmp_path / "out")
