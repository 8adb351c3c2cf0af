"""A ``docker_env`` project's ``docker run``: the image, the project mounted as the working
folder, the declared volumes and environment variables, the tracking variables, and the network
that reaches the tracking server (the host's, when the server is on this machine's loopback).
It runs only when a Docker engine answers ``docker info``."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .._uri import InvalidUri, parse_uri
from .errors import ProjectError
from .spec import DockerEnv

PROJECT_MOUNT = "/trackline/project"
_INFO_TIMEOUT_S = 20.0
# passed by name (``-e NAME``): docker reads the value from its own environment, so a token is
# not on a command line that ``ps`` shows
FORWARDED = (
    "TRACKLINE_URI",
    "TRACKLINE_RUN_ID",
    "TRACKLINE_EXPERIMENT_ID",
    "TRACKLINE_EXPERIMENT",
    "TRACKLINE_TOKEN",
    # TLS: the paths only; the project's volumes must mount the files at the same paths
    "TRACKLINE_CA_FILE",
    "TRACKLINE_CLIENT_CERT",
    "TRACKLINE_CLIENT_KEY",
    "PYTHONUNBUFFERED",
)


def check_docker_engine() -> None:
    """ProjectError unless the docker command is installed and its engine answers."""
    docker = shutil.which("docker")
    if docker is None:
        raise ProjectError(
            "the project has a docker_env, but docker is not installed (no docker command on PATH)"
        )
    try:
        done = subprocess.run(
            [docker, "info"], capture_output=True, text=True, timeout=_INFO_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise ProjectError(
            "the project has a docker_env, but `docker info` did not answer within"
            f" {_INFO_TIMEOUT_S:.0f} s"
        ) from None
    if done.returncode != 0:
        reason = (
            " ".join((done.stderr or done.stdout).split())[:300] or f"exit status {done.returncode}"
        )
        raise ProjectError(
            f"the project has a docker_env, but no Docker engine answers `docker info`: {reason}"
        )


def check_host_variables(env: DockerEnv, host: Mapping[str, str]) -> None:
    """ProjectError naming the variables ``env`` copies from the host that are not set."""
    missing = [name for name in env.environment if isinstance(name, str) and name not in host]
    if missing:
        raise ProjectError(
            f"docker_env: field 'environment': expected {', '.join(missing)} to be set here,"
            " to copy into the container"
        )


@dataclass(frozen=True)
class DockerRun:
    env: DockerEnv

    def argv(
        self, command: str, env: Mapping[str, str], cwd: Path
    ) -> tuple[list[str], dict[str, str]]:
        """The ``docker run`` argv for ``command`` of the project in ``cwd``, and the
        environment of the docker command (the forwarded variables' values)."""
        check_host_variables(self.env, env)
        argv = ["docker", "run", "--rm", "--init"]  # --init: signals reach the command
        if run_id := env.get("TRACKLINE_RUN_ID"):
            argv += ["--name", container_name(run_id)]
        if _on_loopback(env.get("TRACKLINE_URI", "")):
            argv += ["--network", "host"]  # the container's own loopback has no server
        argv += ["-v", f"{cwd}:{PROJECT_MOUNT}", "-w", PROJECT_MOUNT]
        for volume in self.env.volumes:
            argv += ["-v", volume]
        for name in FORWARDED:
            if name in env:
                argv += ["-e", name]
        for item in self.env.environment:
            argv += ["-e", item] if isinstance(item, str) else ["-e", f"{item[0]}={item[1]}"]
        argv += [self.env.image, "sh", "-c", command]
        return argv, dict(env)


def remove_container(run_id: str) -> None:
    """Removes the run's container, if it still runs (best effort): stopping ``docker run``
    with SIGKILL would leave it running."""
    try:
        subprocess.run(
            ["docker", "rm", "--force", container_name(run_id)],
            capture_output=True,
            timeout=_INFO_TIMEOUT_S,
        )
    except (OSError, subprocess.SubprocessError):
        pass


def container_name(run_id: str) -> str:
    return f"trackline-{run_id}"


def _on_loopback(uri: str) -> bool:
    """Whether the tracking server's address is this machine's loopback."""
    try:
        host = parse_uri(uri).host if uri else "localhost"
    except InvalidUri:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
