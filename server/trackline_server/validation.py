"""Checks of what callers send, shared by every domain: keys, names, values, ids, times and
statuses, against the limits in limits.py. Each check raises the domain error the caller gets
(errors.py); none touches the database, so a value that passed can reach SQL on either
backend without failing the statement.

A request with several problems hears of all of them (``Problems``): each check still raises
its own InvalidArgument, and the code that checks a whole request gathers them into one
``ManyProblems``. Checks over many items (``check_tags``, ``check_params``) first run as
plain loops, and go back over the items to gather only once one of them failed, so a valid
request costs what it did.

PostgreSQL cannot store a NUL character in text, and a lookup that binds one fails the whole
statement there; so stored text refuses NUL (INVALID_ARGUMENT), and an id or name holding NUL
is simply not found (``findable``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import ParamSpec

from trackline.v1 import resources_pb2 as pb

from . import limits
from .errors import (
    MAX_FIELD_VIOLATIONS,
    InvalidArgument,
    ManyProblems,
    NotFound,
    TracklineError,
    shown,
)

_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f]")
_ASCII_DIGITS = re.compile("[0-9]+")
# experiments.experiment_id is an INTEGER column: 32 bits on PostgreSQL. No experiment can
# have a larger id, on either backend (ids come from the column's own sequence).
MAX_EXPERIMENT_ID = 2**31 - 1
_RUN_STATUSES = frozenset(pb.RunStatus.values())
_P = ParamSpec("_P")


class Problems:
    """The InvalidArgument problems of one request, gathered in the order its checks run and
    raised together by ``raise_if_any``: one problem as it is, several as ``ManyProblems``.
    The first MAX_FIELD_VIOLATIONS are kept; the rest are only counted."""

    __slots__ = ("count", "kept")

    def __init__(self) -> None:
        self.kept: list[InvalidArgument] = []
        self.count = 0

    @property
    def room(self) -> int:
        """How many more problems would be kept (beyond that, ``add`` only counts)."""
        return MAX_FIELD_VIOLATIONS - len(self.kept)

    def add(self, err: InvalidArgument) -> None:
        """Gathers ``err``; a ManyProblems is gathered as the problems it holds."""
        if isinstance(err, ManyProblems):
            for problem in err.problems:
                self.add(problem)
            self.count += err.count - len(err.problems)
            return
        self.count += 1
        if len(self.kept) < MAX_FIELD_VIOLATIONS:
            self.kept.append(err)

    def add_unlisted(self, count: int) -> None:
        """Counts ``count`` further problems found without building their errors (there is
        no room left to list them)."""
        self.count += count

    def check(self, check: Callable[_P, object], *args: _P.args, **kwargs: _P.kwargs) -> None:
        """Runs ``check``, gathering the InvalidArgument it raises. Any other refusal (such as
        NOT_FOUND for a run id no run can have) ends the checking: the problems gathered
        before it are raised instead, as the first failed check would have been alone."""
        try:
            check(*args, **kwargs)
        except InvalidArgument as err:
            self.add(err)
        except TracklineError:
            self.raise_if_any()
            raise

    def raise_if_any(self) -> None:
        if self.count == 1:
            raise self.kept[0]
        if self.count:
            raise ManyProblems(self.kept, self.count)


def findable(text: str) -> bool:
    """False when ``text`` could never have been stored (it holds NUL), so a lookup by it is
    NOT_FOUND without asking the database."""
    return "\x00" not in text


def check_key(key: str, field_name: str) -> None:
    """A param, tag or metric key: 1 to MAX_KEY_LENGTH characters, no control character."""
    if not key:
        raise InvalidArgument("INVALID_KEY", "key must not be empty", field_name)
    if len(key) > limits.MAX_KEY_LENGTH:
        raise InvalidArgument(
            "INVALID_KEY", f"key is longer than {limits.MAX_KEY_LENGTH} characters", field_name
        )
    if _CONTROL_CHARS.search(key):
        raise InvalidArgument("INVALID_KEY", "key contains a control character", field_name)


def check_run_id(run_id: str, field_name: str) -> None:
    """A run id a write names: NOT_FOUND RUN_NOT_FOUND when no run can have it (empty, longer
    than MAX_RUN_ID_LENGTH, or with a control character), before it reaches a statement it
    could fail (PostgreSQL cannot take NUL in text). Whether the run exists is the database's
    to say."""
    if not run_id:
        raise NotFound("RUN_NOT_FOUND", f"{field_name} is empty", field_name)
    if len(run_id) > limits.MAX_RUN_ID_LENGTH or _CONTROL_CHARS.search(run_id):
        raise NotFound(
            "RUN_NOT_FOUND",
            f"{field_name} {shown(run_id)} is no run id (run ids are at most"
            f" {limits.MAX_RUN_ID_LENGTH} characters, without control characters)",
            field_name,
        )


def check_value(value: str, field_name: str, limit: int, what: str = "value") -> None:
    """A param or tag value: at most ``limit`` characters (VALUE_TOO_LONG), no NUL."""
    if len(value) > limit:
        raise InvalidArgument(
            "VALUE_TOO_LONG", f"{what} longer than {limit} characters", field_name
        )
    if not findable(value):
        raise InvalidArgument(
            "INVALID_VALUE", f"{what} contains a NUL character, which cannot be stored", field_name
        )


def check_tags(
    pairs: Collection[tuple[str, str]], field_name: str = "tags", problems: Problems | None = None
) -> None:
    """Run or experiment tags, whatever call carries them; fields are ``tags[i].key``/``.value``
    in the order given. Every bad key and value is reported: into ``problems`` when given,
    else raised together."""
    _check_pairs(pairs, field_name, limits.MAX_TAG_VALUE_LENGTH, "tag value", problems)


def check_params(
    pairs: Collection[tuple[str, str]],
    field_name: str = "params",
    problems: Problems | None = None,
) -> None:
    """LogBatch's params, as ``check_tags`` checks tags."""
    _check_pairs(pairs, field_name, limits.MAX_PARAM_VALUE_LENGTH, "param value", problems)


def _check_pairs(
    pairs: Collection[tuple[str, str]],
    field_name: str,
    limit: int,
    what: str,
    problems: Problems | None,
) -> None:
    try:
        for i, (key, value) in enumerate(pairs):
            check_key(key, f"{field_name}[{i}].key")
            check_value(value, f"{field_name}[{i}].value", limit, what)
    except InvalidArgument:  # the error path: go over them all, gathering
        found = Problems() if problems is None else problems
        for i, (key, value) in enumerate(pairs):
            found.check(check_key, key, f"{field_name}[{i}].key")
            found.check(check_value, value, f"{field_name}[{i}].value", limit, what)
        if problems is None:
            found.raise_if_any()


def check_batch_points(total: int, field_name: str) -> None:
    if total > limits.MAX_BATCH_POINTS:
        raise InvalidArgument(
            "BATCH_TOO_LARGE",
            f"{total} points exceed the limit of {limits.MAX_BATCH_POINTS}",
            field_name,
        )


def check_experiment_name(name: str, field_name: str) -> None:
    if not name.strip():
        raise InvalidArgument("INVALID_NAME", "experiment name must not be empty", field_name)
    _check_name(name, field_name, "name")


def check_user_id(user_id: str, field_name: str = "user_id") -> None:
    """A run's user: at most limits.MAX_USER_ID_LENGTH characters, no control characters
    (it is shown in listings and matched by filters); empty means none was given."""
    if len(user_id) > limits.MAX_USER_ID_LENGTH:
        raise InvalidArgument(
            "INVALID_NAME",
            f"user_id is {len(user_id)} characters; at most {limits.MAX_USER_ID_LENGTH}",
            field_name,
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in user_id):
        raise InvalidArgument("INVALID_NAME", "user_id contains a control character", field_name)


def check_run_name(name: str, field_name: str = "run_name") -> None:
    """A run name; empty is allowed (CreateRun then makes one up)."""
    _check_name(name, field_name, "run name")


def _check_name(name: str, field_name: str, what: str) -> None:
    if len(name) > limits.MAX_NAME_LENGTH:
        raise InvalidArgument(
            "INVALID_NAME", f"{what} is longer than {limits.MAX_NAME_LENGTH} characters", field_name
        )
    if not findable(name):
        raise InvalidArgument("INVALID_NAME", f"{what} contains a NUL character", field_name)


def check_artifact_location(location: str, field_name: str = "artifact_location") -> None:
    if not findable(location):
        raise InvalidArgument(
            "INVALID_ARTIFACT_LOCATION", "artifact_location contains a NUL character", field_name
        )


def check_time(ms: int, field_name: str) -> None:
    """A run's start or end time in milliseconds since the epoch: from 0 to the last
    millisecond of year 9999 (INVALID_TIME), so every client can render it as a date."""
    if not 0 <= ms <= limits.MAX_TIME_MS:
        raise InvalidArgument(
            "INVALID_TIME",
            f"{field_name} {ms} is not a time in milliseconds between 1970 and 9999",
            field_name,
        )


def check_run_status(status: int, field_name: str = "status") -> None:
    """A RunStatus value the proto defines (INVALID_STATUS otherwise: proto3 enums carry any
    int32)."""
    if status not in _RUN_STATUSES:
        raise InvalidArgument(
            "INVALID_STATUS",
            f"status {status} is not a RunStatus ({', '.join(pb.RunStatus.keys())})",
            field_name,
        )


def check_request_id(request_id: str, field_name: str = "request_id") -> None:
    if len(request_id) > limits.MAX_REQUEST_ID_LENGTH or not findable(request_id):
        raise InvalidArgument(
            "INVALID_REQUEST_ID",
            f"request_id must be at most {limits.MAX_REQUEST_ID_LENGTH} characters without NUL",
            field_name,
        )


def experiment_id_number(raw: str) -> int | None:
    """The id as a number, or None when it cannot be an experiment's id: not ASCII digits
    (such as '-1', ' 1', '²' or '٣', which ``int`` or ``str.isdigit`` accept) or beyond the
    column's range."""
    if _ASCII_DIGITS.fullmatch(raw) and len(raw) <= 10 and int(raw) <= MAX_EXPERIMENT_ID:
        return int(raw)
    return None


def parse_experiment_id(raw: str, field_name: str = "experiment_id") -> int:
    """The id of an experiment to look up: NOT_FOUND when it cannot be one."""
    number = experiment_id_number(raw)
    if number is None:
        raise NotFound("EXPERIMENT_NOT_FOUND", f"no experiment with id {shown(raw)}", field_name)
    return number
