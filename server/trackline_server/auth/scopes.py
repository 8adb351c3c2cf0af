"""A scoped token's call checked against the experiments, runs and models its request names.

Each RPC's entry in ``permissions.py`` says where its request names what it reaches (a
``Target``); the edge asks the target to check a request of a scoped principal before the
service sees it, and, for a client stream, every message that names something new. A name or
id that names nothing passes: the service answers NOT_FOUND as it would for anyone, so a
scoped token learns no more than that an id exists outside its scope (run ids are random;
experiment ids are sequential and their existence is no secret). Refusing with
PERMISSION_DENIED rather than pretending NOT_FOUND tells the caller what to do: ask for a
token that reaches the resource, instead of chasing a run that exists.

Searches, lists and watches cannot be checked from the request alone: their targets are
``FILTERED``, and the service narrows what it returns with ``Principal.experiments.clause``
and ``Principal.models``.

The run -> experiment map never changes, so it is kept (bounded); an experiment's name can
change (a rename), so it is kept for ``NAME_TTL_S`` and dropped on a rename in this process.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import bindparam, select

from .. import models
from ..database import Database
from ..sql import Query, Reader, first
from .principal import Principal

NAME_TTL_S = 2.0
_RUNS_KEPT = 100_000

_RUN = Query(
    lambda _: select(models.runs.c.experiment_id).where(models.runs.c.run_id == bindparam("run_id"))
)
_EXPERIMENT = Query(
    lambda _: select(models.experiments.c.name).where(
        models.experiments.c.experiment_id == bindparam("experiment_id")
    )
)
_UPLOAD = Query(
    lambda _: select(models.artifact_uploads.c.run_id).where(
        models.artifact_uploads.c.upload_id == bindparam("upload_id")
    )
)
_PROJECT_RUN = Query(
    lambda _: select(
        models.project_runs.c.experiment_id, models.project_runs.c.experiment_name
    ).where(models.project_runs.c.project_run_id == bindparam("project_run_id"))
)
_DEFAULT_EXPERIMENT = "0"


class Resources:
    """Where runs, uploads and project runs are, read from the store (and partly kept)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._run_experiment: OrderedDict[str, str] = OrderedDict()
        self._names: dict[str, tuple[str, float]] = {}

    def forget_names(self) -> None:
        """Drops the kept experiment names (after a rename)."""
        self._names.clear()

    async def experiment_of_run(self, run_id: str) -> str | None:
        """The experiment id of the run; None when no run has ``run_id``."""
        found = self._run_experiment.get(run_id)
        if found is not None:
            self._run_experiment.move_to_end(run_id)
            return found
        if not 1 <= len(run_id) <= 64:
            return None
        async with self._db.snapshot() as snap:
            row = await first(snap, _RUN, {"run_id": run_id})
        if row is None:
            return None
        self._run_experiment[run_id] = experiment_id = str(row[0])
        if len(self._run_experiment) > _RUNS_KEPT:
            self._run_experiment.popitem(last=False)
        return experiment_id

    async def experiment_name(self, experiment_id: str) -> str | None:
        """The experiment's name; None when no experiment has ``experiment_id``."""
        kept = self._names.get(experiment_id)
        now = time.monotonic()
        if kept is not None and now - kept[1] < NAME_TTL_S:
            return kept[0]
        if not experiment_id.isascii() or not experiment_id.isdigit() or len(experiment_id) > 18:
            return None
        async with self._db.snapshot() as snap:
            row = await first(snap, _EXPERIMENT, {"experiment_id": int(experiment_id)})
        if row is None:
            return None
        if len(self._names) > 10_000:
            self._names.clear()
        self._names[experiment_id] = (str(row[0]), now)
        return str(row[0])

    async def run_of_upload(self, upload_id: str) -> str | None:
        if not 1 <= len(upload_id) <= 64:
            return None
        async with self._db.snapshot() as snap:
            row = await first(snap, _UPLOAD, {"upload_id": upload_id})
        return None if row is None else str(row[0])

    async def experiment_of_project_run(self, project_run_id: str) -> tuple[str, str] | None:
        """(experiment id, experiment name) the project run was submitted with, either may
        be ""; None when no project run has the id."""
        if not 1 <= len(project_run_id) <= 64:
            return None
        async with self._db.snapshot() as snap:
            row = await first(snap, _PROJECT_RUN, {"project_run_id": project_run_id})
        return None if row is None else (str(row[0]), str(row[1]))

    async def require_experiment(self, principal: Principal, experiment_id: str) -> None:
        name = await self.experiment_name(experiment_id)
        if name is not None:
            principal.require_experiment(experiment_id, name)

    async def require_run(self, principal: Principal, run_id: str) -> None:
        experiment_id = await self.experiment_of_run(run_id)
        if experiment_id is not None:
            await self.require_experiment(principal, experiment_id)


async def require_run_in(reader: Reader, principal: Principal, run_id: str) -> None:
    """``Resources.require_run`` inside a service's own unit of work (nothing kept)."""
    if principal.experiments.everything or not run_id or len(run_id) > 64:
        return
    row = await first(reader, _RUN, {"run_id": run_id})
    if row is None:
        return
    experiment_id = str(row[0])
    name = await first(reader, _EXPERIMENT, {"experiment_id": int(experiment_id)})
    if name is not None:
        principal.require_experiment(experiment_id, str(name[0]))


class Target(Protocol):
    """Where a request names what it reaches, and how to check that for a principal."""

    async def check(self, request: Any, principal: Principal, resources: Resources) -> None:
        """Raises PERMISSION_DENIED OUT_OF_SCOPE when the request reaches out of scope."""
        ...

    def describe(self) -> str:
        """For the permission table's documentation and error text."""
        ...


def _field(request: Any, path: str) -> Any:
    """The value at ``path`` ("header.run_id") of a message."""
    value = request
    for part in path.split("."):
        value = getattr(value, part)
    return value


@dataclass(frozen=True)
class Nothing:
    """Reaches no experiment or model (health, tokens, who am I)."""

    async def check(self, request: Any, principal: Principal, resources: Resources) -> None:
        return None

    def describe(self) -> str:
        return "nothing scoped"


@dataclass(frozen=True)
class Filtered:
    """The service narrows what it returns to the scope, or checks what it resolves itself
    (``how`` says which)."""

    how: str

    async def check(self, request: Any, principal: Principal, resources: Resources) -> None:
        return None

    def describe(self) -> str:
        return f"the service: {self.how}"


@dataclass(frozen=True)
class ExperimentId:
    """An experiment by id; ``""`` is the default experiment when ``empty_is_default``.
    ``new_name``: the field of a rename's new name, which must stay in scope (a token
    scoped by name prefix cannot rename an experiment out of its reach, or into another's)."""

    field: str
    empty_is_default: bool = False
    new_name: str | None = None

    async def check(self, request: Any, principal: Principal, resources: Resources) -> None:
        experiment_id = _field(request, self.field)
        if not experiment_id and self.empty_is_default:
            experiment_id = _DEFAULT_EXPERIMENT
        if experiment_id:
            await resources.require_experiment(principal, experiment_id)
            renamed = _field(request, self.new_name) if self.new_name else ""
            if renamed:
                principal.require_experiment(experiment_id, renamed)

    def describe(self) -> str:
        return f"experiment {self.field}" + (f" (and {self.new_name})" if self.new_name else "")


@dataclass(frozen=True)
class ExperimentIds:
    """Experiments by id, each checked; none listed means every experiment, which the
    service then narrows to the scope."""

    field: str

    async def check(self, request: Any, principal: Principal, resources: Resources) -> None:
        for experiment_id in _field(request, self.field):
            await resources.require_experiment(principal, experiment_id)

    def describe(self) -> str:
        return f"experiments {self.field} (none: filtered by the service)"


@dataclass(frozen=True)
class ExperimentName:
    """An experiment by name (which may not exist yet)."""

    field: str

    async def check(self, request: Any, principal: Principal, resources: Resources) -> None:
        principal.require_experiment_name(_field(request, self.field))

    def describe(self) -> str:
        return f"experiment named {self.field}"


@dataclass(frozen=True)
class ExperimentByIdOrName:
    """An experiment by id, else by name, else the default experiment (project runs)."""

    id_field: str
    name_field: str

    async def check(self, request: Any, principal: Principal, resources: Resources) -> None:
        experiment_id = _field(request, self.id_field)
        name = _field(request, self.name_field)
        if experiment_id or not name:
            await resources.require_experiment(principal, experiment_id or _DEFAULT_EXPERIMENT)
        else:
            principal.require_experiment_name(name)

    def describe(self) -> str:
        return f"experiment {self.id_field} or {self.name_field}"


@dataclass(frozen=True)
class Runs:
    """Runs by id: a field holding one id, or a repeated field of them."""

    field: str

    async def check(self, request: Any, principal: Principal, resources: Resources) -> None:
        value = _field(request, self.field)
        for run_id in _distinct([value] if isinstance(value, str) else value):
            if run_id:
                await resources.require_run(principal, run_id)

    def describe(self) -> str:
        return f"runs {self.field}"


@dataclass(frozen=True)
class Upload:
    """The run of an upload in progress, by upload id."""

    field: str

    async def check(self, request: Any, principal: Principal, resources: Resources) -> None:
        run_id = await resources.run_of_upload(_field(request, self.field))
        if run_id is not None:
            await resources.require_run(principal, run_id)

    def describe(self) -> str:
        return f"the run of upload {self.field}"


@dataclass(frozen=True)
class ProjectRun:
    """The experiment a project run was submitted to, by project run id."""

    field: str

    async def check(self, request: Any, principal: Principal, resources: Resources) -> None:
        found = await resources.experiment_of_project_run(_field(request, self.field))
        if found is None:
            return
        experiment_id, name = found
        if experiment_id or not name:
            await resources.require_experiment(principal, experiment_id or _DEFAULT_EXPERIMENT)
        else:
            principal.require_experiment_name(name)

    def describe(self) -> str:
        return f"the experiment of project run {self.field}"


@dataclass(frozen=True)
class Model:
    """A registered model by name; ``also`` names more fields holding model names (a
    rename's new name)."""

    field: str
    also: tuple[str, ...] = ()

    async def check(self, request: Any, principal: Principal, resources: Resources) -> None:
        for name in (self.field, *self.also):
            principal.require_model(_field(request, name))

    def describe(self) -> str:
        return f"model {' and '.join((self.field, *self.also))}"


def _distinct(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))
