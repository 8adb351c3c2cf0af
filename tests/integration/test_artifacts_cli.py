"""``trackline artifacts list|upload|download|delete`` against a real server: tables and
JSON, uploads of files and trees, downloads by run or URI, the progress bar, and every
failure as one line on stderr with exit status 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from trackline import TracklineClient

from tests.support.artifacts import TREE, big_file, read_tree, sha256, write_tree
from tests.support.servers import ServerProcess, start_server


@pytest.fixture
def local_server(tmp_path: Path) -> ServerProcess:
    return start_server(tmp_path / "srv")


def _cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackline.cli", "--uri", server.address, "artifacts", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _ok(server: ServerProcess, *args: str) -> str:
    done = _cli(server, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _one_line_error(server: ServerProcess, *args: str) -> str:
    done = _cli(server, *args)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("trackline: "), done.stderr
    return lines[0]


def test_upload_list_download_delete(local_server: ServerProcess, tmp_path: Path) -> None:
    run_id = TracklineClient(local_server.address).create_run("0").run_id
    src = write_tree(tmp_path / "src")
    assert _ok(local_server, "upload", run_id, str(src / "a.txt")).strip() == (
        f"uploaded {src / 'a.txt'} to runs:/{run_id}/"
    )
    _ok(local_server, "upload", run_id, str(src), "--artifact-path", "tree")

    header, *rows = _ok(local_server, "list", run_id).splitlines()
    assert header.split() == ["PATH", "SIZE", "SHA256"]
    assert [r.split()[0] for r in rows] == ["a.txt", "tree/"]
    assert rows[0].split()[1:] == ["6", sha256(b"alpha\n")]
    listed = json.loads(_ok(local_server, "list", run_id, "tree", "--recursive", "--json"))
    assert {f["path"]: f["file_size"] for f in listed} == {
        f"tree/{rel}": len(data) for rel, data in TREE.items()
    }
    assert _ok(local_server, "list", run_id, "tree/none").strip() == "no artifacts found"

    got = _ok(local_server, "download", run_id, "tree", "--dst", str(tmp_path / "out")).strip()
    assert got == str(tmp_path / "out" / "tree") and read_tree(Path(got)) == TREE
    by_uri = _ok(local_server, "download", f"runs:/{run_id}/tree/a.txt", "--dst", str(tmp_path))
    assert Path(by_uri.strip()).read_bytes() == b"alpha\n"
    everything = _ok(local_server, "download", run_id).strip()  # into a new temp directory
    assert (Path(everything) / "tree" / "deep" / "b c.csv").is_file()

    assert _ok(local_server, "delete", run_id, "tree/deep").strip() == "deleted 2 files"
    assert _ok(local_server, "delete", run_id, "a.txt").strip() == "deleted 1 file"


def test_progress_bar(local_server: ServerProcess, tmp_path: Path) -> None:
    run_id = TracklineClient(local_server.address).create_run("0").run_id
    data = big_file(tmp_path / "big.bin", 9 * 1024 * 1024)
    up = _cli(local_server, "upload", run_id, str(tmp_path / "big.bin"), "--progress")
    assert up.returncode == 0, up.stderr
    assert up.stderr.rstrip().rsplit("\r", 1)[-1].startswith("upload [")
    assert "100%" in up.stderr and "9.4/9.4 MB" in up.stderr and "MB/s" in up.stderr
    down = _cli(local_server, "download", run_id, "big.bin", "--dst", str(tmp_path / "o"))
    assert down.returncode == 0 and down.stderr == ""  # no terminal, no --progress: no bar
    assert Path(down.stdout.strip()).read_bytes() == data


def test_errors_are_one_line(local_server: ServerProcess, tmp_path: Path) -> None:
    run_id = TracklineClient(local_server.address).create_run("0").run_id
    (tmp_path / "f.txt").write_text("x")
    assert "RUN_NOT_FOUND" in _one_line_error(local_server, "list", "0" * 32)
    hostile = _one_line_error(
        local_server, "upload", run_id, str(tmp_path / "f.txt"), "--artifact-path", "../up"
    )
    assert "INVALID_ARTIFACT_PATH" in hostile and "../up" in hostile
    assert "ARTIFACT_NOT_FOUND" in _one_line_error(local_server, "download", run_id, "nope.txt")
    assert "ARTIFACT_NOT_FOUND" in _one_line_error(local_server, "delete", run_id, "nope.txt")
    missing = _one_line_error(local_server, "upload", run_id, str(tmp_path / "missing.txt"))
    assert "missing.txt" in missing
    assert "gs://b/k" in _one_line_error(local_server, "download", "gs://b/k")
    both = _one_line_error(local_server, "download", f"runs:/{run_id}/x", "y")
    assert "artifact URI alone" in both
    assert "required" in _one_line_error(local_server, "upload", run_id)
