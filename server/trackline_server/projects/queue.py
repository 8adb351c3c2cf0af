"""The durable queue: submissions (``check_submission``, ``submit``) and leases of the oldest
queued run a worker's labels allow (``check_lease_request``, ``lease``; ``leasable`` looks
without writing).

A run is leasable by a worker that holds every label the run requires. On PostgreSQL the run
is picked with ``FOR UPDATE SKIP LOCKED``: concurrent leases, from any number of replicas,
each take a different run without waiting for one another; the state is checked again on the
locked row, so a run is never leased twice. On SQLite the write lock serialises leases.

``Doorbell`` wakes the leases waiting in this process when a run is queued through it; those
waiting on other replicas look again every PROJECT_QUEUE_POLL_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import uuid

from sqlalchemy import ColumnElement, Executable, bindparam, exists, insert, not_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline.v1 import projects_pb2 as ppb

from .. import limits
from ..auth.principal import EVERYTHING, Scope
from ..clock import now_ms
from ..errors import InvalidArgument, shown
from ..models import project_run_labels, project_runs
from ..sql import Query, Reader, among, execute_many, first
from ..tracking import experiments
from ..validation import Problems, check_key, experiment_id_number, findable
from . import runs
from .runs import RunRow
from .search import scope_clause

ENV_MANAGERS = ("local", "uv", "virtualenv", "conda")
_R = project_runs.c
_L = project_run_labels.c
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_LABEL = re.compile(r"[A-Za-z0-9_.:=-]+")
_MAX_TEXT = 500  # version, entry point, names: the columns' width
_INSERT_LABELS = Query(lambda _: insert(project_run_labels))


def _next_leasable(
    dialect_name: str, lock: bool, in_scope: ColumnElement[bool] | None = None
) -> Executable:
    """The seq of the oldest queued run none of whose labels is outside ``:labels`` (and,
    for a scoped worker, ``in_scope``); ``lock``: locked, skipping runs other transactions
    hold locked (PostgreSQL)."""
    missing = (
        select(_L.run_seq)
        .where(_L.run_seq == _R.seq)
        .where(not_(among(_L.label, "labels", dialect_name)))
    )
    stmt = (
        select(_R.seq)
        .where(_R.state == runs.QUEUED)
        .where(~exists(missing))
        .order_by(_R.seq)
        .limit(1)
    )
    if in_scope is not None:
        stmt = stmt.where(in_scope)
    locked = lock and dialect_name == "postgresql"
    return stmt.with_for_update(skip_locked=True) if locked else stmt


_NEXT_LEASABLE = Query(lambda d: _next_leasable(d, lock=True))
_ANY_LEASABLE = Query(lambda d: _next_leasable(d, lock=False))
_BY_SEQ = Query(lambda _: select(*runs.COLUMNS).where(_R.seq == bindparam("seq")))


class Doorbell:
    """Wakes every ``wait`` under way when ``ring`` is called (a run was queued)."""

    def __init__(self) -> None:
        self._rung = asyncio.Event()

    def ring(self) -> None:
        self._rung.set()
        self._rung = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        """Returns when rung, or after ``timeout`` seconds."""
        rung = self._rung
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(rung.wait(), timeout)


def check_labels(labels: list[str], field_name: str, problems: Problems) -> None:
    """At most MAX_PROJECT_LABELS labels, each 1 to MAX_LABEL_LENGTH of ``_LABEL``."""
    if len(labels) > limits.MAX_PROJECT_LABELS:
        problems.add(
            InvalidArgument(
                "INVALID_LABEL",
                f"{len(labels)} labels; at most {limits.MAX_PROJECT_LABELS}",
                field_name,
            )
        )
        return
    for i, label in enumerate(labels):
        if len(label) > limits.MAX_LABEL_LENGTH or not _LABEL.fullmatch(label):
            problems.add(
                InvalidArgument(
                    "INVALID_LABEL",
                    f"label {shown(label)} is not 1 to {limits.MAX_LABEL_LENGTH} letters, digits"
                    " or '_', '-', '.', ':', '='",
                    f"{field_name}[{i}]",
                )
            )


def _text_problem(value: str, field_name: str, limit: int, control: bool) -> str | None:
    """What is wrong with ``value``, a text field of at most ``limit`` characters without NUL
    (``control``: without any control character); None when nothing is."""
    if len(value) > limit:
        return f"{field_name} is longer than {limit} characters"
    if (control and _CONTROL.search(value)) or not findable(value):
        return f"{field_name} holds {'a control' if control else 'a NUL'} character"
    return None


def _check_texts(request: ppb.SubmitProjectRunRequest, problems: Problems) -> None:
    """The submission's text fields: where the project is, its entry point, the names."""
    where = [
        ("uri", request.uri, limits.MAX_PROJECT_URI_LENGTH),
        ("version", request.version, _MAX_TEXT),
    ]
    for field_name, value, limit in where:
        if (why := _text_problem(value, field_name, limit, control=True)) is not None:
            problems.add(InvalidArgument("INVALID_PROJECT_URI", why, field_name))
    why = _text_problem(request.entry_point, "entry_point", _MAX_TEXT, control=True)
    if why is not None:
        problems.add(InvalidArgument("INVALID_ENTRY_POINT", why, "entry_point"))
    for field_name, value in (
        ("experiment_name", request.experiment_name),
        ("run_name", request.run_name),
    ):
        if (why := _text_problem(value, field_name, _MAX_TEXT, control=False)) is not None:
            problems.add(InvalidArgument("INVALID_NAME", why, field_name))


def check_submission(request: ppb.SubmitProjectRunRequest) -> None:
    """Every problem of the submission's fields, raised together (INVALID_ARGUMENT)."""
    problems = Problems()
    if not request.uri.strip():
        problems.add(InvalidArgument("INVALID_PROJECT_URI", "uri must not be empty", "uri"))
    _check_texts(request, problems)
    _check_params(request, problems)
    if request.experiment_id and request.experiment_name:
        problems.add(
            InvalidArgument(
                "INVALID_NAME",
                "give experiment_id or experiment_name, not both",
                "experiment_name",
            )
        )
    if request.env_manager and request.env_manager not in ENV_MANAGERS:
        problems.add(
            InvalidArgument(
                "INVALID_ENV_MANAGER",
                f"env_manager {shown(request.env_manager)} is not one of {', '.join(ENV_MANAGERS)}",
                "env_manager",
            )
        )
    check_labels(list(request.required_labels), "required_labels", problems)
    if not 0 <= request.max_retries <= limits.MAX_PROJECT_RETRIES:
        problems.add(
            InvalidArgument(
                "INVALID_MAX_RETRIES",
                f"max_retries must be 0 to {limits.MAX_PROJECT_RETRIES}, not {request.max_retries}",
                "max_retries",
            )
        )
    problems.raise_if_any()


def _check_params(request: ppb.SubmitProjectRunRequest, problems: Problems) -> None:
    if len(request.params) > limits.MAX_PROJECT_PARAMS:
        problems.add(
            InvalidArgument(
                "INVALID_PROJECT_PARAM",
                f"{len(request.params)} params; at most {limits.MAX_PROJECT_PARAMS}",
                "params",
            )
        )
        return
    seen: set[str] = set()
    for i, param in enumerate(request.params):
        where = f"params[{i}]"
        try:
            check_key(param.key, f"{where}.key")
        except InvalidArgument as err:
            problems.add(InvalidArgument("INVALID_PROJECT_PARAM", err.message, err.field))
        if param.key in seen:
            problems.add(
                InvalidArgument(
                    "INVALID_PROJECT_PARAM", f"param {shown(param.key)} is given twice", where
                )
            )
        seen.add(param.key)
        if len(param.value) > limits.MAX_PARAM_VALUE_LENGTH or not findable(param.value):
            problems.add(
                InvalidArgument(
                    "INVALID_PROJECT_PARAM",
                    f"the value of param {shown(param.key)} is longer than"
                    f" {limits.MAX_PARAM_VALUE_LENGTH} characters or holds NUL",
                    f"{where}.value",
                )
            )


def check_lease_request(request: ppb.LeaseProjectRunRequest, lease_s: int) -> None:
    """A lease's worker id, labels, duration (``lease_s``, the default applied) and wait."""
    problems = Problems()
    worker_id = request.worker_id
    if not worker_id or len(worker_id) > limits.MAX_WORKER_ID_LENGTH or _CONTROL.search(worker_id):
        problems.add(
            InvalidArgument(
                "INVALID_WORKER_ID",
                f"worker_id {shown(worker_id)} is not 1 to {limits.MAX_WORKER_ID_LENGTH}"
                " characters without control characters",
                "worker_id",
            )
        )
    check_labels(list(request.labels), "labels", problems)
    if not 1 <= lease_s <= limits.MAX_LEASE_S:
        problems.add(
            InvalidArgument(
                "INVALID_LEASE_DURATION",
                f"lease_seconds must be 1 to {limits.MAX_LEASE_S}, not {lease_s}",
                "lease_seconds",
            )
        )
    wait = request.wait_seconds
    if not (math.isfinite(wait) and 0 <= wait <= limits.MAX_LEASE_WAIT_S):
        problems.add(
            InvalidArgument(
                "INVALID_LEASE_DURATION",
                f"wait_seconds must be 0 to {limits.MAX_LEASE_WAIT_S:g}, not {wait!r}",
                "wait_seconds",
            )
        )
    problems.raise_if_any()


async def submit(conn: AsyncConnection, request: ppb.SubmitProjectRunRequest) -> str:
    """Queues the run (its fields checked first) and returns its id. An experiment_id that no
    experiment has is NOT_FOUND EXPERIMENT_NOT_FOUND."""
    check_submission(request)
    if request.experiment_id:
        number = experiment_id_number(request.experiment_id)
        if number is None:
            raise InvalidArgument(
                "INVALID_EXPERIMENT_ID",
                f"experiment_id {shown(request.experiment_id)} is not a number",
                "experiment_id",
            )
        await experiments.get(conn, number)
    project_run_id = uuid.uuid4().hex
    result = await conn.execute(
        insert(project_runs).values(
            project_run_id=project_run_id,
            uri=request.uri,
            version=request.version,
            entry_point=request.entry_point or "main",
            params=json.dumps([[p.key, p.value] for p in request.params]),
            experiment_id=request.experiment_id,
            experiment_name=request.experiment_name,
            run_name=request.run_name,
            env_manager=request.env_manager,
            max_retries=request.max_retries,
            state=runs.QUEUED,
            creation_time=now_ms(),
        )
    )
    assert result.inserted_primary_key is not None
    seq = int(result.inserted_primary_key[0])
    labels = sorted(set(request.required_labels))
    await execute_many(conn, _INSERT_LABELS, [{"run_seq": seq, "label": x} for x in labels])
    return project_run_id


def _leasable_query(reader: Reader, lock: bool, scope: Scope) -> Query | Executable:
    """The compiled query for an unscoped worker; one built for this call otherwise."""
    in_scope = scope_clause(scope)
    if in_scope is None:
        return _NEXT_LEASABLE if lock else _ANY_LEASABLE
    return _next_leasable(reader.dialect.name, lock, in_scope)


async def leasable(reader: Reader, labels: list[str], scope: Scope = EVERYTHING) -> bool:
    """Whether a queued run (of an experiment in ``scope``) is there for a worker with
    ``labels`` (without locking it)."""
    query = _leasable_query(reader, False, scope)
    return await first(reader, query, {"labels": labels}) is not None


async def lease(
    conn: AsyncConnection,
    worker_id: str,
    labels: list[str],
    lease_ms: int,
    scope: Scope = EVERYTHING,
) -> RunRow | None:
    """Leases the oldest queued run (of an experiment in ``scope``) a worker with ``labels``
    may take (LEASED, its attempt counted, a new lease id) and returns it; None when there is
    none."""
    found = await first(conn, _leasable_query(conn, True, scope), {"labels": labels})
    if found is None:
        return None
    seq = int(found[0])
    now = now_ms()
    await runs.update(
        conn,
        seq,
        state=runs.LEASED,
        attempt=_R.attempt + 1,
        worker_id=worker_id,
        lease_id=uuid.uuid4().hex,
        lease_ms=lease_ms,
        lease_expiry_time=now + lease_ms,
        start_time=now,
        status_message="",
    )
    return RunRow.of(await first(conn, _BY_SEQ, {"seq": seq}))
