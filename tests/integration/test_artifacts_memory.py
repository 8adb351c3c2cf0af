"""A 2 GB file goes through the proxy both ways (local backend) in chunks: the server's peak
resident memory (VmHWM) grows by less than 64 MB over the round trip."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from trackline.v1 import artifacts_pb2 as apb

from tests.support.artifact_stubs import CHUNK, stubs
from tests.support.servers import start_server

SIZE = 2 * 1024**3
BLOCK = os.urandom(CHUNK)  # the file is this block over and over: nothing to generate
LIMIT = 64 * 1024 * 1024

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/<pid>/status")


def peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_2_gb_round_trip_keeps_server_memory_bounded(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    s = stubs(server.address)
    run_id = s.new_run()
    digest = hashlib.sha256()
    for _ in range(SIZE // CHUNK):
        digest.update(BLOCK)
    sha256 = digest.hexdigest()
    warm = b"w" * CHUNK  # a first small transfer, so the baseline includes the machinery
    s.artifacts.UploadArtifact(
        iter(
            [
                apb.UploadArtifactRequest(
                    header=apb.UploadArtifactHeader(
                        run_id=run_id,
                        path="warm",
                        size=len(warm),
                        sha256=hashlib.sha256(warm).hexdigest(),
                    )
                ),
                apb.UploadArtifactRequest(chunk=warm),
            ]
        )
    )
    for _ in s.artifacts.DownloadArtifact(apb.DownloadArtifactRequest(run_id=run_id, path="warm")):
        pass
    before = peak_rss(server.proc.pid)

    def messages() -> Iterator[apb.UploadArtifactRequest]:
        yield apb.UploadArtifactRequest(
            header=apb.UploadArtifactHeader(run_id=run_id, path="big", size=SIZE, sha256=sha256)
        )
        for _ in range(SIZE // CHUNK):
            yield apb.UploadArtifactRequest(chunk=BLOCK)

    stored = s.artifacts.UploadArtifact(messages(), timeout=300).file
    assert (stored.size, stored.sha256) == (SIZE, sha256)
    received = 0
    for reply in s.artifacts.DownloadArtifact(
        apb.DownloadArtifactRequest(run_id=run_id, path="big"), timeout=300
    ):
        received += len(reply.chunk)
    assert received == SIZE
    growth = peak_rss(server.proc.pid) - before
    # Not left for pytest to keep among the last runs' temporary directories.
    s.artifacts.DeleteArtifact(apb.DeleteArtifactRequest(run_id=run_id, path="big"))
    assert growth < LIMIT, f"server peak RSS grew by {growth / 2**20:.0f} MiB"
