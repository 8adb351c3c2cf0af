"""The checks the sender makes before it batches points: what the server would refuse (a bad
run id, key, rank, step or timestamp) is reported as a ``BatchRejected`` of its own instead of
spoiling the batch it would have travelled in. The limits are the server's (limits.py)."""

from __future__ import annotations

import operator
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from ._exceptions import BatchRejected

MAX_KEY_LENGTH = 500  # as the server's limits.MAX_KEY_LENGTH
INT64 = (-(2**63), 2**63)
INT32 = (-(2**31), 2**31)
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f]")  # as the server's store._CONTROL_CHARS
# Keys found valid: most drains repeat the same keys, which are then not checked again.
KNOWN_KEYS: set[str] = set()
_MAX_KNOWN_KEYS = 100_000

Problem = tuple[str, str]  # (reason, message) of a point the server would refuse


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def run_problem(run_id: Any) -> Problem | None:
    if not isinstance(run_id, str) or not run_id:
        return "RUN_NOT_FOUND", f"run id must be a non-empty string, not {run_id!r}"
    if not _utf8(run_id):
        return "RUN_NOT_FOUND", f"run id {run_id!r} is not valid Unicode"
    return None


def key_problem(key: Any) -> Problem | None:
    """Why the server would refuse ``key``, or None (and the key is remembered as valid)."""
    if not isinstance(key, str) or not key:
        return "INVALID_KEY", f"key must be a non-empty string, not {key!r}"
    if len(key) > MAX_KEY_LENGTH:
        return "INVALID_KEY", f"key is longer than {MAX_KEY_LENGTH} characters"
    if _CONTROL_CHARS.search(key):
        return "INVALID_KEY", f"key {key!r} contains a control character"
    if not _utf8(key):
        return "INVALID_KEY", f"key {key!r} is not valid Unicode"
    if type(key) is str:
        if len(KNOWN_KEYS) >= _MAX_KNOWN_KEYS:
            KNOWN_KEYS.clear()
        KNOWN_KEYS.add(key)
    return None


def rank_problem(rank: Any) -> Problem | None:
    try:
        if INT32[0] <= operator.index(rank) < INT32[1]:
            return None
    except TypeError:
        pass
    return "INVALID_RANK", f"rank must be an int32, not {rank!r}"


def valid_points(
    items: Iterable[tuple[Any, ...]], errors: list[BatchRejected]
) -> list[tuple[Any, ...]]:
    """The points whose names can be hashed and whose step and timestamp are int64s; the
    others are reported in ``errors``, one error per run and problem."""
    good = []
    bad_names: Counter[tuple[str, str, str]] = Counter()
    bad_points: Counter[tuple[str, str]] = Counter()
    for run_id, key, rank, step, stamp, value in items:
        try:
            hash((run_id, key, rank))
        except TypeError:
            problem = run_problem(run_id) or key_problem(key) or rank_problem(rank)
            reason, message = problem or ("INVALID_KEY", f"key {key!r} cannot be hashed")
            bad_names[str(run_id), reason, message] += 1
            continue
        try:
            step, stamp = operator.index(step), operator.index(stamp)
            ok = INT64[0] <= step < INT64[1] and INT64[0] <= stamp < INT64[1]
        except TypeError:
            ok = False
        if ok:
            good.append((run_id, key, rank, step, stamp, value))
        else:
            bad_points[str(run_id), repr(key)] += 1
    for (run_id, reason, message), count in bad_names.items():
        errors.append(BatchRejected(0, reason, message, run_id=run_id, points=count))
    for (run_id, key), count in bad_points.items():
        message = f"{count} points of {key} have a step or timestamp that is not an int64"
        errors.append(BatchRejected(0, "INVALID_POINT", message, run_id=run_id, points=count))
    return good
