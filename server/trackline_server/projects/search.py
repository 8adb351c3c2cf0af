"""SearchProjectRuns: project runs newest first, optionally only some states or one experiment,
paged by ``seq`` (the token holds the last one sent, and a fingerprint of the filter)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, String, and_, case, cast, or_, select, true
from trackline.v1 import projects_pb2 as ppb

from .. import limits, page_tokens
from ..auth.principal import EVERYTHING, Scope
from ..errors import InvalidArgument
from ..models import experiments, project_runs
from ..sql import Reader, rows
from ..validation import findable
from . import runs
from .runs import RunRow

_R = project_runs.c
_STATES = frozenset(int(v) for v in ppb.ProjectRunState.values()) - {0}


def scope_clause(scope: Scope) -> ColumnElement[bool] | None:
    """The project runs of experiments in ``scope``; None for every run. A run submitted by
    experiment id (or to the default experiment, "0") is in scope when that experiment is; one
    submitted by name, when the name is (the experiment may not exist yet)."""
    experiments_in_scope = scope.clause(experiments.c.name, experiments.c.experiment_id)
    if experiments_in_scope is None:
        return None
    ids = select(cast(experiments.c.experiment_id, String)).where(experiments_in_scope)
    by_name = and_(_R.experiment_id == "", _R.experiment_name != "")
    effective_id = case(
        (and_(_R.experiment_id == "", _R.experiment_name == ""), "0"), else_=_R.experiment_id
    )
    named = scope.clause(_R.experiment_name)
    return or_(
        and_(~by_name, effective_id.in_(ids)), and_(by_name, named if named is not None else true())
    )


async def search(
    reader: Reader,
    states: list[int],
    experiment_id: str,
    page_size: int,
    page_token: str,
    scope: Scope = EVERYTHING,
) -> tuple[list[ppb.ProjectRun], str]:
    """A page of runs (of experiments in ``scope``) and the next page's token ("" after the
    last)."""
    bad = [s for s in states if s not in _STATES]
    if bad:
        raise InvalidArgument(
            "INVALID_PROJECT_RUN_STATE",
            f"state {bad[0]} is not one of ProjectRunState (UNSPECIFIED is not a state)",
            "states",
        )
    if page_size < 0:
        raise InvalidArgument(
            "INVALID_PAGE_SIZE", f"page_size must be 0 or more, not {page_size}", "page_size"
        )
    if not findable(experiment_id):  # no run was submitted with it (nor could be stored)
        return [], ""
    size = min(page_size or limits.DEFAULT_PROJECT_RUN_PAGE, limits.MAX_PROJECT_RUN_PAGE)
    wanted = sorted(set(states))
    made_for = page_tokens.fingerprint("SearchProjectRuns", wanted, experiment_id)
    stmt = select(*runs.COLUMNS).order_by(_R.seq.desc()).limit(size + 1)
    if page_token:
        (before,) = page_tokens.decode(
            page_token, made_for, ("s",), "SearchProjectRuns", "states and experiment_id"
        )
        stmt = stmt.where(_R.seq < before)
    if wanted:
        stmt = stmt.where(_R.state.in_(wanted))
    if experiment_id:
        stmt = stmt.where(_R.experiment_id == experiment_id)
    in_scope = scope_clause(scope)
    if in_scope is not None:
        stmt = stmt.where(in_scope)
    found = [RunRow.of(r) for r in await rows(reader, stmt)]
    token = page_tokens.encode({"s": found[size - 1].seq}, made_for) if len(found) > size else ""
    return await runs.load(reader, found[:size]), token
