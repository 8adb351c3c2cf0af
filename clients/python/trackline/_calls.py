"""Every method of each service as a call through one transport (``_transport``), with which
of them are idempotent (retried without a request id): ``TrackingCalls`` for TrackingService,
``RegistryCalls`` for RegistryService."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor

from trackline.v1 import registry_pb2 as rpb
from trackline.v1 import tracking_pb2 as tpb

from ._transport import StreamCall, Transport, UnaryCall

# The TrackingService calls a repeat cannot apply twice: the reads, and the calls that set a
# state (a repeat finds it set). The others (CreateExperiment, CreateRun, LogBatch) are
# retried only when their request carries a request_id.
IDEMPOTENT = frozenset(
    {
        "GetExperiment",
        "GetExperimentByName",
        "SearchExperiments",
        "GetRun",
        "SearchRuns",
        "GetMetricHistory",
        "GetMetricHistories",
        "UpdateExperiment",
        "SetExperimentTag",
        "DeleteExperimentTag",
        "DeleteExperiment",
        "RestoreExperiment",
        "UpdateRun",
        "DeleteRun",
        "RestoreRun",
        "DeleteRunTag",
        "LogInputs",
    }
)


class TrackingCalls:
    """Every TrackingService method as a ``UnaryCall`` through one transport, e.g.
    ``calls.GetRun(tpb.GetRunRequest(run_id=...), timeout=5)``; which of them are idempotent
    is ``IDEMPOTENT``."""

    CreateExperiment: UnaryCall[tpb.CreateExperimentRequest, tpb.CreateExperimentResponse]
    GetExperiment: UnaryCall[tpb.GetExperimentRequest, tpb.GetExperimentResponse]
    GetExperimentByName: UnaryCall[tpb.GetExperimentByNameRequest, tpb.GetExperimentByNameResponse]
    SearchExperiments: UnaryCall[tpb.SearchExperimentsRequest, tpb.SearchExperimentsResponse]
    UpdateExperiment: UnaryCall[tpb.UpdateExperimentRequest, tpb.UpdateExperimentResponse]
    SetExperimentTag: UnaryCall[tpb.SetExperimentTagRequest, tpb.SetExperimentTagResponse]
    DeleteExperimentTag: UnaryCall[tpb.DeleteExperimentTagRequest, tpb.DeleteExperimentTagResponse]
    DeleteExperiment: UnaryCall[tpb.DeleteExperimentRequest, tpb.DeleteExperimentResponse]
    RestoreExperiment: UnaryCall[tpb.RestoreExperimentRequest, tpb.RestoreExperimentResponse]
    CreateRun: UnaryCall[tpb.CreateRunRequest, tpb.CreateRunResponse]
    GetRun: UnaryCall[tpb.GetRunRequest, tpb.GetRunResponse]
    UpdateRun: UnaryCall[tpb.UpdateRunRequest, tpb.UpdateRunResponse]
    SearchRuns: UnaryCall[tpb.SearchRunsRequest, tpb.SearchRunsResponse]
    DeleteRun: UnaryCall[tpb.DeleteRunRequest, tpb.DeleteRunResponse]
    RestoreRun: UnaryCall[tpb.RestoreRunRequest, tpb.RestoreRunResponse]
    DeleteRunTag: UnaryCall[tpb.DeleteRunTagRequest, tpb.DeleteRunTagResponse]
    LogBatch: UnaryCall[tpb.LogBatchRequest, tpb.LogBatchResponse]
    LogInputs: UnaryCall[tpb.LogInputsRequest, tpb.LogInputsResponse]
    GetMetricHistory: UnaryCall[tpb.GetMetricHistoryRequest, tpb.GetMetricHistoryResponse]
    GetMetricHistories: UnaryCall[tpb.GetMetricHistoriesRequest, tpb.GetMetricHistoriesResponse]

    def __init__(self, transport: Transport) -> None:
        bind_calls(self, transport, tpb, "TrackingService", "tracking", IDEMPOTENT)


def bind_calls(
    calls: object,
    transport: Transport,
    module: ModuleType,
    service_name: str,
    stub: str,
    idempotent: frozenset[str],
) -> None:
    """Sets on ``calls`` one attribute per method of ``service_name`` (defined in the
    generated ``module``): a ``UnaryCall`` for a unary method, idempotent when named in
    ``idempotent``, and a ``StreamCall`` for a server stream."""
    service: ServiceDescriptor = module.DESCRIPTOR.services_by_name[service_name]
    for method in service.methods:
        types = getattr(module, method.input_type.name), getattr(module, method.output_type.name)
        call: UnaryCall[Any, Any] | StreamCall[Any, Any]
        if method.server_streaming:
            call = StreamCall(transport, method.name, *types, service=stub)
        else:
            call = UnaryCall(
                transport, method.name, *types, idempotent=method.name in idempotent, service=stub
            )
        setattr(calls, method.name, call)


# The RegistryService calls a repeat cannot apply twice: the reads, and the calls that set a
# state of a model or version (description, status, tags, aliases, stage) or delete a
# version (its number is never given out again). CreateRegisteredModel and
# CreateModelVersion are retried only with a request_id (the client gives them one).
# RenameRegisteredModel and DeleteRegisteredModel are never retried: they act on a name,
# which another client may give a new model between two attempts; a repeat would rename or
# delete that one.
REGISTRY_IDEMPOTENT = frozenset(
    {
        "GetRegisteredModel",
        "SearchRegisteredModels",
        "GetModelVersion",
        "SearchModelVersions",
        "GetModelVersionByAlias",
        "GetLatestVersions",
        "ResolveModelUri",
        "UpdateRegisteredModel",
        "SetRegisteredModelTag",
        "DeleteRegisteredModelTag",
        "UpdateModelVersion",
        "DeleteModelVersion",
        "SetModelVersionTag",
        "DeleteModelVersionTag",
        "SetRegisteredModelAlias",
        "DeleteRegisteredModelAlias",
        "TransitionModelVersionStage",
    }
)


class RegistryCalls:
    """Every RegistryService method through one transport: a ``UnaryCall`` each (idempotent
    when in ``REGISTRY_IDEMPOTENT``), and WatchModelEvents a ``StreamCall``, e.g.
    ``calls.GetRegisteredModel(rpb.GetRegisteredModelRequest(name="fraud"))``."""

    CreateRegisteredModel: UnaryCall[
        rpb.CreateRegisteredModelRequest, rpb.CreateRegisteredModelResponse
    ]
    GetRegisteredModel: UnaryCall[rpb.GetRegisteredModelRequest, rpb.GetRegisteredModelResponse]
    RenameRegisteredModel: UnaryCall[
        rpb.RenameRegisteredModelRequest, rpb.RenameRegisteredModelResponse
    ]
    UpdateRegisteredModel: UnaryCall[
        rpb.UpdateRegisteredModelRequest, rpb.UpdateRegisteredModelResponse
    ]
    DeleteRegisteredModel: UnaryCall[
        rpb.DeleteRegisteredModelRequest, rpb.DeleteRegisteredModelResponse
    ]
    SetRegisteredModelTag: UnaryCall[
        rpb.SetRegisteredModelTagRequest, rpb.SetRegisteredModelTagResponse
    ]
    DeleteRegisteredModelTag: UnaryCall[
        rpb.DeleteRegisteredModelTagRequest, rpb.DeleteRegisteredModelTagResponse
    ]
    SearchRegisteredModels: UnaryCall[
        rpb.SearchRegisteredModelsRequest, rpb.SearchRegisteredModelsResponse
    ]
    CreateModelVersion: UnaryCall[rpb.CreateModelVersionRequest, rpb.CreateModelVersionResponse]
    GetModelVersion: UnaryCall[rpb.GetModelVersionRequest, rpb.GetModelVersionResponse]
    UpdateModelVersion: UnaryCall[rpb.UpdateModelVersionRequest, rpb.UpdateModelVersionResponse]
    DeleteModelVersion: UnaryCall[rpb.DeleteModelVersionRequest, rpb.DeleteModelVersionResponse]
    SetModelVersionTag: UnaryCall[rpb.SetModelVersionTagRequest, rpb.SetModelVersionTagResponse]
    DeleteModelVersionTag: UnaryCall[
        rpb.DeleteModelVersionTagRequest, rpb.DeleteModelVersionTagResponse
    ]
    SearchModelVersions: UnaryCall[rpb.SearchModelVersionsRequest, rpb.SearchModelVersionsResponse]
    SetRegisteredModelAlias: UnaryCall[
        rpb.SetRegisteredModelAliasRequest, rpb.SetRegisteredModelAliasResponse
    ]
    DeleteRegisteredModelAlias: UnaryCall[
        rpb.DeleteRegisteredModelAliasRequest, rpb.DeleteRegisteredModelAliasResponse
    ]
    GetModelVersionByAlias: UnaryCall[
        rpb.GetModelVersionByAliasRequest, rpb.GetModelVersionByAliasResponse
    ]
    TransitionModelVersionStage: UnaryCall[
        rpb.TransitionModelVersionStageRequest, rpb.TransitionModelVersionStageResponse
    ]
    GetLatestVersions: UnaryCall[rpb.GetLatestVersionsRequest, rpb.GetLatestVersionsResponse]
    ResolveModelUri: UnaryCall[rpb.ResolveModelUriRequest, rpb.ResolveModelUriResponse]
    WatchModelEvents: StreamCall[rpb.WatchModelEventsRequest, rpb.WatchModelEventsResponse]

    def __init__(self, transport: Transport) -> None:
        bind_calls(self, transport, rpb, "RegistryService", "registry", REGISTRY_IDEMPOTENT)
