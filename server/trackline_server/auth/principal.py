"""The principal of a call: the token it carried, its role and its scope.

A scope names experiments (by id, or by a name prefix written with a trailing ``*``) and
registered models (by name, or a name prefix); an empty scope is everything. A prefix scope
follows renames: an experiment renamed out of a token's prefix leaves its scope, which is why
a scoped token may rename only to a name it still reaches (checked by the services).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Integer, false, or_

from ..errors import PermissionDenied, shown
from .roles import Permission, Role


@dataclass(frozen=True)
class Scope:
    """What a token reaches of one kind of resource. ``ids`` and ``names`` are exact matches
    (experiment ids; model names), ``prefixes`` name prefixes; all empty: everything."""

    ids: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    @classmethod
    def of_experiments(cls, entries: Iterable[str]) -> Scope:
        """From a token's experiment entries: ids, and prefixes ending in ``*``."""
        entries = tuple(entries)
        return cls(
            ids=frozenset(e for e in entries if not e.endswith("*")),
            prefixes=tuple(e[:-1] for e in entries if e.endswith("*")),
        )

    @classmethod
    def of_models(cls, entries: Iterable[str]) -> Scope:
        """From a token's model entries: names, and prefixes ending in ``*``."""
        entries = tuple(entries)
        return cls(
            names=frozenset(e for e in entries if not e.endswith("*")),
            prefixes=tuple(e[:-1] for e in entries if e.endswith("*")),
        )

    @property
    def everything(self) -> bool:
        return not (self.ids or self.names or self.prefixes)

    def admits(self, name: str, resource_id: str | None = None) -> bool:
        """Whether the resource called ``name`` (with id ``resource_id``) is in scope."""
        if self.everything:
            return True
        if resource_id is not None and resource_id in self.ids:
            return True
        return name in self.names or any(name.startswith(p) for p in self.prefixes)

    def clause(
        self, name_column: ColumnElement[str], id_column: ColumnElement[object] | None = None
    ) -> ColumnElement[bool] | None:
        """A SQL condition true for the rows in scope; None for everything (no condition).
        Prefixes are compared with ``substr``, not LIKE, so '%' and '_' in them are literal."""
        if self.everything:
            return None
        terms: list[ColumnElement[bool]] = []
        if self.ids and id_column is not None:
            if isinstance(id_column.type, Integer):  # experiments.experiment_id
                numbers = sorted(int(i) for i in self.ids if i.isascii() and i.isdigit())
                terms.append(id_column.in_(numbers))
            else:  # a copy kept as text (project_runs.experiment_id)
                terms.append(id_column.in_(sorted(self.ids)))
        if self.names:
            terms.append(name_column.in_(sorted(self.names)))
        for prefix in self.prefixes:
            if prefix:
                terms.append(name_column.startswith(prefix, autoescape=True))
            else:  # '*' alone is refused when a token is made; match everything regardless
                return None
        return or_(*terms) if terms else false()

    def entries(self) -> list[str]:
        """The entries this scope was made of, as a token lists them."""
        return sorted(self.ids | self.names) + [f"{p}*" for p in self.prefixes]


EVERYTHING = Scope()


@dataclass(frozen=True)
class Principal:
    """Who makes a call. ``name`` is the token's name ("admin" for an ``--auth-token``
    bootstrap token; "" for the anonymous principal of a server without tokens), recorded as
    the author of what the call writes. ``key`` is the SHA-256 (hex) of the secret, which
    identifies the token itself (an ingest writer id belongs to it); None when anonymous."""

    name: str
    role: Role
    experiments: Scope = EVERYTHING
    models: Scope = EVERYTHING
    key: str | None = None
    expiration_time: int = 0
    authenticated: bool = True

    @property
    def scoped(self) -> bool:
        """Whether the token reaches only some experiments or models."""
        return not (self.experiments.everything and self.models.everything)

    @property
    def author(self) -> str:
        """What a write records as its author: the token's name ("" when anonymous)."""
        return self.name

    def may(self, permission: Permission) -> bool:
        return self.role.allows(permission)

    def require_experiment(self, experiment_id: str, name: str) -> None:
        """Raises PERMISSION_DENIED OUT_OF_SCOPE unless the experiment is in scope."""
        if not self.experiments.admits(name, experiment_id):
            raise PermissionDenied(
                "OUT_OF_SCOPE",
                f"the token {self.name!r} does not reach experiment {experiment_id}"
                f" ({shown(name)})",
            )

    def require_experiment_name(self, name: str) -> None:
        """For an experiment that does not exist yet (its id is unknown): by name only."""
        if not self.experiments.admits(name):
            raise PermissionDenied(
                "OUT_OF_SCOPE", f"the token {self.name!r} does not reach experiment {shown(name)}"
            )

    def require_model(self, name: str) -> None:
        """Raises PERMISSION_DENIED OUT_OF_SCOPE unless the registered model is in scope."""
        if not self.models.admits(name):
            raise PermissionDenied(
                "OUT_OF_SCOPE", f"the token {self.name!r} does not reach model {shown(name)}"
            )


# A server without tokens admits every call as this principal.
ANONYMOUS = Principal("", Role.ADMIN, authenticated=False)

# The principal of the call the current task serves: set by the authentication interceptor,
# which grpc.aio runs in the call's own task before its handler, and read by the edge into
# ``Call.principal``.
current: ContextVar[Principal] = ContextVar("trackline_principal", default=ANONYMOUS)
