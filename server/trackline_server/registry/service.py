"""RegistryService: registered models, versions, aliases, stages, models:/ URIs and the
event stream, written once for every transport (``transport/grpc_server.py`` serves it).

``@reads``/``@writes`` methods run inside the unit of work the edge opened (``call.reader``,
``call.conn``) and never commit. Every write records its events (``events.append``) last in
its transaction, after locking the model (``models.lock``) first: one lock order for all.
WatchModelEvents (``@own_transactions``) polls the event log in short snapshots of its own,
until the caller goes away or the server begins to shut down (``begin_shutdown``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from trackline.v1 import registry_pb2 as rpb

from .. import idempotency, limits, tags, validation
from ..auth.scopes import require_run_in
from ..database import Database
from ..errors import InvalidArgument, Unavailable, shown
from ..models import model_version_tags, registered_model_tags
from ..tracking import runs
from ..transport import Call, own_transactions, reads, writes
from . import aliases, events, models, search, stages, uris, versions
from .events import Change

_T = rpb.ModelEventType


class RegistryService:
    def __init__(
        self, db: Database, event_retention_s: float = limits.REGISTRY_EVENT_RETENTION_S
    ) -> None:
        self.db = db
        self.event_retention_s = event_retention_s
        self._closing = asyncio.Event()

    def begin_shutdown(self) -> None:
        """Open watches end (UNAVAILABLE SHUTTING_DOWN) within a poll interval, instead of
        holding the server's shutdown for its whole grace period; a watcher resumes on another
        server, or this one restarted, after the last id it saw."""
        self._closing.set()

    async def _record(self, call: Call, *changes: Change) -> None:
        """Records ``changes`` in the call's transaction, by the call's principal."""
        for change in changes:
            await events.append(call.conn, change, self.event_retention_s, call.principal.author)

    # Registered models

    @writes
    async def create_registered_model(
        self, request: rpb.CreateRegisteredModelRequest, call: Call
    ) -> rpb.CreateRegisteredModelResponse:
        conn, rid = call.conn, request.request_id
        validation.check_request_id(rid)
        done = rid and await idempotency.applied(conn, rid, "CreateRegisteredModel")
        if done:
            mid = int(done)
        else:
            pairs = [(t.key, t.value) for t in request.tags]
            mid = await models.create(conn, request.name, request.description, pairs)
            if rid:
                await idempotency.record(conn, rid, "CreateRegisteredModel", str(mid))
            await self._record(
                call, Change(_T.MODEL_EVENT_TYPE_REGISTERED_MODEL_CREATED, request.name)
            )
        return rpb.CreateRegisteredModelResponse(registered_model=await models.get(conn, mid))

    @reads
    async def get_registered_model(
        self, request: rpb.GetRegisteredModelRequest, call: Call
    ) -> rpb.GetRegisteredModelResponse:
        mid = await models.model_id(call.reader, request.name)
        return rpb.GetRegisteredModelResponse(registered_model=await models.get(call.reader, mid))

    @writes
    async def rename_registered_model(
        self, request: rpb.RenameRegisteredModelRequest, call: Call
    ) -> rpb.RenameRegisteredModelResponse:
        mid = await models.rename(call.conn, request.name, request.new_name)
        if request.new_name != request.name:
            change = Change(
                _T.MODEL_EVENT_TYPE_REGISTERED_MODEL_RENAMED,
                request.new_name,
                previous_name=request.name,
            )
            await self._record(call, change)
        model = await models.get(call.conn, mid)
        return rpb.RenameRegisteredModelResponse(registered_model=model)

    @writes
    async def update_registered_model(
        self, request: rpb.UpdateRegisteredModelRequest, call: Call
    ) -> rpb.UpdateRegisteredModelResponse:
        mid = await models.set_description(call.conn, request.name, request.description)
        await self._record(call, Change(_T.MODEL_EVENT_TYPE_REGISTERED_MODEL_UPDATED, request.name))
        model = await models.get(call.conn, mid)
        return rpb.UpdateRegisteredModelResponse(registered_model=model)

    @writes
    async def delete_registered_model(
        self, request: rpb.DeleteRegisteredModelRequest, call: Call
    ) -> rpb.DeleteRegisteredModelResponse:
        await models.delete_model(call.conn, request.name)
        await self._record(call, Change(_T.MODEL_EVENT_TYPE_REGISTERED_MODEL_DELETED, request.name))
        return rpb.DeleteRegisteredModelResponse()

    @writes
    async def set_registered_model_tag(
        self, request: rpb.SetRegisteredModelTagRequest, call: Call
    ) -> rpb.SetRegisteredModelTagResponse:
        _check_tag(request.key, request.value)
        mid = await models.lock(call.conn, request.name)
        await tags.upsert(call.conn, registered_model_tags, mid, [(request.key, request.value)])
        change = Change(_T.MODEL_EVENT_TYPE_REGISTERED_MODEL_TAG_SET, request.name, key=request.key)
        await self._record(call, change)
        return rpb.SetRegisteredModelTagResponse()

    @writes
    async def delete_registered_model_tag(
        self, request: rpb.DeleteRegisteredModelTagRequest, call: Call
    ) -> rpb.DeleteRegisteredModelTagResponse:
        mid = await models.lock(call.conn, request.name)
        owner = f"registered model {shown(request.name)}"
        await tags.delete(call.conn, registered_model_tags, mid, request.key, owner)
        change = Change(
            _T.MODEL_EVENT_TYPE_REGISTERED_MODEL_TAG_DELETED, request.name, key=request.key
        )
        await self._record(call, change)
        return rpb.DeleteRegisteredModelTagResponse()

    @reads
    async def search_registered_models(
        self, request: rpb.SearchRegisteredModelsRequest, call: Call
    ) -> rpb.SearchRegisteredModelsResponse:
        found, token = await search.search_models(
            call.reader, request.filter, list(request.order_by), request.page_size,
            request.page_token, call.principal.models,
        )  # fmt: skip
        return rpb.SearchRegisteredModelsResponse(registered_models=found, next_page_token=token)

    # Model versions

    @writes
    async def create_model_version(
        self, request: rpb.CreateModelVersionRequest, call: Call
    ) -> rpb.CreateModelVersionResponse:
        conn, rid, name = call.conn, request.request_id, request.name
        pairs = [(t.key, t.value) for t in request.tags]
        validation.check_request_id(rid)
        versions.check_new(
            request.source, request.run_id, request.description, pairs, request.status,
            request.status_message,
        )  # fmt: skip
        mid = await models.lock(conn, name)
        done = rid and await idempotency.applied(conn, rid, "CreateModelVersion")
        if done:
            created = await versions.get(conn, int(done))
            if created.name != name:
                raise idempotency.reused(rid, "another model")
            return rpb.CreateModelVersionResponse(model_version=created)
        if request.run_id:
            await runs.get_row(conn, request.run_id)
            await require_run_in(conn, call.principal, request.run_id)
        source_run = uris.run_of_source(request.source)
        if source_run and source_run != request.run_id:
            await require_run_in(conn, call.principal, source_run)
        vid = await versions.create(
            conn, mid, name, request.source, request.run_id, request.description, pairs,
            request.status, request.status_message, call.principal.author,
        )  # fmt: skip
        if rid:
            await idempotency.record(conn, rid, "CreateModelVersion", str(vid))
        created = await versions.get(conn, vid)
        change = Change(
            _T.MODEL_EVENT_TYPE_MODEL_VERSION_CREATED, name, version=created.version,
            stage=created.stage, status=created.status,
        )  # fmt: skip
        await self._record(call, change)
        return rpb.CreateModelVersionResponse(model_version=created)

    @reads
    async def get_model_version(
        self, request: rpb.GetModelVersionRequest, call: Call
    ) -> rpb.GetModelVersionResponse:
        mid = await models.model_id(call.reader, request.name)
        row = await versions.row(call.reader, mid, request.name, request.version)
        found = await versions.get(call.reader, row.version_id)
        return rpb.GetModelVersionResponse(model_version=found)

    @writes
    async def update_model_version(
        self, request: rpb.UpdateModelVersionRequest, call: Call
    ) -> rpb.UpdateModelVersionResponse:
        conn, name = call.conn, request.name
        mid = await models.lock(conn, name)
        row = await versions.row(conn, mid, name, request.version)
        description = request.description if request.HasField("description") else None
        message = request.status_message if request.HasField("status_message") else None
        status_changed = await versions.update_fields(
            conn, row, name, description, request.status, message
        )
        updated = await versions.get(conn, row.version_id)
        kinds = []
        if description is not None or message is not None:
            kinds.append(_T.MODEL_EVENT_TYPE_MODEL_VERSION_UPDATED)
        if status_changed:
            kinds.append(_T.MODEL_EVENT_TYPE_MODEL_VERSION_STATUS_CHANGED)
        await self._record(
            call,
            *(
                Change(kind, name, updated.version, stage=updated.stage, status=updated.status)
                for kind in kinds
            ),
        )
        return rpb.UpdateModelVersionResponse(model_version=updated)

    @writes
    async def delete_model_version(
        self, request: rpb.DeleteModelVersionRequest, call: Call
    ) -> rpb.DeleteModelVersionResponse:
        conn, name = call.conn, request.name
        mid = await models.lock(conn, name)
        row = await versions.row(conn, mid, name, request.version)
        dropped = await versions.delete_version(conn, row.version_id)
        await self._record(
            call,
            *(Change(_T.MODEL_EVENT_TYPE_ALIAS_DELETED, name, row.version, a) for a in dropped),
            Change(_T.MODEL_EVENT_TYPE_MODEL_VERSION_DELETED, name, row.version),
        )
        return rpb.DeleteModelVersionResponse()

    @writes
    async def set_model_version_tag(
        self, request: rpb.SetModelVersionTagRequest, call: Call
    ) -> rpb.SetModelVersionTagResponse:
        _check_tag(request.key, request.value)
        conn, name = call.conn, request.name
        row = await versions.row(conn, await models.lock(conn, name), name, request.version)
        await tags.upsert(conn, model_version_tags, row.version_id, [(request.key, request.value)])
        await versions.touch(conn, row.version_id)
        change = Change(
            _T.MODEL_EVENT_TYPE_MODEL_VERSION_TAG_SET, name, row.version, key=request.key,
            stage=row.stage, status=row.status,
        )  # fmt: skip
        await self._record(call, change)
        return rpb.SetModelVersionTagResponse()

    @writes
    async def delete_model_version_tag(
        self, request: rpb.DeleteModelVersionTagRequest, call: Call
    ) -> rpb.DeleteModelVersionTagResponse:
        conn, name = call.conn, request.name
        row = await versions.row(conn, await models.lock(conn, name), name, request.version)
        owner = f"version {row.version} of {shown(name)}"
        await tags.delete(conn, model_version_tags, row.version_id, request.key, owner)
        await versions.touch(conn, row.version_id)
        change = Change(
            _T.MODEL_EVENT_TYPE_MODEL_VERSION_TAG_DELETED, name, row.version, key=request.key,
            stage=row.stage, status=row.status,
        )  # fmt: skip
        await self._record(call, change)
        return rpb.DeleteModelVersionTagResponse()

    @reads
    async def search_model_versions(
        self, request: rpb.SearchModelVersionsRequest, call: Call
    ) -> rpb.SearchModelVersionsResponse:
        found, token = await search.search_versions(
            call.reader, request.filter, list(request.order_by), request.page_size,
            request.page_token, call.principal.models,
        )  # fmt: skip
        return rpb.SearchModelVersionsResponse(model_versions=found, next_page_token=token)

    # Aliases

    @writes
    async def set_registered_model_alias(
        self, request: rpb.SetRegisteredModelAliasRequest, call: Call
    ) -> rpb.SetRegisteredModelAliasResponse:
        conn, name, alias = call.conn, request.name, request.alias
        aliases.check_alias(alias)
        mid = await models.lock(conn, name)
        row = await versions.row(conn, mid, name, request.version)
        versions.require_ready(row, name, f"get the alias {shown(alias)}")
        await aliases.set_alias(conn, mid, alias, row.version_id)
        await self._record(call, Change(_T.MODEL_EVENT_TYPE_ALIAS_SET, name, row.version, alias))
        return rpb.SetRegisteredModelAliasResponse()

    @writes
    async def delete_registered_model_alias(
        self, request: rpb.DeleteRegisteredModelAliasRequest, call: Call
    ) -> rpb.DeleteRegisteredModelAliasResponse:
        conn, name, alias = call.conn, request.name, request.alias
        mid = await models.lock(conn, name)
        vid = await aliases.version_of(conn, mid, name, alias)
        number = (await versions.get(conn, vid)).version
        await aliases.delete_alias(conn, mid, name, alias)
        await self._record(call, Change(_T.MODEL_EVENT_TYPE_ALIAS_DELETED, name, number, alias))
        return rpb.DeleteRegisteredModelAliasResponse()

    @reads
    async def get_model_version_by_alias(
        self, request: rpb.GetModelVersionByAliasRequest, call: Call
    ) -> rpb.GetModelVersionByAliasResponse:
        mid = await models.model_id(call.reader, request.name)
        vid = await aliases.version_of(call.reader, mid, request.name, request.alias)
        found = await versions.get(call.reader, vid)
        return rpb.GetModelVersionByAliasResponse(model_version=found)

    # Stages

    @writes
    async def transition_model_version_stage(
        self, request: rpb.TransitionModelVersionStageRequest, call: Call
    ) -> rpb.TransitionModelVersionStageResponse:
        conn, name, stage = call.conn, request.name, request.stage
        stages.check_stage(stage)
        mid = await models.lock(conn, name)
        row = await versions.row(conn, mid, name, request.version)
        versions.require_ready(row, name, "change stage")
        archived = await stages.transition(conn, mid, row, stage, request.archive_existing_versions)
        changed = _T.MODEL_EVENT_TYPE_MODEL_VERSION_STAGE_CHANGED
        ready = versions.READY
        await self._record(
            call,
            *(
                Change(changed, name, n, stage=rpb.MODEL_STAGE_ARCHIVED, status=ready)
                for n in archived
            ),
            Change(changed, name, row.version, stage=stage, status=row.status),
        )
        moved = await versions.get(conn, row.version_id)
        return rpb.TransitionModelVersionStageResponse(model_version=moved)

    @reads
    async def get_latest_versions(
        self, request: rpb.GetLatestVersionsRequest, call: Call
    ) -> rpb.GetLatestVersionsResponse:
        mid = await models.model_id(call.reader, request.name)
        ids = await stages.latest(call.reader, mid, list(request.stages))
        found = await versions.load(call.reader, ids)
        return rpb.GetLatestVersionsResponse(model_versions=found)

    # URIs

    @reads
    async def resolve_model_uri(
        self, request: rpb.ResolveModelUriRequest, call: Call
    ) -> rpb.ResolveModelUriResponse:
        call.principal.require_model(uris.parse(request.uri)[0])
        found = await versions.get(call.reader, await uris.resolve(call.reader, request.uri))
        return rpb.ResolveModelUriResponse(model_version=found, source=found.source)

    # Events

    @own_transactions
    async def watch_model_events(
        self, request: rpb.WatchModelEventsRequest, call: Call
    ) -> AsyncIterator[rpb.WatchModelEventsResponse]:
        """Sends the events after ``after`` (or from now), then polls for new ones every
        REGISTRY_EVENT_POLL_S until the caller goes away or the server shuts down. The cursor
        moves over every event read, sent or filtered out, so nothing is sent twice nor
        skipped."""
        names = frozenset(request.names)
        scope = call.principal.models
        for name in names:
            call.principal.require_model(name)
        if len(request.names) > limits.MAX_WATCHED_MODELS:
            raise InvalidArgument(
                "TOO_MANY_MODELS",
                f"{len(request.names)} model names; at most {limits.MAX_WATCHED_MODELS}",
                "names",
            )
        async with self.db.snapshot() as snap:
            if request.HasField("after"):
                await events.check_resume(snap, request.after)
                cursor = request.after
            else:
                cursor = await events.last_id(snap)
        while not self._closing.is_set():
            async with self.db.snapshot() as snap:
                found = await events.after(snap, cursor, limits.REGISTRY_EVENT_BATCH)
            if found:
                cursor = found[-1].id
                kept = [
                    e
                    for e in found
                    if (not names or e.name in names or e.previous_name in names)
                    and (scope.admits(e.name) or scope.admits(e.previous_name))
                ]
                if kept:
                    yield rpb.WatchModelEventsResponse(events=kept)
            if len(found) < limits.REGISTRY_EVENT_BATCH:
                await asyncio.sleep(limits.REGISTRY_EVENT_POLL_S)
        raise Unavailable(
            "SHUTTING_DOWN", "the server is shutting down; watch again after the last id seen"
        )


def _check_tag(key: str, value: str) -> None:
    problems = validation.Problems()
    problems.check(validation.check_key, key, "key")
    problems.check(validation.check_value, value, "value", limits.MAX_TAG_VALUE_LENGTH, "tag value")
    problems.raise_if_any()
