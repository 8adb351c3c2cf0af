"""The one table of what every RPC needs: a permission (the least role) and where its request
names what it reaches (``scopes.Target``), for the check of a scoped token.

An RPC missing here is refused (PERMISSION_DENIED) for every token, and the test
``test_permission_table`` walks the descriptors of every service the server serves, so an RPC
added without an entry fails CI rather than going out open.

Roles: a reader reads; a writer writes runs, metrics, artifacts, model versions, aliases and
project runs (submitting them, and working them as ``trackline worker``); an admin manages
tokens and makes the deletes that cannot be undone (a registered model, a model version, an
artifact). Deleting a run or an experiment is a writer's: it can be restored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .authenticator import Authenticator
from .principal import Principal
from .roles import Permission
from .scopes import (
    ExperimentByIdOrName,
    ExperimentId,
    ExperimentIds,
    ExperimentName,
    Filtered,
    Model,
    Nothing,
    ProjectRun,
    Resources,
    Runs,
    Target,
    Upload,
)


@dataclass(frozen=True)
class Rule:
    permission: Permission
    target: Target


READ, WRITE, ADMIN, OPEN = Permission.READ, Permission.WRITE, Permission.ADMIN, Permission.OPEN

_T = "/trackline.v1.TrackingService/"
_I = "/trackline.v1.IngestService/"
_R = "/trackline.v1.RegistryService/"
_A = "/trackline.v1.ArtifactService/"
_P = "/trackline.v1.ProjectService/"
_K = "/trackline.v1.TokenService/"
_RUN = Runs("run_id")
_MODEL = Model("name")

RULES: Mapping[str, Rule] = {
    # Tracking
    _T + "CreateExperiment": Rule(WRITE, ExperimentName("name")),
    _T + "GetExperiment": Rule(READ, ExperimentId("experiment_id")),
    _T + "GetExperimentByName": Rule(READ, ExperimentName("name")),
    _T + "UpdateExperiment": Rule(WRITE, ExperimentId("experiment_id", new_name="new_name")),
    _T + "DeleteExperiment": Rule(WRITE, ExperimentId("experiment_id")),
    _T + "RestoreExperiment": Rule(WRITE, ExperimentId("experiment_id")),
    _T + "SetExperimentTag": Rule(WRITE, ExperimentId("experiment_id")),
    _T + "DeleteExperimentTag": Rule(WRITE, ExperimentId("experiment_id")),
    _T + "SearchExperiments": Rule(READ, Filtered("only experiments in scope")),
    _T + "CreateRun": Rule(WRITE, ExperimentId("experiment_id", empty_is_default=True)),
    _T + "GetRun": Rule(READ, _RUN),
    _T + "UpdateRun": Rule(WRITE, _RUN),
    _T + "DeleteRun": Rule(WRITE, _RUN),
    _T + "RestoreRun": Rule(WRITE, _RUN),
    _T + "DeleteRunTag": Rule(WRITE, _RUN),
    _T + "LogBatch": Rule(WRITE, _RUN),
    _T + "LogInputs": Rule(WRITE, _RUN),
    _T + "GetMetricHistory": Rule(READ, _RUN),
    _T + "GetMetricHistories": Rule(READ, Runs("run_ids")),
    _T + "SearchRuns": Rule(READ, ExperimentIds("experiment_ids")),
    # Ingest: every block's runs, as each message arrives
    _I + "StreamMetrics": Rule(WRITE, Runs("block.run_ids")),
    # Registry
    _R + "CreateRegisteredModel": Rule(WRITE, _MODEL),
    _R + "GetRegisteredModel": Rule(READ, _MODEL),
    _R + "RenameRegisteredModel": Rule(WRITE, Model("name", also=("new_name",))),
    _R + "UpdateRegisteredModel": Rule(WRITE, _MODEL),
    _R + "DeleteRegisteredModel": Rule(ADMIN, _MODEL),
    _R + "SetRegisteredModelTag": Rule(WRITE, _MODEL),
    _R + "DeleteRegisteredModelTag": Rule(WRITE, _MODEL),
    _R + "SearchRegisteredModels": Rule(READ, Filtered("only models in scope")),
    _R + "CreateModelVersion": Rule(WRITE, Model("name")),  # + its source run: the service
    _R + "GetModelVersion": Rule(READ, _MODEL),
    _R + "UpdateModelVersion": Rule(WRITE, _MODEL),
    _R + "DeleteModelVersion": Rule(ADMIN, _MODEL),
    _R + "SetModelVersionTag": Rule(WRITE, _MODEL),
    _R + "DeleteModelVersionTag": Rule(WRITE, _MODEL),
    _R + "SearchModelVersions": Rule(READ, Filtered("only versions of models in scope")),
    _R + "SetRegisteredModelAlias": Rule(WRITE, _MODEL),
    _R + "DeleteRegisteredModelAlias": Rule(WRITE, _MODEL),
    _R + "GetModelVersionByAlias": Rule(READ, _MODEL),
    _R + "TransitionModelVersionStage": Rule(WRITE, _MODEL),
    _R + "GetLatestVersions": Rule(READ, _MODEL),
    _R + "ResolveModelUri": Rule(READ, Filtered("the model the URI names")),
    _R + "WatchModelEvents": Rule(READ, Filtered("only events of models in scope")),
    # Artifacts
    _A + "UploadArtifact": Rule(WRITE, Runs("header.run_id")),
    _A + "DownloadArtifact": Rule(READ, _RUN),
    _A + "ListArtifacts": Rule(READ, _RUN),
    _A + "DeleteArtifact": Rule(ADMIN, _RUN),
    _A + "CreateArtifactUploadUrls": Rule(WRITE, _RUN),
    _A + "CompleteArtifactUpload": Rule(WRITE, Upload("upload_id")),
    _A + "AbortArtifactUpload": Rule(WRITE, Upload("upload_id")),
    _A + "CreateArtifactDownloadUrl": Rule(READ, _RUN),
    # Project runs
    _P + "SubmitProjectRun": Rule(WRITE, ExperimentByIdOrName("experiment_id", "experiment_name")),
    _P + "GetProjectRun": Rule(READ, ProjectRun("project_run_id")),
    _P + "SearchProjectRuns": Rule(READ, Filtered("only runs of experiments in scope")),
    _P + "StreamProjectRunLogs": Rule(READ, ProjectRun("project_run_id")),
    _P + "CancelProjectRun": Rule(WRITE, ProjectRun("project_run_id")),
    _P + "LeaseProjectRun": Rule(WRITE, Filtered("only runs of experiments in scope")),
    _P + "RenewProjectRunLease": Rule(WRITE, ProjectRun("project_run_id")),
    _P + "AppendProjectRunLogs": Rule(WRITE, ProjectRun("project_run_id")),
    _P + "CompleteProjectRun": Rule(WRITE, ProjectRun("project_run_id")),
    # Tokens
    _K + "CreateToken": Rule(ADMIN, Nothing()),
    _K + "ListTokens": Rule(ADMIN, Nothing()),
    _K + "RevokeToken": Rule(ADMIN, Nothing()),
    _K + "WhoAmI": Rule(READ, Nothing()),
    # Health checks come from load balancers without credentials; reflection describes the
    # API to any token holder (grpcurl).
    "/grpc.health.v1.Health/Check": Rule(OPEN, Nothing()),
    "/grpc.health.v1.Health/List": Rule(OPEN, Nothing()),
    "/grpc.health.v1.Health/Watch": Rule(OPEN, Nothing()),
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": Rule(READ, Nothing()),
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Rule(READ, Nothing()),
}


class AccessGuard:
    """The edge's ``RequestGuard``: a scoped principal's request checked by its RPC's target,
    and a stream's token checked again as its messages come."""

    def __init__(
        self,
        resources: Resources,
        authenticator: Authenticator,
        rules: Mapping[str, Rule] = RULES,
    ) -> None:
        self.resources = resources
        self._authenticator = authenticator
        self._rules = rules

    async def check(self, method: str, request: Any, principal: Principal) -> None:
        rule = self._rules.get(method)
        if rule is not None:
            await rule.target.check(request, principal, self.resources)

    async def recheck(self, principal: Principal) -> None:
        await self._authenticator.recheck(principal)
