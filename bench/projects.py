"""Project run figures on a fresh server (SQLite): what `trackline run` adds to running a
project's command directly, with the local env manager and with a cached uv environment
(median of ``--repeat`` runs each, and the uv environment's first build), and the latency from
SubmitProjectRun to the command starting on an idle `trackline worker`. Figures only: nothing
here passes or fails on time.

The project's command is one Python process that writes the time it started to a file, so
"started" means the project's own code runs. `trackline run` is measured as a user runs it (a
new process: the CLI's start-up included) and as the executor alone (`execute(...)` in this
process), so the two costs show apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from trackline import TracklineClient
from trackline.projects.execution import execute

from tests.support.servers import start_server
from tests.support.workers import start_worker, stop_started_workers

STAMP = "import sys, time; open(sys.argv[1], 'w').write(repr(time.time()))"
MLPROJECT = f"""name: bench
entry_points:
  main:
    parameters:
      out: string
    command: "python -c \\"{STAMP}\\" {{out}}"
"""
PYTHON_ENV = f'python: "{sys.version_info.major}.{sys.version_info.minor}"\ndependencies: []\n'


def project(root: Path, name: str, *, uv: bool) -> Path:
    directory = root / name
    directory.mkdir()
    (directory / "MLproject").write_text(MLPROJECT)
    if uv:
        (directory / "python_env.yaml").write_text(PYTHON_ENV)
    return directory


def median_s(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def overheads(address: str, root: Path, repeat: int) -> None:
    out = root / "stamp.txt"
    direct = median_s(
        lambda: subprocess.run([sys.executable, "-c", STAMP, str(out)], check=True), repeat
    )
    print(f"  the command run directly: {direct:.3f} s", flush=True)
    client = TracklineClient(address)
    try:
        for label, manager, uv in (("local", "local", False), ("uv, cached", "uv", True)):
            project_overhead(client, root, label, manager, uv=uv, direct=direct, repeat=repeat)
    finally:
        client.close()


def project_overhead(
    client: TracklineClient,
    root: Path,
    label: str,
    manager: str,
    *,
    uv: bool,
    direct: float,
    repeat: int,
) -> None:
    """`trackline run` of a project with env manager ``manager``, through the CLI and the
    executor alone (a uv environment is built once first, and that build is shown)."""
    directory = project(root, f"project-{manager}", uv=uv)
    out = root / "stamp.txt"
    params = {"out": str(out)}

    def run_once() -> None:
        result = execute(
            client, str(directory), params=params, env_manager=manager, on_output=_drop
        )
        if result.status != "FINISHED":
            raise RuntimeError(f"the project run ended {result.status}")

    if uv:
        print(f"  uv environment's first build and run: {median_s(run_once, 1):.3f} s", flush=True)
    cli = [
        sys.executable, "-m", "trackline.cli", "run", str(directory),
        "-P", f"out={out}", "--env-manager", manager,
    ]  # fmt: skip
    env = {**os.environ, "TRACKLINE_URI": client.uri}
    through_cli = median_s(
        lambda: subprocess.run(cli, check=True, env=env, capture_output=True), repeat
    )
    in_process = median_s(run_once, repeat)
    print(
        f"  trackline run, {label}: {through_cli:.3f} s (+{through_cli - direct:.3f} s);"
        f" the executor alone {in_process:.3f} s (+{in_process - direct:.3f} s)",
        flush=True,
    )


def _drop(line: str) -> None:
    """Output goes nowhere: the bench prints figures only."""


def submit_to_start(address: str, root: Path, repeat: int) -> None:
    directory = project(root, "project-worker", uv=False)
    start_worker(address, root, "bench-worker")
    client = TracklineClient(address)
    latencies = []
    try:
        for i in range(repeat):
            out = root / f"worker-stamp-{i}.txt"
            submitted = time.time()
            run = client.submit_project_run(
                str(directory), params={"out": str(out)}, env_manager="local"
            )
            deadline = time.monotonic() + 60
            while not out.exists() or not out.read_text():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"project run {run.project_run_id} did not start")
                time.sleep(0.002)
            latencies.append(float(out.read_text()) - submitted)
    finally:
        client.close()
        stop_started_workers()
    latencies.sort()
    print(
        f"  submit -> command started on an idle worker: p50 {statistics.median(latencies):.3f} s,"
        f" max {latencies[-1]:.3f} s ({repeat} runs)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs per figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["TRACKLINE_ENV_CACHE"] = str(root / "envs")  # the uv build is measured
        srv = start_server(root / "server")
        try:
            print("projects (SQLite server on loopback)", flush=True)
            overheads(srv.address, root, args.repeat)
            submit_to_start(srv.address, root, args.repeat)
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
