"""TracklineClient's Model Registry methods and ``trackline.register_model`` against a real
server on SQLite and PostgreSQL: every method, stage and status names, the event stream with
its resumption, and every refusal raised as the exception of its status code."""

from __future__ import annotations

import threading
import time

import pytest
import trackline
from trackline import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    TracklineClient,
)
from trackline.v1 import registry_pb2 as rpb

from tests.support.servers import ServerProcess

T = rpb.ModelEventType


def tags(msg: rpb.RegisteredModel | rpb.ModelVersion) -> dict[str, str]:
    return {t.key: t.value for t in msg.tags}


def test_registered_models(client: TracklineClient) -> None:
    made = client.create_registered_model("fraud", tags={"team": "risk"}, description="d")
    assert (made.name, made.description, tags(made)) == ("fraud", "d", {"team": "risk"})
    with pytest.raises(AlreadyExists) as taken:
        client.create_registered_model("fraud")
    assert taken.value.reason == "REGISTERED_MODEL_ALREADY_EXISTS"
    client.set_registered_model_tag("fraud", "stars", 5)
    client.delete_registered_model_tag("fraud", "team")
    assert client.update_registered_model("fraud", "new").description == "new"
    got = client.get_registered_model("fraud")
    assert (got.description, tags(got)) == ("new", {"stars": "5"})
    with pytest.raises(NotFound) as no_tag:
        client.delete_registered_model_tag("fraud", "team")
    assert no_tag.value.reason == "TAG_NOT_FOUND"

    client.create_model_version("fraud", "s3://b/1")
    renamed = client.rename_registered_model("fraud", "fraud2")
    assert renamed.name == "fraud2"
    assert client.get_model_version("fraud2", 1).source == "s3://b/1"
    with pytest.raises(NotFound) as gone:
        client.get_registered_model("fraud")
    assert gone.value.reason == "REGISTERED_MODEL_NOT_FOUND"

    for name in ("churn-a", "churn-b", "churn-c"):
        client.create_registered_model(name, tags={"team": "growth"})
    found = client.search_registered_models("name LIKE 'churn%'", page_size=2)
    assert [m.name for m in found] == ["churn-a", "churn-b", "churn-c"]
    newest = client.search_registered_models(
        "tags.team = 'growth'", order_by=["name DESC"], max_results=1
    )
    assert [m.name for m in newest] == ["churn-c"]
    with pytest.raises(InvalidArgument) as bad:
        list(client.search_registered_models("name ~ 'x'"))
    assert bad.value.reason == "INVALID_FILTER"
    with pytest.raises(ValueError, match="max_results"):
        client.search_registered_models(max_results=-1)

    client.delete_registered_model("fraud2")
    with pytest.raises(NotFound):
        client.get_model_version("fraud2", 1)
    with pytest.raises(InvalidArgument) as bad_name:
        client.create_registered_model("a/b")
    assert bad_name.value.reason == "INVALID_MODEL_NAME"


def test_model_versions(client: TracklineClient) -> None:
    client.create_registered_model("m")
    run = client.create_run()
    v1 = client.create_model_version(
        "m", f"runs:/{run.run_id}/model", run.run_id, tags={"k": 1}, description="first"
    )
    assert (v1.version, v1.run_id, v1.description, tags(v1)) == (1, run.run_id, "first", {"k": "1"})
    assert v1.status == rpb.MODEL_VERSION_STATUS_READY and v1.stage == rpb.MODEL_STAGE_NONE
    pending = client.create_model_version("m", "s3://b/2", status="PENDING_REGISTRATION")
    assert (pending.version, pending.status) == (2, rpb.MODEL_VERSION_STATUS_PENDING_REGISTRATION)
    ready = client.update_model_version("m", "2", status="READY", status_message="copied")
    assert (ready.status, ready.status_message) == (rpb.MODEL_VERSION_STATUS_READY, "copied")
    with pytest.raises(FailedPrecondition) as final:
        client.update_model_version("m", 2, status="FAILED_REGISTRATION")
    assert final.value.reason == "MODEL_VERSION_STATUS_FINAL"
    assert client.update_model_version("m", 1, "better").description == "better"
    assert client.get_model_version("m", 1).status_message == ""  # left as it was

    client.set_model_version_tag("m", 1, "validated", True)
    client.delete_model_version_tag("m", 1, "k")
    assert tags(client.get_model_version("m", "1")) == {"validated": "True"}
    with pytest.raises(NotFound) as no_tag:
        client.delete_model_version_tag("m", 1, "k")
    assert no_tag.value.reason == "TAG_NOT_FOUND"

    found = client.search_model_versions("name = 'm'", page_size=1)
    assert [v.version for v in found] == [2, 1]
    by_run = client.search_model_versions(f"run_id = '{run.run_id}'")
    assert [v.version for v in by_run] == [1]

    client.delete_model_version("m", 1)
    with pytest.raises(NotFound) as missing:
        client.get_model_version("m", 1)
    assert missing.value.reason == "MODEL_VERSION_NOT_FOUND"
    assert client.create_model_version("m", "s3://b/3").version == 3  # 1 is not given again
    with pytest.raises(NotFound) as no_run:
        client.create_model_version("m", "x", "no-such-run")
    assert no_run.value.reason == "RUN_NOT_FOUND"
    with pytest.raises(InvalidArgument) as no_source:
        client.create_model_version("m", "")
    assert no_source.value.reason == "INVALID_SOURCE"
    with pytest.raises(ValueError, match="integer"):
        client.get_model_version("m", "v1")
    with pytest.raises(ValueError, match="status"):
        client.create_model_version("m", "x", status="DONE")


def test_aliases_stages_and_uris(client: TracklineClient) -> None:
    client.create_registered_model("m")
    for i in range(1, 4):
        client.create_model_version("m", f"s3://b/{i}")
    client.set_registered_model_alias("m", "champion", 1)
    client.set_registered_model_alias("m", "champion", "2")  # moves
    assert client.get_model_version_by_alias("m", "champion").version == 2
    assert list(client.get_model_version("m", 2).aliases) == ["champion"]
    model = client.get_registered_model("m")
    assert [(a.alias, a.version) for a in model.aliases] == [("champion", 2)]
    with pytest.raises(InvalidArgument) as like_version:
        client.set_registered_model_alias("m", "v3", 3)
    assert like_version.value.reason == "INVALID_ALIAS"
    assert client.resolve_model_uri("models:/m@champion").source == "s3://b/2"
    client.delete_registered_model_alias("m", "champion")
    with pytest.raises(NotFound) as no_alias:
        client.get_model_version_by_alias("m", "champion")
    assert no_alias.value.reason == "ALIAS_NOT_FOUND"
    with pytest.raises(NotFound):
        client.delete_registered_model_alias("m", "champion")

    moved = client.transition_model_version_stage("m", 1, "Production")
    assert moved.stage == rpb.MODEL_STAGE_PRODUCTION
    client.transition_model_version_stage("m", 2, "staging")
    client.transition_model_version_stage("m", 3, rpb.MODEL_STAGE_PRODUCTION, True)
    assert client.get_model_version("m", 1).stage == rpb.MODEL_STAGE_ARCHIVED
    latest = client.get_latest_versions("m", ["Production", "Staging"])
    assert [(v.version, v.stage) for v in latest] == [
        (2, rpb.MODEL_STAGE_STAGING),
        (3, rpb.MODEL_STAGE_PRODUCTION),
    ]
    assert [v.version for v in client.get_latest_versions("m")] == [2, 3, 1]
    with pytest.raises(ValueError, match="stage"):
        client.transition_model_version_stage("m", 1, "Live")
    with pytest.raises(InvalidArgument) as no_stage:
        client.transition_model_version_stage("m", 1, rpb.MODEL_STAGE_UNSPECIFIED)
    assert no_stage.value.reason == "INVALID_STAGE"

    assert client.resolve_model_uri("models:/m/1").version == 1
    assert client.resolve_model_uri("models:/m/latest").version == 3
    assert client.resolve_model_uri("models:/m/Production").source == "s3://b/3"
    with pytest.raises(InvalidArgument) as bad_uri:
        client.resolve_model_uri("runs:/abc/model")
    assert bad_uri.value.reason == "INVALID_MODEL_URI"


def test_register_model_creates_the_model_once(server: ServerProcess) -> None:
    trackline.set_tracking_uri(server.address)
    with trackline.start_run() as run:
        pass
    first = trackline.register_model(f"runs:/{run.run_id}/model", "m", tags={"k": "v"})
    assert (first.name, first.version, first.run_id) == ("m", 1, run.run_id)
    assert (first.source, tags(first)) == (f"runs:/{run.run_id}/model", {"k": "v"})
    second = trackline.register_model("s3://bucket/model", "m", description="d")
    assert (second.version, second.run_id, second.description) == (2, "", "d")
    with pytest.raises(NotFound) as no_run:
        trackline.register_model("runs:/no-such-run/model", "m")
    assert no_run.value.reason == "RUN_NOT_FOUND"
    with pytest.raises(ValueError, match="names no run"):
        trackline.register_model("runs:/", "m")


def test_watch_model_events_follows_resumes_and_closes(client: TracklineClient) -> None:
    client.create_registered_model("a")
    client.create_model_version("a", "x")
    with client.watch_model_events(after=0) as events:
        seen = [next(events) for _ in range(2)]
        assert events.last_id == 2
    assert [(e.id, e.type, e.name) for e in seen] == [
        (1, T.MODEL_EVENT_TYPE_REGISTERED_MODEL_CREATED, "a"),
        (2, T.MODEL_EVENT_TYPE_MODEL_VERSION_CREATED, "a"),
    ]
    # Changes made while no watcher is connected come first on resumption; then live ones.
    client.set_registered_model_alias("a", "champion", 1)
    client.create_registered_model("b")
    resumed = client.watch_model_events(after=2)
    only_b = client.watch_model_events(names=["b"])  # from now on
    time.sleep(0.3)  # both streams are open before the next change
    client.set_registered_model_tag("b", "k", "v")
    assert [(e.id, e.type) for e in (next(resumed) for _ in range(3))] == [
        (3, T.MODEL_EVENT_TYPE_ALIAS_SET),
        (4, T.MODEL_EVENT_TYPE_REGISTERED_MODEL_CREATED),
        (5, T.MODEL_EVENT_TYPE_REGISTERED_MODEL_TAG_SET),
    ]
    tag_set = next(only_b)
    assert (tag_set.id, tag_set.name, tag_set.key) == (5, "b", "k")
    # Closing from another thread ends a stream waiting for its next event.
    threading.Timer(0.3, resumed.close).start()
    assert list(resumed) == []
    only_b.close()
    with pytest.raises(OutOfRange) as ahead:
        next(client.watch_model_events(after=99))
    assert ahead.value.reason == "EVENT_ID_OUT_OF_RANGE"
    with pytest.raises(InvalidArgument) as too_many:
        next(client.watch_model_events(names=[f"m{i}" for i in range(101)]))
    assert too_many.value.reason == "TOO_MANY_MODELS"
