"""TracklineClient's Model Registry methods (RegistryService), named as MLflow's
``MlflowClient`` names them: registered models, their versions, aliases and stages, the
server's resolution of ``models:/`` URIs, and the live stream of registry changes.

A model is named by its name, a version by its model's name and its number (an ``int``, or
a string of digits as MLflow passes it). Stages are spelled as MLflow spells them (``"None"``,
``"Staging"``, ``"Production"``, ``"Archived"``, in any case) or given as ``ModelStage``
values; statuses as ``"PENDING_REGISTRATION"``, ``"READY"``, ``"FAILED_REGISTRATION"`` or
``ModelVersionStatus`` values. A name the client does not know is a ValueError; every refusal
of the server raises the exception of its status code with the server's reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from trackline.v1 import registry_pb2 as rpb
from trackline.v1 import resources_pb2 as pb

from ._calls import RegistryCalls
from ._transport import Metadata, ServerStream

_STAGES = {
    "none": rpb.MODEL_STAGE_NONE,
    "staging": rpb.MODEL_STAGE_STAGING,
    "production": rpb.MODEL_STAGE_PRODUCTION,
    "archived": rpb.MODEL_STAGE_ARCHIVED,
}
_STATUSES = {
    "pending_registration": rpb.MODEL_VERSION_STATUS_PENDING_REGISTRATION,
    "ready": rpb.MODEL_VERSION_STATUS_READY,
    "failed_registration": rpb.MODEL_VERSION_STATUS_FAILED_REGISTRATION,
}


class ModelEventStream(Iterator[rpb.ModelEvent]):
    """The registry's changes as they commit, one ``ModelEvent`` at a time, in id order
    (``watch_model_events``). It waits for the next change while none comes; ``close()``
    (from any thread, or leaving a ``with`` block) ends it. ``last_id`` is the id of the last
    event it yielded (or the ``after`` it was opened with; None before either): a watcher
    whose stream broke (``Unavailable``) opens another with ``after=last_id`` and misses
    nothing."""

    def __init__(self, responses: ServerStream[rpb.WatchModelEventsResponse], after: int | None):
        self._responses = responses
        self._pending: Iterator[rpb.ModelEvent] = iter(())
        self.last_id = after

    def __next__(self) -> rpb.ModelEvent:
        for event in self._pending:
            self.last_id = event.id
            return event
        while True:
            batch = next(self._responses).events
            if batch:
                self._pending = iter(batch[1:])
                self.last_id = batch[0].id
                return batch[0]

    def close(self) -> None:
        self._responses.close()

    def __enter__(self) -> ModelEventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RegistryMethods:
    """The Model Registry methods of ``TracklineClient``, over its ``registry_calls``; each
    takes keyword-only ``timeout`` and ``metadata`` as every client method does."""

    registry_calls: RegistryCalls

    # Registered models
    def create_registered_model(
        self,
        name: str,
        *,
        tags: Mapping[str, Any] | None = None,
        description: str = "",
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> rpb.RegisteredModel:
        """Creates a model; AlreadyExists (REGISTERED_MODEL_ALREADY_EXISTS) when the name is
        taken. Its request id makes a retry of a dropped attempt return the model created."""
        req = rpb.CreateRegisteredModelRequest(
            name=name, description=description, tags=_tags(tags), request_id=uuid.uuid4().hex
        )
        call = self.registry_calls.CreateRegisteredModel
        return call(req, timeout=timeout, metadata=metadata).registered_model

    def get_registered_model(
        self, name: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> rpb.RegisteredModel:
        """The model with its tags and aliases; NotFound (REGISTERED_MODEL_NOT_FOUND)."""
        req = rpb.GetRegisteredModelRequest(name=name)
        call = self.registry_calls.GetRegisteredModel
        return call(req, timeout=timeout, metadata=metadata).registered_model

    def rename_registered_model(
        self, name: str, new_name: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> rpb.RegisteredModel:
        """Renames a model; its versions, tags and aliases follow. Not retried (another
        client may take the old name in between)."""
        req = rpb.RenameRegisteredModelRequest(name=name, new_name=new_name)
        call = self.registry_calls.RenameRegisteredModel
        return call(req, timeout=timeout, metadata=metadata).registered_model

    def update_registered_model(
        self,
        name: str,
        description: str,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> rpb.RegisteredModel:
        """Replaces the model's description ("" clears it)."""
        req = rpb.UpdateRegisteredModelRequest(name=name, description=description)
        call = self.registry_calls.UpdateRegisteredModel
        return call(req, timeout=timeout, metadata=metadata).registered_model

    def delete_registered_model(
        self, name: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> None:
        """Deletes the model with its versions, tags and aliases, for good. Not retried
        (another client may create a model of that name in between)."""
        req = rpb.DeleteRegisteredModelRequest(name=name)
        self.registry_calls.DeleteRegisteredModel(req, timeout=timeout, metadata=metadata)

    def set_registered_model_tag(
        self,
        name: str,
        key: str,
        value: Any,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> None:
        req = rpb.SetRegisteredModelTagRequest(name=name, key=key, value=str(value))
        self.registry_calls.SetRegisteredModelTag(req, timeout=timeout, metadata=metadata)

    def delete_registered_model_tag(
        self, name: str, key: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> None:
        """Deletes a tag of the model; NotFound (TAG_NOT_FOUND) when it has none such."""
        req = rpb.DeleteRegisteredModelTagRequest(name=name, key=key)
        self.registry_calls.DeleteRegisteredModelTag(req, timeout=timeout, metadata=metadata)

    def search_registered_models(
        self,
        filter: str = "",
        *,
        order_by: list[str] | None = None,
        max_results: int | None = None,
        page_size: int = 0,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> Iterator[rpb.RegisteredModel]:
        """Yields matching models (default order ``name ASC``), fetching pages as needed;
        ``filter`` covers ``name``, ``creation_time``, ``last_updated_time`` and
        ``tags.<key>``, e.g. ``"name LIKE 'fraud%' AND tags.team = 'risk'"``."""
        req = rpb.SearchRegisteredModelsRequest(
            filter=filter, order_by=order_by or [], page_size=page_size
        )
        return self.registry_calls.SearchRegisteredModels.pages(
            req, "registered_models", max_results=max_results, timeout=timeout, metadata=metadata
        )

    # Model versions
    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str = "",
        *,
        tags: Mapping[str, Any] | None = None,
        description: str = "",
        status: str | int | None = None,
        status_message: str = "",
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> rpb.ModelVersion:
        """Creates the model's next version (1, 2, 3, ...) from ``source``, an artifact URI
        such as ``runs:/<run_id>/model`` or ``s3://bucket/path``. ``run_id`` names the run
        that produced it (NotFound RUN_NOT_FOUND when none has it). The version is READY
        unless ``status`` is ``"PENDING_REGISTRATION"`` (``update_model_version`` then makes
        it READY or FAILED_REGISTRATION). Its request id makes a retry of a dropped attempt
        return the version created, never a second one."""
        req = rpb.CreateModelVersionRequest(
            name=name,
            source=source,
            run_id=run_id,
            description=description,
            tags=_tags(tags),
            request_id=uuid.uuid4().hex,
            status=_status(status),
            status_message=status_message,
        )
        call = self.registry_calls.CreateModelVersion
        return call(req, timeout=timeout, metadata=metadata).model_version

    def get_model_version(
        self,
        name: str,
        version: int | str,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> rpb.ModelVersion:
        """The version with its tags and aliases; NotFound (REGISTERED_MODEL_NOT_FOUND or
        MODEL_VERSION_NOT_FOUND)."""
        req = rpb.GetModelVersionRequest(name=name, version=_version(version))
        call = self.registry_calls.GetModelVersion
        return call(req, timeout=timeout, metadata=metadata).model_version

    def update_model_version(
        self,
        name: str,
        version: int | str,
        description: str | None = None,
        *,
        status: str | int | None = None,
        status_message: str | None = None,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> rpb.ModelVersion:
        """Changes what is given: the description, the status (only of a
        PENDING_REGISTRATION version, else FailedPrecondition MODEL_VERSION_STATUS_FINAL),
        the status message."""
        req = rpb.UpdateModelVersionRequest(
            name=name, version=_version(version), status=_status(status)
        )
        if description is not None:
            req.description = description
        if status_message is not None:
            req.status_message = status_message
        call = self.registry_calls.UpdateModelVersion
        return call(req, timeout=timeout, metadata=metadata).model_version

    def delete_model_version(
        self,
        name: str,
        version: int | str,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> None:
        """Deletes the version with its tags and the aliases pointing at it, for good; its
        number is not given out again."""
        req = rpb.DeleteModelVersionRequest(name=name, version=_version(version))
        self.registry_calls.DeleteModelVersion(req, timeout=timeout, metadata=metadata)

    def set_model_version_tag(
        self,
        name: str,
        version: int | str,
        key: str,
        value: Any,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> None:
        req = rpb.SetModelVersionTagRequest(
            name=name, version=_version(version), key=key, value=str(value)
        )
        self.registry_calls.SetModelVersionTag(req, timeout=timeout, metadata=metadata)

    def delete_model_version_tag(
        self,
        name: str,
        version: int | str,
        key: str,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> None:
        """Deletes a tag of the version; NotFound (TAG_NOT_FOUND) when it has none such."""
        req = rpb.DeleteModelVersionTagRequest(name=name, version=_version(version), key=key)
        self.registry_calls.DeleteModelVersionTag(req, timeout=timeout, metadata=metadata)

    def search_model_versions(
        self,
        filter: str = "",
        *,
        order_by: list[str] | None = None,
        max_results: int | None = None,
        page_size: int = 0,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> Iterator[rpb.ModelVersion]:
        """Yields matching versions of any model (default order ``name ASC``, then
        ``version_number DESC``), fetching pages as needed; ``filter`` covers ``name``,
        ``version_number``, ``run_id``, ``source``, ``status``, ``stage``, ``creation_time``,
        ``last_updated_time`` and ``tags.<key>``, e.g. ``"name = 'fraud' AND
        version_number > 3"``."""
        req = rpb.SearchModelVersionsRequest(
            filter=filter, order_by=order_by or [], page_size=page_size
        )
        return self.registry_calls.SearchModelVersions.pages(
            req, "model_versions", max_results=max_results, timeout=timeout, metadata=metadata
        )

    # Aliases
    def set_registered_model_alias(
        self,
        name: str,
        alias: str,
        version: int | str,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> None:
        """Points ``alias`` at a READY version of the model, moving it in one transaction
        when it points elsewhere. An alias like a version (``3``, ``v3``) or ``latest`` is
        InvalidArgument (INVALID_ALIAS)."""
        req = rpb.SetRegisteredModelAliasRequest(name=name, alias=alias, version=_version(version))
        self.registry_calls.SetRegisteredModelAlias(req, timeout=timeout, metadata=metadata)

    def delete_registered_model_alias(
        self, name: str, alias: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> None:
        """Deletes an alias; NotFound (ALIAS_NOT_FOUND) when the model has none such."""
        req = rpb.DeleteRegisteredModelAliasRequest(name=name, alias=alias)
        self.registry_calls.DeleteRegisteredModelAlias(req, timeout=timeout, metadata=metadata)

    def get_model_version_by_alias(
        self, name: str, alias: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> rpb.ModelVersion:
        """The version the alias points at; NotFound (ALIAS_NOT_FOUND) when there is none."""
        req = rpb.GetModelVersionByAliasRequest(name=name, alias=alias)
        call = self.registry_calls.GetModelVersionByAlias
        return call(req, timeout=timeout, metadata=metadata).model_version

    # Stages
    def transition_model_version_stage(
        self,
        name: str,
        version: int | str,
        stage: str | int,
        archive_existing_versions: bool = False,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> rpb.ModelVersion:
        """Moves a READY version to ``stage``; ``archive_existing_versions`` also moves the
        model's other versions in that stage (Staging or Production) to Archived, in the same
        transaction."""
        req = rpb.TransitionModelVersionStageRequest(
            name=name,
            version=_version(version),
            stage=_stage(stage),
            archive_existing_versions=archive_existing_versions,
        )
        call = self.registry_calls.TransitionModelVersionStage
        return call(req, timeout=timeout, metadata=metadata).model_version

    def get_latest_versions(
        self,
        name: str,
        stages: Iterable[str | int] | None = None,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> list[rpb.ModelVersion]:
        """The highest-numbered version in each of ``stages`` that has one (None: every
        stage), in stage order (None, Staging, Production, Archived)."""
        req = rpb.GetLatestVersionsRequest(name=name, stages=[_stage(s) for s in stages or ()])
        call = self.registry_calls.GetLatestVersions
        return list(call(req, timeout=timeout, metadata=metadata).model_versions)

    # URIs and events
    def resolve_model_uri(
        self, uri: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> rpb.ModelVersion:
        """The version a ``models:/`` URI names, as the server resolves it for every
        language: ``models:/<name>/<version>``, ``models:/<name>@<alias>``,
        ``models:/<name>/latest`` (the highest-numbered READY version) or
        ``models:/<name>/<stage>``. Its ``source`` is where the artifacts are.
        InvalidArgument (INVALID_MODEL_URI) for another form."""
        req = rpb.ResolveModelUriRequest(uri=uri)
        call = self.registry_calls.ResolveModelUri
        return call(req, timeout=timeout, metadata=metadata).model_version

    def watch_model_events(
        self,
        names: Iterable[str] = (),
        after: int | None = None,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> ModelEventStream:
        """Streams the registry's changes as they commit (see ``ModelEventStream``), only
        those of ``names`` when given (at most 100; a rename matches its old or new name).
        ``after``: first every event after that id, then the new ones (OutOfRange
        EVENT_ID_OUT_OF_RANGE, raised by the first ``next``, when events after it were
        pruned already: the message names the oldest id kept); None: only changes from now
        on. ``timeout`` bounds the whole stream in seconds (None, the default: none). The
        stream is not retried: a broken one raises, and ``after=stream.last_id`` resumes."""
        req = rpb.WatchModelEventsRequest(names=list(names))
        if after is not None:
            req.after = after
        call = self.registry_calls.WatchModelEvents
        return ModelEventStream(call(req, timeout=timeout, metadata=metadata), after)


def _tags(tags: Mapping[str, Any] | None) -> list[pb.Tag]:
    return [pb.Tag(key=k, value=str(v)) for k, v in (tags or {}).items()]


def _version(version: int | str) -> int:
    """A version number from an int or a string of digits (MLflow passes strings)."""
    if isinstance(version, bool) or not isinstance(version, int | str):
        raise ValueError(f"a model version is an integer, not {version!r:.80}")
    try:
        return int(version)
    except ValueError:
        raise ValueError(f"a model version is an integer, not {version!r:.80}") from None


def _stage(stage: str | int) -> rpb.ModelStage:
    if isinstance(stage, int):
        return stage  # type: ignore[return-value]  # a ModelStage value; the server checks it
    try:
        return _STAGES[stage.lower()]
    except (KeyError, AttributeError):
        raise ValueError(
            f"stage must be one of None, Staging, Production, Archived, not {stage!r:.80}"
        ) from None


def _status(status: str | int | None) -> rpb.ModelVersionStatus:
    if status is None:
        return rpb.MODEL_VERSION_STATUS_UNSPECIFIED
    if isinstance(status, int):
        return status  # type: ignore[return-value]  # a ModelVersionStatus value; the server checks it
    try:
        return _STATUSES[status.lower()]
    except (KeyError, AttributeError):
        raise ValueError(
            "status must be one of PENDING_REGISTRATION, READY, FAILED_REGISTRATION, not"
            f" {status!r:.80}"
        ) from None


__all__ = ["ModelEventStream", "RegistryMethods"]
