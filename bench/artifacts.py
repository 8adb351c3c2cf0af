"""Artifact transfer figures: upload and download MB/s of one file (1 GB by default) through
the server's proxy with the Python client (``log_artifact`` / ``download_artifacts``), on
local storage and on an S3-compatible test server (moto, on loopback; there also straight to
storage by presigned URLs), with the server's peak RSS growth during each transfer; and the
same file through MLflow 3's proxied artifact server (``mlflow server --artifacts-only``,
installed on first use into its own environment, see bench/peers.py) with a plain streaming
HTTP client: MLflow's best case, no client overhead. Figures only: nothing here passes or
fails on time.

Peak RSS growth is the server's VmHWM after a transfer less its resident size before it (the
peak is reset between transfers through /proc/<pid>/clear_refs). Every file is checked
byte-for-byte (by SHA-256) after its round trip. The machine's page cache holds the file, so
these are transfer figures, not disk figures.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from trackline import TracklineClient

from bench import peers
from tests.support.ports import free_port
from tests.support.s3 import S3Bucket, s3_env
from tests.support.servers import ServerProcess, start_server

CHUNK = 4 << 20


def make_file(path: Path, size: int) -> str:
    """Writes ``size`` random-looking bytes (a repeated random block: generating 1 GB of
    os.urandom would dominate the run) and returns their SHA-256."""
    block = os.urandom(CHUNK)
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            piece = block[: min(left, CHUNK)]
            f.write(piece)
            digest.update(piece)
            left -= len(piece)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while piece := f.read(CHUNK):
            digest.update(piece)
    return digest.hexdigest()


def _rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


@contextmanager
def peak_growth(pid: int, out: list[float]) -> Iterator[None]:
    """Appends to ``out`` the MB by which ``pid``'s peak RSS rose over its RSS before."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _rss_kb(pid, "VmRSS")
    yield
    out.append((_rss_kb(pid, "VmHWM") - before) / 1024)


def timed(fn: Callable[[], object], size: int) -> float:
    """MB/s (10^6 bytes) of ``fn`` moving ``size`` bytes."""
    start = time.perf_counter()
    fn()
    return size / 1e6 / (time.perf_counter() - start)


@contextmanager
def moto_bucket() -> Iterator[S3Bucket]:
    """moto's S3 server on a free loopback port, with an empty bucket."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        bucket = S3Bucket(endpoint, "bench", env=s3_env(endpoint))
        bucket.client().create_bucket(Bucket=bucket.bucket)
        yield bucket
    finally:
        server.stop()


def trackline_round_trip(
    label: str, srv: ServerProcess, src: Path, digest: str, *, presigned: bool = False
) -> None:
    """One upload and one download of ``src``: through the server's proxy, or with
    ``presigned`` straight to storage by presigned URLs (the client's choice for big files
    when the server offers them)."""
    size = src.stat().st_size
    growth: list[float] = []
    client = TracklineClient(srv.address, timeout=600)
    client.presigned_available = presigned
    try:
        run_id = client.create_run("0", run_name=f"bench-artifacts-{label}").run_id
        with peak_growth(srv.proc.pid, growth):
            up = timed(lambda: client.log_artifact(run_id, src, "bench"), size)
        with tempfile.TemporaryDirectory() as dst, peak_growth(srv.proc.pid, growth):
            down = timed(lambda: client.download_artifacts(run_id, f"bench/{src.name}", dst), size)
            if sha256_of(Path(dst) / src.name) != digest:
                raise RuntimeError("the downloaded file differs from the uploaded one")
    finally:
        client.close()
    print(
        f"  Trackline, {label}: upload {up:,.0f} MB/s, download {down:,.0f} MB/s;"
        f" server peak RSS growth {growth[0]:.0f} MB up, {growth[1]:.0f} MB down",
        flush=True,
    )


def mlflow_round_trip(src: Path, digest: str, work: Path) -> None:
    size = src.stat().st_size
    proc, url = peers.start_mlflow_artifact_server(work / "mlflow-artifacts")
    try:
        host, port = url.removeprefix("http://").split(":")
        path = f"/api/2.0/mlflow-artifacts/artifacts/bench/{src.name}"

        def upload() -> None:
            conn = http.client.HTTPConnection(host, int(port), timeout=600, blocksize=CHUNK)
            with src.open("rb") as f:
                conn.request("PUT", path, body=f, headers={"Content-Length": str(size)})
            reply = conn.getresponse()
            reply.read()
            if reply.status != 200:
                raise RuntimeError(f"MLflow upload: HTTP {reply.status}")
            conn.close()

        dst = work / "from-mlflow.bin"

        def download() -> None:
            conn = http.client.HTTPConnection(host, int(port), timeout=600)
            conn.request("GET", path)
            reply = conn.getresponse()
            if reply.status != 200:
                raise RuntimeError(f"MLflow download: HTTP {reply.status}")
            with dst.open("wb") as f:
                while piece := reply.read(CHUNK):
                    f.write(piece)
            conn.close()

        up = timed(upload, size)
        down = timed(download, size)
        if sha256_of(dst) != digest:
            raise RuntimeError("the file downloaded from MLflow differs from the uploaded one")
        rss = peers.group_peak_rss_mb(proc.pid)
        print(
            f"  MLflow {peers.MLFLOW.split('==')[1]} proxied artifacts (`mlflow server"
            f" --artifacts-only`): upload {up:,.0f} MB/s, download {down:,.0f} MB/s;"
            f" peak RSS of its processes {rss:.0f} MB",
            flush=True,
        )
    finally:
        peers.stop_group(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=1024, help="file size in MiB")
    parser.add_argument("--no-mlflow", action="store_true", help="skip the MLflow peer")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 test server")
    args = parser.parse_args()
    size = args.mb << 20
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = work / "payload.bin"
        digest = make_file(src, size)
        print(f"artifacts: one file of {args.mb:,} MiB, proxied through the server", flush=True)
        for name in ("local", "s3"):
            (work / name).mkdir()
        srv = start_server(work / "local")
        try:
            trackline_round_trip("local storage", srv, src, digest)
        finally:
            srv.stop()
        if not args.no_s3:
            with moto_bucket() as bucket:
                srv = start_server(work / "s3", extra_args=bucket.server_args, env=bucket.env)
                try:
                    trackline_round_trip("S3 test server (moto), proxied", srv, src, digest)
                    trackline_round_trip(
                        "S3 test server (moto), presigned URLs", srv, src, digest, presigned=True
                    )
                finally:
                    srv.stop()
        if not args.no_mlflow:
            mlflow_round_trip(src, digest, work)


if __name__ == "__main__":
    main()
