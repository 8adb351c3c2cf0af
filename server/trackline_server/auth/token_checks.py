"""Checks of what CreateToken is given: the name, the role, the scope and the expiry, each
refused as INVALID_ARGUMENT with the reason auth.proto names and the request's field.

A scope entry is either exact (an experiment id, a registered model's name) or a name prefix
written with a trailing ``*`` ("team-a/*"). Experiment ids are kept as the store spells them
("007" becomes "7"), since a scope compares ids as text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import InvalidArgument, shown
from ..validation import Problems, experiment_id_number
from .roles import Role

MAX_NAME_LENGTH = 64
# Reserved for the --auth-token bootstrap tokens, which calls record as "admin".
RESERVED_NAME = "admin"
MAX_SCOPE_ENTRIES = 100
MAX_SCOPE_ENTRY_LENGTH = 500
# Ten years of 365.25 days: long enough for a service account, short enough that a token
# forgotten in a script stops working some day.
MAX_LIFETIME_S = 3653 * 24 * 3600
_NAME = re.compile(r"[A-Za-z0-9._@-]+")
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class TokenRequest:
    """A CreateToken request as checked: the role, and the scope as it is stored (each list
    without repeats, in the order given; experiment ids spelled as the store spells them)."""

    name: str
    role: Role
    experiments: tuple[str, ...]
    models: tuple[str, ...]
    expires_in_s: int


def check_request(
    name: str, role: int, experiments: Sequence[str], models: Sequence[str], expires_in_s: int
) -> TokenRequest:
    """The checked request; every problem found at once (``validation.Problems``)."""
    problems = Problems()

    def gathered(
        check: Callable[[Sequence[str]], tuple[str, ...]], entries: Sequence[str]
    ) -> tuple[str, ...]:
        """The entries ``check`` keeps; none when it refused them (a problem gathered)."""
        try:
            return check(entries)
        except InvalidArgument as err:
            problems.add(err)
            return ()

    problems.check(check_name, name)
    checked_role = None
    try:
        checked_role = check_role(role)
    except InvalidArgument as err:
        problems.add(err)
    kept_experiments = gathered(experiment_scope, experiments)
    kept_models = gathered(model_scope, models)
    if checked_role is Role.ADMIN and (experiments or models):
        problems.add(
            InvalidArgument(
                "INVALID_SCOPE",
                "an admin token reaches everything: it cannot be scoped (make a writer or"
                " reader token for some experiments or models)",
                "experiments" if experiments else "models",
            )
        )
    problems.check(check_expiry, expires_in_s)
    problems.raise_if_any()
    assert checked_role is not None  # a bad role was a problem raised above
    return TokenRequest(name, checked_role, kept_experiments, kept_models, expires_in_s)


def check_name(name: str, field_name: str = "name") -> None:
    """1 to MAX_NAME_LENGTH letters, digits, '-', '_', '.' and '@'; not the reserved "admin"."""
    if not name:
        raise InvalidArgument("INVALID_TOKEN_NAME", "a token needs a name", field_name)
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(
            "INVALID_TOKEN_NAME",
            f"token name is {len(name)} characters; at most {MAX_NAME_LENGTH}",
            field_name,
        )
    if not _NAME.fullmatch(name):
        raise InvalidArgument(
            "INVALID_TOKEN_NAME",
            f"token name {shown(name)} may hold only letters, digits, '-', '_', '.' and '@'",
            field_name,
        )
    if name == RESERVED_NAME:
        raise InvalidArgument(
            "INVALID_TOKEN_NAME",
            f"{RESERVED_NAME!r} is reserved for the server's --auth-token tokens",
            field_name,
        )


def check_role(role: int, field_name: str = "role") -> Role:
    """The Role of a request's value; INVALID_ROLE for ROLE_UNSPECIFIED or an unknown value."""
    try:
        return Role(role)
    except ValueError:
        raise InvalidArgument(
            "INVALID_ROLE",
            f"role must be ROLE_READER, ROLE_WRITER or ROLE_ADMIN, not {role}",
            field_name,
        ) from None


def experiment_scope(entries: Sequence[str], field_name: str = "experiments") -> tuple[str, ...]:
    """The experiment entries as stored: ids (digits) and name prefixes ending in ``*``."""
    kept: list[str] = []
    for entry in _checked_entries(entries, field_name, "experiment"):
        if not entry.endswith("*"):
            number = experiment_id_number(entry)
            if number is None:
                raise InvalidArgument(
                    "INVALID_SCOPE",
                    f"experiment scope entry {shown(entry)} is no experiment id: give an id"
                    " (digits), or a name prefix ending in '*'",
                    field_name,
                )
            entry = str(number)
        if entry not in kept:
            kept.append(entry)
    return tuple(kept)


def model_scope(entries: Sequence[str], field_name: str = "models") -> tuple[str, ...]:
    """The registered model entries as stored: names and name prefixes ending in ``*``."""
    kept: list[str] = []
    for entry in _checked_entries(entries, field_name, "model"):
        if entry not in kept:
            kept.append(entry)
    return tuple(kept)


def _checked_entries(entries: Sequence[str], field_name: str, what: str) -> Sequence[str]:
    """``entries``, refused as INVALID_SCOPE when there are too many, or one is empty, too
    long, holds a control character (no name holds one), is '*' alone (write no scope to
    reach everything) or has a '*' anywhere but at its end."""
    if len(entries) > MAX_SCOPE_ENTRIES:
        raise InvalidArgument(
            "INVALID_SCOPE",
            f"{len(entries)} {what} scope entries; at most {MAX_SCOPE_ENTRIES}",
            field_name,
        )
    for entry in entries:
        problem = _entry_problem(entry)
        if problem:
            raise InvalidArgument(
                "INVALID_SCOPE", f"{what} scope entry {shown(entry)} {problem}", field_name
            )
    return entries


def _entry_problem(entry: str) -> str:
    if not entry:
        return "is empty"
    if len(entry) > MAX_SCOPE_ENTRY_LENGTH:
        return f"is {len(entry)} characters; at most {MAX_SCOPE_ENTRY_LENGTH}"
    if _CONTROL_CHARS.search(entry):
        return "holds a control character"
    if entry == "*":
        return "would reach everything: leave the scope empty for that"
    if "*" in entry[:-1]:
        return "has a '*' before its end (only a trailing '*', for a name prefix)"
    return ""


def check_expiry(expires_in_s: int, field_name: str = "expires_in_seconds") -> None:
    """0 (never) or a positive number of seconds up to MAX_LIFETIME_S; INVALID_EXPIRATION."""
    if expires_in_s < 0:
        raise InvalidArgument(
            "INVALID_EXPIRATION",
            f"expires_in_seconds is {expires_in_s}: a token cannot expire in the past"
            " (0 for one that never expires)",
            field_name,
        )
    if expires_in_s > MAX_LIFETIME_S:
        raise InvalidArgument(
            "INVALID_EXPIRATION",
            f"expires_in_seconds is {expires_in_s}; at most {MAX_LIFETIME_S} (ten years)",
            field_name,
        )
