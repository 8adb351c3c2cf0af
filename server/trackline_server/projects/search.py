"""SearchProjectRuns: project runs newest first, optionally only some states or one experiment,
paged by ``seq`` (the token holds the last one sent, and a fingerprint of the filter)."""

from __future__ import annotations

from sqlalchemy import select
from trackline.v1 import projects_pb2 as ppb

from .. import limits, page_tokens
from ..errors import InvalidArgument
from ..models import project_runs
from ..sql import Reader, rows
from ..validation import findable
from . import runs
from .runs import RunRow

_R = project_runs.c
_STATES = frozenset(int(v) for v in ppb.ProjectRunState.values()) - {0}


async def search(
    reader: Reader, states: list[int], experiment_id: str, page_size: int, page_token: str
) -> tuple[list[ppb.ProjectRun], str]:
    """A page of runs and the next page's token ("" after the last)."""
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
    found = [RunRow.of(r) for r in await rows(reader, stmt)]
    token = page_tokens.encode({"s": found[size - 1].seq}, made_for) if len(found) > size else ""
    return await runs.load(reader, found[:size]), token
