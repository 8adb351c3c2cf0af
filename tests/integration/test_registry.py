"""The Model Registry (RegistryService) against a real server on SQLite and PostgreSQL:
models and versions with their tags, renames, search, numbering under concurrent creates,
aliases, stages, models:/ URIs, the event stream, and every refusal."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from trackline import TracklineClient
from trackline._exceptions import TracklineError, from_rpc_error
from trackline.v1 import registry_pb2 as rpb
from trackline.v1 import registry_pb2_grpc
from trackline.v1 import resources_pb2 as pb

from tests.support.servers import ServerProcess

T = rpb.ModelEventType


class Registry:
    """The raw RegistryService stub, raising the client's typed errors."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = registry_pb2_grpc.RegistryServiceStub(self.channel)

    def __getattr__(self, rpc: str) -> Callable[..., Any]:
        method = getattr(self.stub, rpc)

        def call(**fields: Any) -> Any:
            request = getattr(rpb, f"{rpc}Request")(**fields)
            try:
                return method(request, timeout=30)
            except grpc.RpcError as err:
                raise from_rpc_error(err) from None

        return call


@pytest.fixture
def reg(server: ServerProcess) -> Iterator[Registry]:
    r = Registry(server.address)
    yield r
    r.channel.close()


def refused(fn: Callable[[], Any]) -> TracklineError:
    with pytest.raises(TracklineError) as info:
        fn()
    return info.value


def tags(msg: Any) -> dict[str, str]:
    return {t.key: t.value for t in msg.tags}


def test_model_crud_and_rename_carry_versions(reg: Registry) -> None:
    made = reg.CreateRegisteredModel(
        name="fraud", description="d", tags=[pb.Tag(key="team", value="risk")]
    ).registered_model
    assert made.name == "fraud" and made.description == "d" and tags(made) == {"team": "risk"}
    for i in range(2):
        reg.CreateModelVersion(name="fraud", source=f"s3://b/{i}")
    reg.SetRegisteredModelAlias(name="fraud", alias="champion", version=2)
    reg.SetRegisteredModelTag(name="fraud", key="k", value="v")
    reg.UpdateRegisteredModel(name="fraud", description="new")
    renamed = reg.RenameRegisteredModel(name="fraud", new_name="fraud2").registered_model
    assert renamed.name == "fraud2" and renamed.description == "new"
    assert tags(renamed) == {"team": "risk", "k": "v"}
    assert [(a.alias, a.version) for a in renamed.aliases] == [("champion", 2)]
    v2 = reg.GetModelVersion(name="fraud2", version=2).model_version
    assert v2.name == "fraud2" and v2.source == "s3://b/1" and list(v2.aliases) == ["champion"]
    assert refused(lambda: reg.GetRegisteredModel(name="fraud")).reason == (
        "REGISTERED_MODEL_NOT_FOUND"
    )
    reg.DeleteRegisteredModelTag(name="fraud2", key="k")
    assert refused(lambda: reg.DeleteRegisteredModelTag(name="fraud2", key="k")).reason == (
        "TAG_NOT_FOUND"
    )
    reg.DeleteRegisteredModel(name="fraud2")
    assert refused(lambda: reg.GetModelVersion(name="fraud2", version=1)).reason == (
        "REGISTERED_MODEL_NOT_FOUND"
    )
    # The name is free again, and numbering starts over with the new model.
    reg.CreateRegisteredModel(name="fraud2")
    assert reg.CreateModelVersion(name="fraud2", source="x").model_version.version == 1


def test_versions_update_tags_status_and_delete(reg: Registry, client: TracklineClient) -> None:
    run = client.create_run("0", run_name="train")
    reg.CreateRegisteredModel(name="m")
    v = reg.CreateModelVersion(
        name="m", source=f"runs:/{run.run_id}/model", run_id=run.run_id, description="first",
        tags=[pb.Tag(key="a", value="1")],
        status=rpb.MODEL_VERSION_STATUS_PENDING_REGISTRATION,
    ).model_version  # fmt: skip
    assert (v.version, v.run_id, v.stage) == (1, run.run_id, rpb.MODEL_STAGE_NONE)
    assert v.status == rpb.MODEL_VERSION_STATUS_PENDING_REGISTRATION and tags(v) == {"a": "1"}
    err = refused(lambda: reg.SetRegisteredModelAlias(name="m", alias="prod", version=1))
    assert err.reason == "MODEL_VERSION_NOT_READY"
    done = reg.UpdateModelVersion(
        name="m", version=1, status=rpb.MODEL_VERSION_STATUS_READY, status_message="copied"
    ).model_version
    assert done.status == rpb.MODEL_VERSION_STATUS_READY and done.status_message == "copied"
    assert done.description == "first"
    err = refused(
        lambda: reg.UpdateModelVersion(
            name="m", version=1, status=rpb.MODEL_VERSION_STATUS_FAILED_REGISTRATION
        )
    )
    assert err.reason == "MODEL_VERSION_STATUS_FINAL"
    reg.SetModelVersionTag(name="m", version=1, key="b", value="2")
    reg.DeleteModelVersionTag(name="m", version=1, key="a")
    assert tags(reg.GetModelVersion(name="m", version=1).model_version) == {"b": "2"}
    reg.SetRegisteredModelAlias(name="m", alias="prod", version=1)
    reg.DeleteModelVersion(name="m", version=1)
    assert refused(lambda: reg.GetModelVersion(name="m", version=1)).reason == (
        "MODEL_VERSION_NOT_FOUND"
    )
    assert not reg.GetRegisteredModel(name="m").registered_model.aliases
    # A deleted number is not given out again.
    assert reg.CreateModelVersion(name="m", source="x").model_version.version == 2


def test_request_id_makes_one_model_and_one_version(reg: Registry) -> None:
    first = reg.CreateRegisteredModel(name="m", request_id="r1").registered_model
    assert reg.CreateRegisteredModel(name="m", request_id="r1").registered_model == first
    a = reg.CreateModelVersion(name="m", source="x", request_id="v1").model_version
    b = reg.CreateModelVersion(name="m", source="x", request_id="v1").model_version
    assert a == b and a.version == 1
    reg.CreateRegisteredModel(name="other")
    err = refused(lambda: reg.CreateModelVersion(name="other", source="x", request_id="v1"))
    assert err.reason == "REQUEST_ID_REUSED"
    assert refused(lambda: reg.CreateRegisteredModel(name="m")).reason == (
        "REGISTERED_MODEL_ALREADY_EXISTS"
    )


def test_concurrent_creates_number_versions_without_gap_or_duplicate(
    server: ServerProcess,
) -> None:
    Registry(server.address).CreateRegisteredModel(name="busy")
    numbers: list[int] = []
    lock = threading.Lock()

    def create() -> None:
        r = Registry(server.address)
        try:
            got = r.CreateModelVersion(name="busy", source="s").model_version.version
        finally:
            r.channel.close()
        with lock:
            numbers.append(got)

    threads = [threading.Thread(target=create) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(numbers) == list(range(1, 17))


def test_search_models_and_versions_with_filters_and_pages(reg: Registry) -> None:
    for name, team in (("alpha", "cv"), ("beta", "nlp"), ("gamma", "cv")):
        reg.CreateRegisteredModel(name=name, tags=[pb.Tag(key="team", value=team)])
        for i in range(3):
            reg.CreateModelVersion(name=name, source=f"s3://{name}/{i}", run_id="")
    found = reg.SearchRegisteredModels(filter="tags.team = 'cv'").registered_models
    assert [m.name for m in found] == ["alpha", "gamma"]
    found = reg.SearchRegisteredModels(filter="name ILIKE 'B%'").registered_models
    assert [m.name for m in found] == ["beta"]
    names: list[str] = []
    token = ""
    while True:
        page = reg.SearchRegisteredModels(order_by=["name DESC"], page_size=2, page_token=token)
        names += [m.name for m in page.registered_models]
        token = page.next_page_token
        if not token:
            break
    assert names == ["gamma", "beta", "alpha"]
    versions = reg.SearchModelVersions(filter="name = 'beta' AND version_number >= 2")
    assert [(v.name, v.version) for v in versions.model_versions] == [("beta", 3), ("beta", 2)]
    versions = reg.SearchModelVersions(filter="source LIKE 's3://gamma/%'", order_by=["version"])
    assert [v.version for v in versions.model_versions] == [1, 2, 3]
    assert refused(lambda: reg.SearchRegisteredModels(filter="metrics.x > 1")).reason == (
        "INVALID_FILTER"
    )
    assert refused(lambda: reg.SearchModelVersions(order_by=["nope"])).reason == (
        "INVALID_ORDER_BY"
    )
    token = reg.SearchRegisteredModels(page_size=1).next_page_token
    err = refused(lambda: reg.SearchModelVersions(page_size=1, page_token=token))
    assert err.reason == "INVALID_PAGE_TOKEN"


def test_aliases_move_and_refuse_version_like_names(reg: Registry) -> None:
    reg.CreateRegisteredModel(name="m")
    for _ in range(2):
        reg.CreateModelVersion(name="m", source="x")
    reg.SetRegisteredModelAlias(name="m", alias="champion", version=1)
    reg.SetRegisteredModelAlias(name="m", alias="champion", version=2)
    got = reg.GetModelVersionByAlias(name="m", alias="champion").model_version
    assert got.version == 2 and list(got.aliases) == ["champion"]
    assert not reg.GetModelVersion(name="m", version=1).model_version.aliases
    for bad in ("v3", "3", "latest", "LATEST", "", "a b", "x" * 257):
        err = refused(lambda bad=bad: reg.SetRegisteredModelAlias(name="m", alias=bad, version=1))
        assert err.reason == "INVALID_ALIAS", bad
    reg.DeleteRegisteredModelAlias(name="m", alias="champion")
    assert refused(lambda: reg.GetModelVersionByAlias(name="m", alias="champion")).reason == (
        "ALIAS_NOT_FOUND"
    )
    assert refused(lambda: reg.DeleteRegisteredModelAlias(name="m", alias="champion")).reason == (
        "ALIAS_NOT_FOUND"
    )


def test_stages_archive_existing_and_latest_per_stage(reg: Registry) -> None:
    reg.CreateRegisteredModel(name="m")
    for _ in range(3):
        reg.CreateModelVersion(name="m", source="x")
    prod = rpb.MODEL_STAGE_PRODUCTION
    reg.TransitionModelVersionStage(name="m", version=1, stage=prod)
    reg.TransitionModelVersionStage(name="m", version=2, stage=prod)
    moved = reg.TransitionModelVersionStage(
        name="m", version=3, stage=prod, archive_existing_versions=True
    ).model_version
    assert moved.stage == prod
    stages = [reg.GetModelVersion(name="m", version=v).model_version.stage for v in (1, 2)]
    assert stages == [rpb.MODEL_STAGE_ARCHIVED] * 2
    latest = reg.GetLatestVersions(name="m").model_versions
    assert [(v.version, v.stage) for v in latest] == [(3, prod), (2, rpb.MODEL_STAGE_ARCHIVED)]
    only = reg.GetLatestVersions(name="m", stages=[rpb.MODEL_STAGE_STAGING]).model_versions
    assert list(only) == []
    err = refused(lambda: reg.TransitionModelVersionStage(name="m", version=1, stage=0))
    assert err.reason == "INVALID_STAGE"


def test_resolve_model_uri_forms(reg: Registry) -> None:
    reg.CreateRegisteredModel(name="fraud")
    for i in range(3):
        reg.CreateModelVersion(name="fraud", source=f"s3://b/{i + 1}")
    reg.SetRegisteredModelAlias(name="fraud", alias="champion", version=2)
    reg.TransitionModelVersionStage(name="fraud", version=1, stage=rpb.MODEL_STAGE_STAGING)

    def resolve(uri: str) -> tuple[int, str]:
        got = reg.ResolveModelUri(uri=uri)
        assert got.source == got.model_version.source
        return got.model_version.version, got.source

    assert resolve("models:/fraud/3") == (3, "s3://b/3")
    assert resolve("models:/fraud@champion") == (2, "s3://b/2")
    assert resolve("models:/fraud/latest") == (3, "s3://b/3")
    assert resolve("models:/fraud/Staging") == (1, "s3://b/1")
    assert resolve("models:/fraud/staging") == (1, "s3://b/1")
    for uri, reason in (
        ("models:/fraud/Production", "MODEL_VERSION_NOT_FOUND"),
        ("models:/fraud/9", "MODEL_VERSION_NOT_FOUND"),
        ("models:/fraud@nobody", "ALIAS_NOT_FOUND"),
        ("models:/ghost/1", "REGISTERED_MODEL_NOT_FOUND"),
        ("runs:/abc/model", "INVALID_MODEL_URI"),
        ("models:/fraud", "INVALID_MODEL_URI"),
        ("models:/fraud/1/2", "INVALID_MODEL_URI"),
        ("models:/fraud/champion", "INVALID_MODEL_URI"),
    ):
        assert refused(lambda uri=uri: reg.ResolveModelUri(uri=uri)).reason == reason, uri


def test_refusals(reg: Registry) -> None:
    for name in ("", "  ", "a/b", "a@b", "x" * 501, "tab\tname"):
        err = refused(lambda name=name: reg.CreateRegisteredModel(name=name))
        assert err.reason == "INVALID_MODEL_NAME", name
    reg.CreateRegisteredModel(name="m")
    reg.CreateRegisteredModel(name="n")
    assert refused(lambda: reg.RenameRegisteredModel(name="m", new_name="n")).reason == (
        "REGISTERED_MODEL_ALREADY_EXISTS"
    )
    assert refused(lambda: reg.CreateModelVersion(name="m", source="")).reason == "INVALID_SOURCE"
    assert refused(lambda: reg.CreateModelVersion(name="ghost", source="x")).reason == (
        "REGISTERED_MODEL_NOT_FOUND"
    )
    assert refused(lambda: reg.CreateModelVersion(name="m", source="x", run_id="nope")).reason == (
        "RUN_NOT_FOUND"
    )
    err = refused(lambda: reg.CreateModelVersion(name="m", source="x", status=9))
    assert err.reason == "INVALID_MODEL_VERSION_STATUS"
    err = refused(lambda: reg.CreateModelVersion(name="m", source="", description="\x00"))
    assert err.reason == "INVALID_SOURCE" and len(err.violations) == 2
    assert refused(lambda: reg.UpdateRegisteredModel(name="m", description="\x00")).reason == (
        "INVALID_DESCRIPTION"
    )
    assert refused(lambda: reg.GetModelVersion(name="m", version=0)).reason == (
        "MODEL_VERSION_NOT_FOUND"
    )
    assert refused(lambda: reg.SetRegisteredModelTag(name="m", key="", value="v")).reason == (
        "INVALID_KEY"
    )


def _watch(reg: Registry, **fields: Any) -> Iterator[rpb.ModelEvent]:
    for response in reg.stub.WatchModelEvents(rpb.WatchModelEventsRequest(**fields), timeout=30):
        yield from response.events


def test_watch_streams_resumes_and_filters(reg: Registry, server: ServerProcess) -> None:
    reg.CreateRegisteredModel(name="a")
    reg.CreateModelVersion(name="a", source="x")
    reg.SetRegisteredModelAlias(name="a", alias="champion", version=1)
    seen = list(_take(_watch(reg, after=0), 3))
    assert [(e.id, e.type, e.name) for e in seen] == [
        (1, T.MODEL_EVENT_TYPE_REGISTERED_MODEL_CREATED, "a"),
        (2, T.MODEL_EVENT_TYPE_MODEL_VERSION_CREATED, "a"),
        (3, T.MODEL_EVENT_TYPE_ALIAS_SET, "a"),
    ]
    assert (seen[2].alias, seen[2].version) == ("champion", 1)
    # A second watcher of model b only, from now; a change of a and one of b follow.
    only_b = _watch(reg, names=["b"])
    resumed = _watch(reg, after=3)
    threading.Timer(0.3, lambda: (
        reg.CreateRegisteredModel(name="b"), reg.RenameRegisteredModel(name="a", new_name="c"),
    )).start()  # fmt: skip
    (b_event,) = _take(only_b, 1)
    assert (b_event.id, b_event.name) == (4, "b")
    both = list(_take(resumed, 2))
    assert [(e.id, e.name, e.previous_name) for e in both] == [(4, "b", ""), (5, "c", "a")]
    assert refused(lambda: next(_take(_watch(reg, after=99), 1))).reason == "EVENT_ID_OUT_OF_RANGE"
    _prune_events(server.store_uri, up_to=3)
    err = refused(lambda: next(_take(_watch(reg, after=1), 1)))
    assert err.reason == "EVENT_ID_OUT_OF_RANGE" and "oldest kept is 4" in str(err)
    assert next(_watch(reg, after=3)).id == 4


def _take(events: Iterator[rpb.ModelEvent], n: int) -> Iterator[rpb.ModelEvent]:
    for _ in range(n):
        try:
            yield next(events)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None


def _prune_events(store_uri: str, up_to: int) -> None:
    """What the retention does to old events, done to the store directly."""

    async def prune() -> None:
        engine = create_async_engine(store_uri)
        async with engine.begin() as conn:
            await conn.execute(text(f"DELETE FROM registry_events WHERE event_id <= {up_to}"))
        await engine.dispose()

    asyncio.run(prune())
