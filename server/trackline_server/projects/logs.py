"""A project run's log lines: numbered from 0 per run, appended by its worker at their offsets
(``append``, idempotent: a retried batch stores nothing twice), noted by the server itself
(``note``: a lost lease, a cancel), and read from an offset (``read``), which a followed
stream repeats every PROJECT_LOG_POLL_S, on any replica, until the run has ended.

The run's ``log_line_count`` is the number of lines stored, kept in the same transaction as
the lines, under the run's lock: the offset of the next line."""

from __future__ import annotations

from sqlalchemy import bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import limits
from ..errors import InvalidArgument
from ..models import project_run_logs
from ..sql import Query, Reader, execute_many, rows
from ..validation import Problems, findable
from . import runs
from .runs import RunRow

_G = project_run_logs.c
_INSERT = Query(lambda _: insert(project_run_logs))
_FROM = Query(
    lambda _: (
        select(_G.text)
        .where(_G.run_seq == bindparam("seq"), _G.line >= bindparam("offset"))
        .order_by(_G.line)
        .limit(bindparam("limit"))
    )
)


def check_offset(offset: int, field_name: str) -> None:
    if offset < 0:
        raise InvalidArgument(
            "INVALID_LOG_OFFSET", f"{field_name} must be 0 or more, not {offset}", field_name
        )


def check_lines(lines: list[str]) -> None:
    """At most MAX_LOG_LINES_PER_APPEND lines, each at most MAX_LOG_LINE_LENGTH without NUL."""
    if len(lines) > limits.MAX_LOG_LINES_PER_APPEND:
        raise InvalidArgument(
            "INVALID_LOG_LINE",
            f"{len(lines)} lines; at most {limits.MAX_LOG_LINES_PER_APPEND} per append",
            "lines",
        )
    problems = Problems()
    for i, line in enumerate(lines):
        if len(line) > limits.MAX_LOG_LINE_LENGTH or not findable(line):
            problems.add(
                InvalidArgument(
                    "INVALID_LOG_LINE",
                    f"line {i} is longer than {limits.MAX_LOG_LINE_LENGTH} characters or holds NUL",
                    f"lines[{i}]",
                )
            )
        if problems.room == 0:
            break
    problems.raise_if_any()


async def append(conn: AsyncConnection, run: RunRow, first_offset: int, lines: list[str]) -> int:
    """Stores the lines of ``lines`` that are not stored yet (those at ``first_offset`` and
    after the run's count) and returns the new count. ``run`` is locked by the caller. A
    ``first_offset`` past the count would leave a gap: INVALID_LOG_OFFSET."""
    check_offset(first_offset, "first_offset")
    stored = run.log_line_count
    if first_offset > stored:
        raise InvalidArgument(
            "INVALID_LOG_OFFSET",
            f"first_offset {first_offset} is past the {stored} lines stored; append from {stored}",
            "first_offset",
        )
    new = lines[stored - first_offset :]
    if not new:
        return stored
    await execute_many(
        conn,
        _INSERT,
        [{"run_seq": run.seq, "line": stored + i, "text": t} for i, t in enumerate(new)],
    )
    count = stored + len(new)
    await runs.update(conn, run.seq, log_line_count=count)
    return count


async def note(conn: AsyncConnection, run: RunRow, text: str) -> None:
    """Appends the server's own line ``text`` (marked ``[trackline]``) after the run's lines;
    ``run`` is locked by the caller and its count is what the row holds."""
    await append(conn, run, run.log_line_count, [f"[trackline] {text}"])


async def read(reader: Reader, seq: int, offset: int, limit: int) -> list[str]:
    """Up to ``limit`` lines of the run ``seq`` from ``offset``, in order."""
    found = await rows(reader, _FROM, {"seq": seq, "offset": offset, "limit": limit})
    return [row[0] for row in found]
