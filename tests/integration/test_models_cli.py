"""``trackline models ...`` against a real server: tables, ``--json``, one-line errors, and
``watch`` printing changes as they commit until Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from trackline import TracklineClient

from tests.support.servers import ServerProcess


def _cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackline.cli", "--uri", server.address, "models", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _models(client: TracklineClient) -> None:
    client.create_registered_model("fraud", tags={"team": "risk"}, description="catches\x1b[2J")
    client.create_registered_model("churn")
    for n in (1, 2, 3):
        client.create_model_version("fraud", f"s3://b/fraud/{n}", tags={"n": str(n)})


def test_list_and_show(client: TracklineClient, server: ServerProcess) -> None:
    _models(client)
    client.set_registered_model_alias("fraud", "champion", 2)
    client.transition_model_version_stage("fraud", 3, "Production")

    listed = _cli(server, "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["NAME", "ALIASES", "CREATED", "UPDATED", "DESCRIPTION"]
    assert [r.split()[:2] for r in rows] == [["churn", "-"], ["fraud", "champion=2"]]
    assert "\x1b" not in listed.stdout and "catches\\x1b[2J" in rows[1]
    only = _cli(server, "list", "--filter", "tags.team = 'risk'", "--json")
    assert [m["name"] for m in json.loads(only.stdout)] == ["fraud"]
    none = _cli(server, "list", "--filter", "name LIKE 'x%'")
    assert none.returncode == 0 and none.stdout.strip() == "no models found"

    shown = _cli(server, "show", "fraud")
    assert shown.returncode == 0, shown.stderr
    lines = [line.split() for line in shown.stdout.splitlines()]
    assert ["tags.team", "risk"] in lines and ["aliases.champion", "version", "2"] in lines
    assert ["latest.None", "version", "2", "(READY)", "s3://b/fraud/2"] in lines
    assert ["latest.Production", "version", "3", "(READY)", "s3://b/fraud/3"] in lines
    data = json.loads(_cli(server, "show", "fraud", "--json").stdout)
    assert data["registeredModel"]["aliases"] == [{"alias": "champion", "version": "2"}]
    assert [v["version"] for v in data["latestVersions"]] == ["2", "3"]


def test_versions(client: TracklineClient, server: ServerProcess) -> None:
    _models(client)
    client.set_registered_model_alias("fraud", "champion", 1)
    out = _cli(server, "versions", "fraud")
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.split()[:4] == ["VERSION", "STAGE", "STATUS", "ALIASES"]
    assert [r.split()[:4] for r in rows] == [
        ["3", "None", "READY", "-"],
        ["2", "None", "READY", "-"],
        ["1", "None", "READY", "champion"],
    ]
    picked = _cli(server, "versions", "fraud", "--filter", "tags.n = '2' OR tags.n = '3'", "--json")
    assert picked.returncode == 0, picked.stderr
    assert [v["version"] for v in json.loads(picked.stdout)] == ["3", "2"]
    empty = _cli(server, "versions", "churn")
    assert empty.returncode == 0 and empty.stdout.strip() == "no versions found"


def test_alias_and_transition(client: TracklineClient, server: ServerProcess) -> None:
    _models(client)
    set_alias = _cli(server, "alias", "set", "fraud", "champion", "2")
    assert set_alias.returncode == 0, set_alias.stderr
    assert client.get_model_version_by_alias("fraud", "champion").version == 2
    moved = _cli(server, "alias", "set", "fraud", "champion", "3")
    assert (
        moved.returncode == 0
        and client.get_model_version_by_alias("fraud", "champion").version == 3
    )
    deleted = _cli(server, "alias", "delete", "fraud", "champion")
    assert deleted.returncode == 0 and client.get_registered_model("fraud").aliases == []

    staged = _cli(server, "transition", "fraud", "1", "production")
    assert staged.returncode == 0, staged.stderr
    assert staged.stdout.strip() == "fraud version 1 is now in Production"
    again = _cli(server, "transition", "fraud", "2", "Production", "--archive-existing", "--json")
    assert json.loads(again.stdout)["stage"] == "MODEL_STAGE_PRODUCTION"
    assert client.get_model_version("fraud", 1).stage == 4  # MODEL_STAGE_ARCHIVED


def test_errors_are_one_line(client: TracklineClient, server: ServerProcess) -> None:
    _models(client)
    for args, reason in (
        (["show", "missing"], "REGISTERED_MODEL_NOT_FOUND"),
        (["versions", "missing"], "REGISTERED_MODEL_NOT_FOUND"),
        (["alias", "set", "fraud", "latest", "1"], "INVALID_ALIAS"),
        (["alias", "delete", "fraud", "nope"], "ALIAS_NOT_FOUND"),
        (["transition", "fraud", "9", "Staging"], "MODEL_VERSION_NOT_FOUND"),
        (["list", "--filter", "name ="], "INVALID_FILTER"),
    ):
        out = _cli(server, *args)
        assert out.returncode == 1 and out.stderr.count("\n") == 1, (args, out.stderr)
        assert reason in out.stderr, (args, out.stderr)
    for args in (["transition", "fraud", "1", "Live"], ["alias", "set", "fraud", "a", "x"]):
        out = _cli(server, *args)
        assert out.returncode == 1 and out.stderr.count("\n") == 1, (args, out.stderr)


def _watch(server: ServerProcess, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "trackline.cli", "--uri", server.address, "models", "watch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_watch_until_interrupted(client: TracklineClient, server: ServerProcess) -> None:
    client.create_registered_model("other")
    client.create_registered_model("fraud")
    as_json = _watch(server, "--name", "fraud", "--after", "0", "--json")
    as_text = _watch(server, "--name", "fraud", "--after", "0")
    try:
        assert as_json.stdout is not None and as_text.stdout is not None
        first = json.loads(as_json.stdout.readline())
        assert (first["type"], first["name"]) == (
            "MODEL_EVENT_TYPE_REGISTERED_MODEL_CREATED",
            "fraud",
        )
        client.create_model_version("fraud", "s3://b/1")
        client.set_registered_model_alias("fraud", "champion", 1)
        created, aliased = (json.loads(as_json.stdout.readline()) for _ in range(2))
        assert (created["type"], created["version"]) == (
            "MODEL_EVENT_TYPE_MODEL_VERSION_CREATED",
            "1",
        )
        assert (aliased["alias"], aliased["id"]) == ("champion", str(int(created["id"]) + 1))
        lines = [as_text.stdout.readline().split() for _ in range(3)]
        assert [line[3:5] for line in lines] == [
            ["REGISTERED_MODEL_CREATED", "fraud"],
            ["MODEL_VERSION_CREATED", "fraud"],
            ["ALIAS_SET", "fraud"],
        ]
        assert lines[2][5:] == ["version", "1", "alias", "champion"]
        for proc in (as_json, as_text):
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 130 and err.splitlines() == ["trackline: interrupted"], err
    finally:
        for proc in (as_json, as_text):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
