"""What the filter language knows about one searchable entity: an ``EntitySchema``.

A filter names three sorts of things, all described here and nowhere else:

- attributes, columns of the entity's own table, as a bare word (``start_time``) or behind an
  attribute prefix (``attributes.start_time``), by canonical name or alias, in any case;
- keyed values (``KeyKind``: metrics, params, tags), rows of (owner id, key, value) in a table
  of their own, as ``<kind>s.<key>`` (``metrics.loss``) or behind one of the kind's aliases;
- kinds that other entities have (``other_kinds``), only so that naming one explains itself
  ("metrics are not available when searching experiments") instead of being an unknown prefix.

The parser checks every comparison against the attribute or kind it names (operator, value
type); the compiler turns it into SQL over the columns and tables given here. A schema that
contradicts itself (an alias naming two things, a sort key that is no attribute) raises
ValueError when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Table

from .ast import Op
from .values import NULL_OPS, ValueType

ATTRIBUTE = "attribute"


@dataclass(frozen=True, eq=False)
class Attribute:
    """A column of the entity's table. ``name`` is the canonical (lower-case) name the tree
    holds, ``aliases`` further lower-case names for it. Only ``nullable`` attributes take
    IS NULL and IS NOT NULL."""

    name: str
    value_type: ValueType
    column: Column[Any]
    nullable: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def ops(self) -> tuple[Op, ...]:
        """The operators a filter may compare it with, in the order messages list them."""
        return self.value_type.ops + (NULL_OPS if self.nullable else ())

    @property
    def noun(self) -> str:
        """Names it in messages: 'start_time values are integers'."""
        return self.name

    @property
    def plural(self) -> str:
        """Names it in messages about all its values: 'LIKE is not supported for start_time'."""
        return self.name


@dataclass(frozen=True, eq=False)
class KeyKind:
    """Values held under free-form keys: ``table`` has one row per (entity, key), with the
    entity's id in column ``owner`` and columns ``key`` and ``value``.

    ``name`` is the singular the tree holds as the identifier's kind (``metric``); a filter
    writes ``<name>s.<key>`` or uses one of the lower-case ``aliases`` as the prefix. IS NULL
    holds for an entity without the key; every other comparison needs the key present.
    """

    name: str
    value_type: ValueType
    table: Table
    owner: str
    aliases: tuple[str, ...] = ()

    @property
    def plural(self) -> str:
        """The canonical prefix, also naming the kind in messages: 'metrics'."""
        return self.name + "s"

    @property
    def prefixes(self) -> tuple[str, ...]:
        return (self.plural, *self.aliases)

    @property
    def ops(self) -> tuple[Op, ...]:
        return self.value_type.ops + NULL_OPS

    @property
    def noun(self) -> str:
        """Names one value in messages: 'metric values are numbers'."""
        return self.name

    @property
    def hint(self) -> str:
        """How messages suggest writing one: 'metrics.<key>'."""
        return f"{self.plural}.<key>"


# What an identifier names: the parser checks a comparison against its ops and value_type.
Target = Attribute | KeyKind


@dataclass(frozen=True)
class Examples:
    """Filter text that messages suggest, fitting the entity: ``comparison`` completes
    'expected a comparison such as ...', ``identifiers`` 'expected an identifier such as ...'
    (in order_by), ``key_prefix`` 'a quoted key needs a prefix, e.g. <key_prefix>.`key`'."""

    comparison: str
    identifiers: str
    key_prefix: str


@dataclass(frozen=True, eq=False)
class EntitySchema:
    """One searchable entity: its table (the one ``id_column`` is in), attributes and kinds.

    ``name`` is the singular used in messages ('unknown run attribute', 'when searching runs'),
    ``examples`` what they suggest writing.
    ``attribute_aliases`` are prefixes besides ``attributes`` that name attributes.
    ``default_order`` is the (attribute name, descending) sort of a search without order_by;
    the id ascending always breaks ties last.
    """

    name: str
    id_column: Column[Any]
    attributes: tuple[Attribute, ...]
    examples: Examples
    kinds: tuple[KeyKind, ...] = ()
    default_order: tuple[tuple[str, bool], ...] = ()
    attribute_aliases: tuple[str, ...] = ("attribute", "attr")
    other_kinds: tuple[KeyKind, ...] = ()
    _names: dict[str, Attribute] = field(init=False, repr=False)
    _prefixes: dict[str, KeyKind | None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names: dict[str, Attribute] = {}
        for attribute in self.attributes:
            if attribute.column.table is not self.table:
                raise ValueError(f"attribute {attribute.name} is not a column of {self.table}")
            for name in (attribute.name, *attribute.aliases):
                _add(names, name, attribute, "attribute name")
        prefixes: dict[str, KeyKind | None] = {}
        for prefix in (ATTRIBUTE + "s", *self.attribute_aliases):
            _add(prefixes, prefix, None, "prefix")
        for kind in self.kinds + self.other_kinds:
            if kind.name == ATTRIBUTE:
                raise ValueError(f"a kind cannot be called {ATTRIBUTE!r}, the kind of attributes")
            if kind.owner not in kind.table.c:
                raise ValueError(f"kind {kind.name}: {kind.table} has no column {kind.owner}")
            for prefix in kind.prefixes:
                _add(prefixes, prefix, kind, "prefix")
        for name, _ in self.default_order:
            if not any(attribute.name == name for attribute in self.attributes):
                raise ValueError(f"default order: {name} is not the name of an attribute")
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_prefixes", prefixes)

    @property
    def table(self) -> Table:
        table = self.id_column.table
        assert isinstance(table, Table)
        return table

    @property
    def plural(self) -> str:
        return self.name + "s"

    def attribute(self, name: str) -> Attribute | None:
        """The attribute ``name`` (an alias or the name, in any case) stands for, or None."""
        return self._names.get(name.lower())

    def is_attribute_prefix(self, prefix: str) -> bool:
        return prefix.lower() in self._prefixes and self._prefixes[prefix.lower()] is None

    def kind(self, prefix: str) -> KeyKind | None:
        """The kind of this entity that ``prefix`` (any case) names, or None."""
        kind = self._prefixes.get(prefix.lower())
        return kind if kind in self.kinds else None

    def other_kind(self, prefix: str) -> KeyKind | None:
        """The kind of another entity that ``prefix`` (any case) names, or None."""
        kind = self._prefixes.get(prefix.lower())
        return kind if kind in self.other_kinds else None

    def attribute_named(self, name: str) -> Attribute:
        """The attribute of canonical ``name``, as a checked tree holds it."""
        return self._names[name]

    def kind_named(self, name: str) -> KeyKind:
        """The kind of this entity whose singular is ``name``, as a checked tree holds it."""
        (kind,) = (kind for kind in self.kinds if kind.name == name)
        return kind

    def hints(self) -> list[str]:
        """How to write each sort of identifier: 'metrics.<key>', ..., 'attributes.<name>'."""
        return [kind.hint for kind in self.kinds] + [f"{ATTRIBUTE}s.<name>"]

    def attribute_list(self) -> str:
        """The canonical attribute names, for 'expected one of ...'."""
        return ", ".join(attribute.name for attribute in self.attributes)


def _add(table: dict[str, Any], name: str, value: Any, what: str) -> None:
    """Adds ``name`` to a lookup table, refusing names in upper case or taken already."""
    if name != name.lower():
        raise ValueError(f"{what} {name!r} is not lower case (filters match it in any case)")
    if name in table:
        raise ValueError(f"{what} {name!r} would name two things")
    table[name] = value
