"""Scoped tokens on a real server (SQLite and PostgreSQL): a token reaches the experiments and
registered models of its scope, through every way in (gets, searches, histories, artifacts,
the metric stream, registry resolution and event watches, project runs), and nothing else;
what it writes carries its name."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from trackline import (
    DeadlineExceeded,
    NotFound,
    PermissionDenied,
    TracklineClient,
    Unauthenticated,
)
from trackline.v1 import resources_pb2 as pb

from tests.support.auth import BOOTSTRAP, start_secured, token
from tests.support.databases import store_url
from tests.support.servers import ServerProcess
from tests.support.streams import Stream


@pytest.fixture(autouse=True)
def _no_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACKLINE_TOKEN", raising=False)


@dataclass
class World:
    """Two teams' experiments, runs (with a metric and an artifact) and models, made by the
    admin; ``a`` is a writer token scoped to team A's experiments and models."""

    server: ServerProcess
    admin: TracklineClient
    a: TracklineClient
    exp_a: str
    exp_b: str
    run_a: str
    run_b: str


def _series(key: str, values: list[float]) -> pb.MetricSeries:
    return pb.MetricSeries(
        key=key, steps=list(range(len(values))), timestamps=[1] * len(values), values=values
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    server = start_secured(tmp_path, store_url(request.param, tmp_path))
    admin = TracklineClient(server.address, token=BOOTSTRAP, retry_seconds=5)
    exp_a = admin.create_experiment("team-a/x").experiment_id
    exp_b = admin.create_experiment("team-b/y").experiment_id
    run_a = admin.create_run(exp_a).run_id
    run_b = admin.create_run(exp_b).run_id
    (tmp_path / "f.txt").write_text("hello")
    for run_id in (run_a, run_b):
        admin.log_batch(run_id, metrics=[_series("loss", [1.0, 0.5])])
        admin.log_artifact(run_id, tmp_path / "f.txt")
    for name, run_id in (("a-model", run_a), ("b-model", run_b)):
        admin.create_registered_model(name)
        admin.create_model_version(name, f"runs:/{run_id}/model", run_id)
        admin.set_registered_model_alias(name, "champion", 1)
    secret = token(admin, "team-a", "writer", experiments=["team-a/*"], models=["a-*"])
    a = TracklineClient(server.address, token=secret, retry_seconds=0)
    yield World(server, admin, a, exp_a, exp_b, run_a, run_b)
    a.close()
    admin.close()


def _out_of_scope(err: pytest.ExceptionInfo[PermissionDenied]) -> None:
    assert err.value.reason == "OUT_OF_SCOPE"
    assert "team-a" in str(err.value)  # names the token, so the caller knows which to widen


def test_gets_reach_only_the_scope(world: World) -> None:
    a = world.a
    assert a.get_run(world.run_a).run_id == world.run_a
    assert a.get_experiment(world.exp_a).name == "team-a/x"
    for get in (
        lambda: a.get_run(world.run_b),
        lambda: a.get_experiment(world.exp_b),
        lambda: a.get_experiment_by_name("team-b/y"),
        lambda: a.get_registered_model("b-model"),
        lambda: a.get_model_version("b-model", 1),
        lambda: a.get_model_version_by_alias("b-model", "champion"),
        lambda: a.get_latest_versions("b-model"),
    ):
        with pytest.raises(PermissionDenied) as err:
            get()
        _out_of_scope(err)
    # What does not exist is NOT_FOUND, as for anyone.
    with pytest.raises(NotFound):
        a.get_run("f" * 32)


def test_searches_hold_only_the_scope(world: World) -> None:
    a = world.a
    assert [e.name for e in a.search_experiments()] == ["team-a/x"]
    assert [r.run_id for r in a.search_runs()] == [world.run_a]
    assert [r.run_id for r in a.search_runs([world.exp_a])] == [world.run_a]
    with pytest.raises(PermissionDenied) as err:
        list(a.search_runs([world.exp_a, world.exp_b]))
    _out_of_scope(err)
    assert [m.name for m in a.search_registered_models()] == ["a-model"]
    assert [v.name for v in a.search_model_versions()] == ["a-model"]
    assert [v.name for v in a.search_model_versions("name = 'b-model'")] == []


def test_metric_histories_reach_only_the_scope(world: World) -> None:
    a = world.a
    assert [p.value for p in a.get_metric_history(world.run_a, "loss")] == [1.0, 0.5]
    with pytest.raises(PermissionDenied) as err:
        list(a.get_metric_history(world.run_b, "loss"))
    _out_of_scope(err)
    with pytest.raises(PermissionDenied):
        a.get_metric_histories([world.run_a, world.run_b], ["loss"])


def test_artifacts_reach_only_the_scope(world: World, tmp_path: Path) -> None:
    a = world.a
    assert [f.path for f in a.list_artifacts(world.run_a)] == ["f.txt"]
    assert Path(a.download_artifacts(world.run_a, "f.txt", tmp_path / "ok")).read_text() == "hello"
    for reach in (
        lambda: a.list_artifacts(world.run_b),
        lambda: a.download_artifacts(world.run_b, "f.txt", tmp_path / "no"),
        lambda: a.log_artifact(world.run_b, tmp_path / "ok" / "f.txt"),
    ):
        with pytest.raises(PermissionDenied) as err:
            reach()
        _out_of_scope(err)
    assert [f.path for f in world.admin.list_artifacts(world.run_b)] == ["f.txt"]


def test_writes_reach_only_the_scope(world: World) -> None:
    a = world.a
    a.log_batch(world.run_a, params={"lr": "0.1"})
    assert a.create_experiment("team-a/new")
    for write in (
        lambda: a.log_batch(world.run_b, params={"lr": "0.1"}),
        lambda: a.create_run(world.exp_b),
        lambda: a.create_experiment("team-b/new"),
        lambda: a.rename_experiment(world.exp_a, "team-b/taken-over"),
        lambda: a.create_registered_model("b-new"),
        lambda: a.rename_registered_model("a-model", "b-renamed"),
        lambda: a.set_registered_model_alias("b-model", "mine", 1),
        # A version of an in-scope model whose artifacts are another team's run.
        lambda: a.create_model_version("a-model", f"runs:/{world.run_b}/model"),
        lambda: a.create_model_version("a-model", "s3://bucket/m", world.run_b),
    ):
        with pytest.raises(PermissionDenied) as err:
            write()
        _out_of_scope(err)
    assert world.admin.get_run(world.run_b).params == []
    assert world.admin.get_experiment(world.exp_a).name == "team-a/x"
    assert [m.name for m in world.admin.search_registered_models()] == ["a-model", "b-model"]


def test_registry_resolution_reaches_only_the_scope(world: World) -> None:
    a = world.a
    assert a.resolve_model_uri("models:/a-model@champion").version == 1
    for uri in ("models:/b-model/1", "models:/b-model@champion", "models:/b-model/latest"):
        with pytest.raises(PermissionDenied) as err:
            a.resolve_model_uri(uri)
        _out_of_scope(err)


def _events(client: TracklineClient, seconds: float) -> list[tuple[str, str]]:
    """(model name, actor) of every event from the first, as a watch sends them within
    ``seconds`` (the watch then ends at its deadline)."""
    got = []
    with client.watch_model_events(after=0, timeout=seconds) as events:
        try:
            for event in events:
                got.append((event.name, event.actor))
        except DeadlineExceeded:
            pass
    return got


def test_event_watches_hold_only_the_scope(world: World) -> None:
    with pytest.raises(PermissionDenied) as err:
        next(iter(world.a.watch_model_events(["b-model"], after=0, timeout=10)))
    _out_of_scope(err)
    assert {name for name, _ in _events(world.a, 2)} == {"a-model"}
    assert {name for name, _ in _events(world.admin, 2)} == {"a-model", "b-model"}


def test_the_metric_stream_refuses_a_run_out_of_scope(world: World) -> None:
    secret = token(world.admin, "streamer", "writer", experiments=["team-a/*"])
    stream = Stream(world.server.address, "w1", token=secret)
    stream.batch(1, world.run_a, "acc", [0, 1])
    assert stream.until(1)[-1].acked_seq == 1
    stream.batch(2, world.run_b, "acc", [0, 1])
    with pytest.raises(grpc.RpcError) as err:
        stream.until(2)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    history = world.admin.get_metric_history(world.run_b, "acc")
    assert list(history) == []


def test_project_runs_reach_only_the_scope(world: World) -> None:
    mine = world.a.submit_project_run("https://example.com/p.git", experiment_id=world.exp_a)
    named = world.a.submit_project_run("https://example.com/p.git", experiment_name="team-a/z")
    theirs = world.admin.submit_project_run("https://example.com/p.git", experiment_id=world.exp_b)
    default = world.admin.submit_project_run("https://example.com/p.git")
    with pytest.raises(PermissionDenied):
        world.a.submit_project_run("https://example.com/p.git", experiment_name="team-b/z")
    with pytest.raises(PermissionDenied):
        world.a.submit_project_run("https://example.com/p.git")  # the Default experiment
    seen = {r.project_run_id for r in world.a.search_project_runs()}
    assert seen == {mine.project_run_id, named.project_run_id}
    for other in (theirs, default):
        with pytest.raises(PermissionDenied):
            world.a.get_project_run(other.project_run_id)
    # A scoped worker leases only runs of its scope, oldest first.
    leased = [world.a.lease_project_run("w", wait_seconds=0) for _ in range(3)]
    assert [x.project_run.project_run_id if x else None for x in leased] == [
        mine.project_run_id,
        named.project_run_id,
        None,
    ]


def test_a_token_scoped_by_experiment_id(world: World) -> None:
    secret = token(world.admin, "by-id", "reader", experiments=[world.exp_b])
    b = TracklineClient(world.server.address, token=secret, retry_seconds=0)
    try:
        assert [r.run_id for r in b.search_runs()] == [world.run_b]
        assert [e.experiment_id for e in b.search_experiments()] == [world.exp_b]
        with pytest.raises(PermissionDenied) as err:
            b.get_run(world.run_a)
        assert err.value.reason == "OUT_OF_SCOPE"
        # A reader in scope still may not write.
        with pytest.raises(PermissionDenied) as err:
            b.log_batch(world.run_b, params={"x": "1"})
        assert err.value.reason == "ROLE_NOT_ALLOWED"
        # Models are not in an experiments-only scope's way.
        assert {m.name for m in b.search_registered_models()} == {"a-model", "b-model"}
    finally:
        b.close()


def test_a_rename_out_of_a_prefix_leaves_the_scope_at_once(world: World) -> None:
    assert world.a.get_run(world.run_a)
    world.admin.rename_experiment(world.exp_a, "team-b/moved")
    with pytest.raises(PermissionDenied):
        world.a.get_run(world.run_a)


def test_what_a_token_writes_carries_its_name(world: World) -> None:
    a = world.a
    run = a.create_run(world.exp_a, user_id="someone-else")
    assert run.user_id == "team-a"  # the token's name, not the client's claim
    version = a.create_model_version("a-model", f"runs:/{world.run_a}/model", world.run_a)
    assert version.user_id == "team-a"
    assert world.admin.get_model_version("a-model", 1).user_id == "admin"
    actors = [actor for name, actor in _events(world.admin, 2) if name == "a-model"]
    assert actors == ["admin", "admin", "admin", "team-a"]  # made by the bootstrap admin


def test_a_stream_ends_when_its_token_is_revoked(world: World) -> None:
    secret = token(world.admin, "revoked-mid-stream", "writer")
    stream = Stream(world.server.address, "w2", token=secret)
    stream.batch(1, world.run_a, "acc", [0])
    assert stream.until(1)[-1].acked_seq == 1
    world.admin.revoke_token("revoked-mid-stream")
    stream.batch(2, world.run_a, "acc", [1])
    with pytest.raises(grpc.RpcError) as err:
        stream.until(2)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert [p.step for p in world.admin.get_metric_history(world.run_a, "acc")] == [0]


def test_a_watch_sends_nothing_once_its_token_is_revoked(world: World) -> None:
    secret = token(world.admin, "watcher", "reader")
    reader = TracklineClient(world.server.address, token=secret, retry_seconds=0)
    try:
        with reader.watch_model_events(timeout=30) as events:
            world.admin.update_registered_model("a-model", description="one")
            assert next(events).name == "a-model"
            world.admin.revoke_token("watcher")
            world.admin.update_registered_model("a-model", description="two")
            with pytest.raises(Unauthenticated) as err:
                next(events)
            assert err.value.reason == "TOKEN_REVOKED"
    finally:
        reader.close()
