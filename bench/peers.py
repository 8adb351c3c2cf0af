"""The peers a benchmark measures Trackline beside (MLflow 3's servers, and later BentoML),
each installed on first use into a virtual environment of its own under ``.bench-peers/``
(gitignored), so their dependencies never meet Trackline's. The first run needs PyPI and
takes a few minutes; later runs reuse the environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / ".bench-peers"
MLFLOW = "mlflow==3.17.2"


def peer_python(name: str, requirement: str) -> Path:
    """The Python of the peer environment ``name``, created with ``requirement`` installed
    when it does not exist yet (a half-made one is made again)."""
    env = PEERS / name
    python = env / "bin" / "python"
    done = env / ".installed"
    if not done.exists():
        print(f"installing {requirement} into {env.relative_to(ROOT)} (first run only)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--upgrade", "pip", requirement],
            check=True,
        )
        done.write_text(requirement + "\n")
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mlflow_artifact_server(destination: Path) -> tuple[subprocess.Popen[bytes], str]:
    """MLflow 3's proxied artifact server (``mlflow server --artifacts-only``) storing under
    ``destination``; returns the process (its own process group) and its base URL once it
    answers."""
    python = peer_python("mlflow", MLFLOW)
    port = free_port()
    proc = subprocess.Popen(
        [
            str(python), "-m", "mlflow", "server", "--artifacts-only",
            "--artifacts-destination", str(destination),
            "--host", "127.0.0.1", "--port", str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.5)
    stop_group(proc)
    raise RuntimeError("mlflow server did not start within 120 s")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stops a peer and the workers it forked."""
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(15)


def group_peak_rss_mb(pid: int) -> float:
    """The summed peak RSS (VmHWM) of a process and its descendants, in MB."""
    total = 0
    for p in _tree(pid):
        total += _status_kb(p, "VmHWM")
    return total / 1024


def _tree(pid: int) -> list[int]:
    found = [pid]
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        found.extend(_tree(int(child)))
    return found


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0
