"""Projects from a git repository the test creates: ``#subdirectory``, ``--version`` as a tag,
a branch or a commit, recorded by the exact commit; the clone is removed after the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from trackline import TracklineClient
from trackline.projects import ProjectError, execute

from tests.support.projects import commit_all, git, write_project
from tests.support.servers import ServerProcess, start_server

MLPROJECT = "entry_points:\n  main:\n    parameters: {who: {type: string, default: you}}\n"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TracklineClient]:
    server: ServerProcess = start_server(tmp_path / "server")
    c = TracklineClient(server.address, retry_seconds=5)
    yield c
    c.close()


@pytest.fixture
def repo(tmp_path: Path) -> dict[str, str]:
    """A repository with the project in proj/: tag v1 says one, main says two, branch
    feature says three. Returns the path and each version's commit."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    commits = {"path": str(root)}
    for word in ("one", "two"):
        command = f'    command: "echo {word} {{who}}; pwd"\n'
        write_project(root / "proj", {"MLproject": MLPROJECT + command})
        commits[word] = commit_all(root, f"say {word}")
        if word == "one":
            git(root, "tag", "v1")
    git(root, "checkout", "-q", "-b", "feature")
    write_project(
        root / "proj", {"MLproject": MLPROJECT + '    command: "echo three {who}; pwd"\n'}
    )
    commits["three"] = commit_all(root, "say three")
    git(root, "checkout", "-q", "main")
    return commits


def _run(
    client: TracklineClient, uri: str, version: str | None
) -> tuple[list[str], dict[str, str]]:
    lines: list[str] = []
    result = execute(client, uri, version=version, params={"who": "me"}, on_output=lines.append)
    assert result.status == "FINISHED", lines
    tags = {t.key: t.value for t in client.get_run(result.run_id).tags}
    return lines, tags


@pytest.mark.parametrize(
    ("version", "word", "branch"),
    [
        ("v1", "one", None),
        ("feature", "three", "feature"),
        ("two", "two", None),
        (None, "two", None),
    ],
)
def test_git_version_and_subdirectory(
    client: TracklineClient,
    repo: dict[str, str],
    version: str | None,
    word: str,
    branch: str | None,
) -> None:
    version = repo["two"] if version == "two" else version  # a commit id
    uri = f"file://{repo['path']}#proj"
    lines, tags = _run(client, uri, version)
    assert f"{word} me" in lines
    assert tags["trackline.source.git.commit"] == repo[word]
    assert tags["trackline.source.name"] == f"{repo['path']}#proj"
    assert tags.get("trackline.project.version") == version
    if version is not None:
        assert tags.get("trackline.source.git.branch") == branch
    (workdir,) = [line for line in lines if line.startswith("/")]
    if version is None:
        assert workdir == f"{repo['path']}/proj"  # a local work tree runs in place
    else:
        assert Path(workdir).name == "proj" and not Path(workdir).exists()  # the clone is gone


def test_work_tree_runs_in_place_with_its_commit(
    client: TracklineClient, repo: dict[str, str]
) -> None:
    (Path(repo["path"]) / "proj" / "untracked.txt").write_text("x")
    (Path(repo["path"]) / "proj" / "MLproject").write_text(
        MLPROJECT + '    command: "echo edited"\n'
    )
    lines, tags = _run(client, f"{repo['path']}#proj", None)
    assert "edited" in lines
    assert tags["trackline.source.git.commit"] == repo["two"]
    assert tags["trackline.source.git.branch"] == "main"
    assert tags["trackline.source.git.dirty"] == "true"


def test_bad_git_requests_create_no_run(
    client: TracklineClient, repo: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(ProjectError, match="--version 'nope': no such branch, tag or commit"):
        execute(client, repo["path"] + "#proj", version="nope")
    with pytest.raises(ProjectError, match="no folder 'absent'"):
        execute(client, repo["path"] + "#absent", version="v1")
    with pytest.raises(ProjectError, match="expected a relative subdirectory"):
        execute(client, repo["path"] + "#../x")
    plain = write_project(tmp_path / "plain", {"t.sh": "echo\n"})
    with pytest.raises(ProjectError, match="needs a git repository"):
        execute(client, str(plain), version="v1")
    assert list(client.search_runs(["0"])) == []
