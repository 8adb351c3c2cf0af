"""Reflection (v1 and v1alpha) and health against a real server, through the clients tools
use: grpcio-reflection's ProtoReflectionDescriptorDatabase, raw v1 streams, the health stub,
and ghz in its reflection mode when the binary is at hand."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from trackline import TracklineClient, Unavailable
from trackline.v1 import (
    artifacts_pb2,
    auth_pb2,
    ingest_pb2,
    projects_pb2,
    registry_pb2,
    tracking_pb2,
)

from tests.support.servers import ServerProcess, start_server
from tests.support.waiting import eventually

OURS = (
    tracking_pb2.DESCRIPTOR.services_by_name["TrackingService"],
    ingest_pb2.DESCRIPTOR.services_by_name["IngestService"],
    registry_pb2.DESCRIPTOR.services_by_name["RegistryService"],
    artifacts_pb2.DESCRIPTOR.services_by_name["ArtifactService"],
    projects_pb2.DESCRIPTOR.services_by_name["ProjectService"],
    auth_pb2.DESCRIPTOR.services_by_name["TokenService"],
)
V1 = "grpc.reflection.v1.ServerReflection"
V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
LISTED = {"trackline.v1.TrackingService", "trackline.v1.IngestService", "grpc.health.v1.Health"}
LISTED |= {"trackline.v1.RegistryService", V1, V1ALPHA}
LISTED |= {"trackline.v1.ArtifactService", "trackline.v1.ProjectService"}
LISTED |= {"trackline.v1.TokenService"}
NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def srv(tmp_path: Path) -> ServerProcess:
    return start_server(tmp_path)


@pytest.fixture
def channel(srv: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(srv.address) as ch:
        yield ch


def _v1alpha(channel: grpc.Channel, *requests: Any) -> list[Any]:
    """The answers of one v1alpha stream to ``requests``."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    stream = (reflection_pb2.ServerReflectionRequest(**r) for r in requests)
    return list(stub.ServerReflectionInfo(stream, timeout=10))


def _v1_messages(channel: grpc.Channel) -> tuple[type[Message], type[Message]]:
    """v1's request and response classes, built from the file the server describes v1 with
    (looked up through v1alpha); the file is checked to be v1alpha's moved into v1."""
    db = ProtoReflectionDescriptorDatabase(channel)
    proto = db.FindFileContainingSymbol(V1)
    assert (proto.name, proto.package) == (
        "grpc/reflection/v1/reflection.proto",
        "grpc.reflection.v1",
    )
    alpha = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(alpha)
    for ours, theirs in zip(proto.message_type, alpha.message_type, strict=True):
        assert ours.name == theirs.name
        assert [(f.name, f.number, f.type, f.label) for f in ours.field] == [
            (f.name, f.number, f.type, f.label) for f in theirs.field
        ]
        for field in ours.field:
            assert not field.type_name or field.type_name.startswith(".grpc.reflection.v1.")
    pool = descriptor_pool.DescriptorPool(db)
    return (
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest")
        ),
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse")
        ),
    )


def _v1(channel: grpc.Channel, *requests: dict[str, Any]) -> list[Any]:
    """The answers of one v1 stream to ``requests``, in v1's own messages."""
    request_class, response_class = _v1_messages(channel)
    call = channel.stream_stream(
        f"/{V1}/ServerReflectionInfo",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_class.FromString,
    )
    return list(call((request_class(**r) for r in requests), timeout=10))


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_list_services_names_ours_health_and_both_reflections(
    channel: grpc.Channel, version: str
) -> None:
    ask = _v1 if version == "v1" else _v1alpha
    (answer,) = ask(channel, {"list_services": "*"})
    assert {s.name for s in answer.list_services_response.service} == LISTED
    assert answer.original_request.list_services == "*"


def test_every_method_is_found_by_full_name(channel: grpc.Channel) -> None:
    db = ProtoReflectionDescriptorDatabase(channel)
    assert set(db.get_services()) == LISTED
    pool = descriptor_pool.DescriptorPool(db)
    methods = [m for service in OURS for m in service.methods]
    assert len(methods) >= 20  # every method of both, not an empty loop
    for local in methods:
        assert (
            db.FindFileContainingSymbol(local.full_name).name == local.containing_service.file.name
        )
        found = pool.FindMethodByName(local.full_name)
        assert found.input_type.full_name == local.input_type.full_name
        assert found.output_type.full_name == local.output_type.full_name
        assert (found.client_streaming, found.server_streaming) == (
            local.client_streaming,
            local.server_streaming,
        )
    # A fresh v1 stream finds each of them too, each in its own response, in order.
    answers = _v1(channel, *({"file_containing_symbol": m.full_name} for m in methods))
    assert [a.original_request.file_containing_symbol for a in answers] == [
        m.full_name for m in methods
    ]
    for local, answer in zip(methods, answers, strict=True):
        first = descriptor_pb2.FileDescriptorProto.FromString(
            answer.file_descriptor_response.file_descriptor_proto[0]
        )
        assert first.name == local.containing_service.file.name


@pytest.mark.parametrize(
    ("symbol", "file"),
    [
        ("trackline.v1.TrackingService", "trackline/v1/tracking.proto"),
        ("trackline.v1.Run", "trackline/v1/resources.proto"),  # a message
        ("trackline.v1.Run.status", "trackline/v1/resources.proto"),  # a field
        ("trackline.v1.RunStatus", "trackline/v1/resources.proto"),  # an enum
        ("trackline.v1.LIFECYCLE_STAGE_DELETED", "trackline/v1/resources.proto"),  # its value
        ("trackline.v1.StreamMetricsRequest", "trackline/v1/ingest.proto"),
        ("grpc.health.v1.HealthCheckResponse.ServingStatus", "grpc_health/v1/health.proto"),
        ("grpc.health.v1.Health.List", "grpc_health/v1/health.proto"),
        (
            "grpc.reflection.v1.ServerReflection.ServerReflectionInfo",
            "grpc/reflection/v1/reflection.proto",
        ),
        ("grpc.reflection.v1.ErrorResponse", "grpc/reflection/v1/reflection.proto"),
        ("google.protobuf.FieldMask", "google/protobuf/field_mask.proto"),
    ],
)
def test_symbols_are_found_in_their_files(channel: grpc.Channel, symbol: str, file: str) -> None:
    db = ProtoReflectionDescriptorDatabase(channel)
    assert db.FindFileContainingSymbol(symbol).name == file


def test_a_file_comes_with_its_imports_the_file_first(channel: grpc.Channel) -> None:
    (answer,) = _v1alpha(channel, {"file_by_filename": "trackline/v1/tracking.proto"})
    names = [
        descriptor_pb2.FileDescriptorProto.FromString(raw).name
        for raw in answer.file_descriptor_response.file_descriptor_proto
    ]
    assert names[0] == "trackline/v1/tracking.proto"
    assert {"trackline/v1/resources.proto", "google/protobuf/field_mask.proto"} <= set(names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_what_is_not_there_is_not_found_and_the_stream_goes_on(
    channel: grpc.Channel, version: str
) -> None:
    ask = _v1 if version == "v1" else _v1alpha
    missing = [
        {"file_containing_symbol": "trackline.v1.NoSuchThing"},
        {"file_containing_symbol": "trackline.v1.TrackingService.NoSuchMethod"},
        {"file_containing_symbol": "trackline.v1.Run.no_such_field"},
        {"file_by_filename": "trackline/v1/nothing.proto"},
        {"all_extension_numbers_of_type": "trackline.v1.NoSuchMessage"},
        {
            "file_containing_extension": {
                "containing_type": "trackline.v1.Run",
                "extension_number": 99,
            }
        },
    ]
    answers = ask(channel, *missing, {"all_extension_numbers_of_type": "trackline.v1.Run"}, {})
    for answer in answers[: len(missing)]:
        assert answer.WhichOneof("message_response") == "error_response"
        assert answer.error_response.error_code == NOT_FOUND
        assert answer.error_response.error_message.startswith("no ")
    extensions, empty = answers[len(missing) :]
    assert extensions.all_extension_numbers_response.base_type_name == "trackline.v1.Run"
    assert list(extensions.all_extension_numbers_response.extension_number) == []
    assert empty.error_response.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    db = ProtoReflectionDescriptorDatabase(channel)
    with pytest.raises(KeyError):
        db.FindFileContainingSymbol("trackline.v1.TrackingService.NoSuchMethod")


def test_health_answers_for_the_server_and_every_service_listed(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", *LISTED):
        req = health_pb2.HealthCheckRequest(service=name)
        assert health.Check(req, timeout=5).status == SERVING
    listed = health.List(health_pb2.HealthListRequest(), timeout=5)
    assert {k: v.status for k, v in listed.statuses.items()} == dict.fromkeys(
        ("", *LISTED), SERVING
    )
    with pytest.raises(grpc.RpcError) as err:
        health.Check(health_pb2.HealthCheckRequest(service="trackline.v1.Nothing"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_a_lost_store_takes_down_the_services_over_it_not_reflection(srv: ServerProcess) -> None:
    client = TracklineClient(srv.address, retry_seconds=0)
    db = Path(srv.store_uri.split(":///", 1)[1])
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink()
    with pytest.raises(Unavailable):
        client.create_experiment("after")
    client.close()
    over_store = (
        "",
        "trackline.v1.TrackingService",
        "trackline.v1.IngestService",
        "trackline.v1.RegistryService",
        "trackline.v1.ArtifactService",
        "trackline.v1.ProjectService",
        "trackline.v1.TokenService",
    )
    with grpc.insecure_channel(srv.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)

        def statuses() -> dict[str, int]:
            listed = health.List(health_pb2.HealthListRequest(), timeout=5)
            return {k: v.status for k, v in listed.statuses.items()}

        expected = {name: NOT_SERVING if name in over_store else SERVING for name in ("", *LISTED)}
        assert eventually(lambda: statuses() == expected)
        db_client = ProtoReflectionDescriptorDatabase(channel)
        assert db_client.FindFileContainingSymbol("trackline.v1.TrackingService.GetRun")


def test_every_status_turns_not_serving_when_shutdown_drains(srv: ServerProcess) -> None:
    with grpc.insecure_channel(srv.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        names = ("", *sorted(LISTED))
        watches = [
            health.Watch(health_pb2.HealthCheckRequest(service=n), timeout=30) for n in names
        ]
        assert [next(w).status for w in watches] == [SERVING] * len(names)
        srv.proc.send_signal(signal.SIGTERM)
        assert [next(w).status for w in watches] == [NOT_SERVING] * len(names)
        for watch in watches:
            watch.cancel()
    assert srv.proc.wait(30) == 0


def _ghz() -> str | None:
    """ghz on PATH or beside this interpreter (where bench/unary.py installs it)."""
    return shutil.which("ghz") or shutil.which("ghz", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(_ghz() is None, reason="ghz is not installed")
def test_ghz_calls_a_method_it_found_by_reflection(srv: ServerProcess) -> None:
    binary = _ghz()
    assert binary is not None
    out = subprocess.run(
        [
            binary,
            "--insecure",
            "--call",
            "trackline.v1.TrackingService.GetExperiment",
            "--data",
            '{"experiment_id": "0"}',
            "--total",
            "3",
            "--format",
            "json",
            srv.address,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["statusCodeDistribution"] == {"OK": 3}, report["errorDistribution"]
