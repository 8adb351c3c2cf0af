"""What the filter language knows about one searchable entity: an ``EntitySchema``.

A filter names four sorts of things, all described here and nowhere else:

- attributes, columns of the entity's own table, as a bare word (``start_time``, or
  backticked: ```Run Name```) or behind an attribute prefix (``attributes.start_time``), by
  canonical name or alias, in any case;
- keyed values (``KeyKind``: metrics, params, tags), rows of (owner id, key, value) in a table
  of their own, as ``<kind>s.<key>`` (``metrics.loss``) or behind one of the kind's aliases;
  some keys stand for something else (``KeyAlias``: MLflow's system tags such as
  ``tags.mlflow.runName``, which is the attribute run_name);
- related rows (``Related``: a run's dataset inputs), many per entity, reached through a join
  and compared by named fields (``datasets.name``); a comparison holds when some related row
  satisfies it;
- kinds that other entities have (``other_kinds``), only so that naming one explains itself
  ("metrics are not available when searching experiments") instead of being an unknown prefix.

The parser checks every comparison against the attribute, kind or field it names (operator,
value type); the compiler turns it into SQL over the columns and tables given here. A schema
that contradicts itself (an alias naming two things, a sort key that is no attribute) raises
ValueError when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, FromClause, Table

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


class _Prefixed:
    """Named in a filter by a prefix: ``<name>s`` (the plural, which also names it in
    messages) or one of its lower-case ``aliases``."""

    name: str
    aliases: tuple[str, ...]

    @property
    def plural(self) -> str:
        """The canonical prefix: 'metrics', 'datasets'."""
        return self.name + "s"

    @property
    def prefixes(self) -> tuple[str, ...]:
        return (self.plural, *self.aliases)


@dataclass(frozen=True, eq=False)
class KeyKind(_Prefixed):
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


@dataclass(frozen=True, eq=False)
class RelatedField:
    """A column of a related row that filters compare, e.g. a dataset's ``name``; ``name``
    is lower case (filters write it in any case)."""

    name: str
    value_type: ValueType
    column: Column[Any]


@dataclass(frozen=True, eq=False)
class Related(_Prefixed):
    """Rows related to the entity, any number per entity, e.g. a run's dataset inputs.

    ``source`` is the table or join that holds them, ``owner`` its column holding the entity's
    id. ``name`` is the singular the tree holds as the identifier's kind (``dataset``); a
    filter writes ``<name>s.<field>`` or uses one of the lower-case ``aliases`` as the prefix.
    A comparison holds for an entity when at least one of its related rows satisfies it (so
    ``datasets.name != 'a'`` finds the runs with an input not named 'a'); an entity without
    related rows satisfies none. Related rows cannot be sorted on, nor tested with IS NULL.
    """

    name: str
    source: FromClause
    owner: Column[Any]
    fields: tuple[RelatedField, ...]
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.fields:
            raise ValueError(f"related {self.name} has no fields")
        for related_field in self.fields:
            if related_field.name != related_field.name.lower():
                raise ValueError(f"related {self.name}: {related_field.name!r} is not lower case")
        if len({f.name for f in self.fields}) < len(self.fields):
            raise ValueError(f"related {self.name}: two fields share a name")

    @property
    def hint(self) -> str:
        """How messages suggest writing one: 'datasets.name, datasets.digest'."""
        return ", ".join(f"{self.plural}.{f.name}" for f in self.fields)

    def field(self, name: str) -> FieldOf | None:
        """The field ``name`` (in any case) names, as a comparison target, or None."""
        for related_field in self.fields:
            if related_field.name == name.lower():
                return FieldOf(self, related_field)
        return None

    def field_named(self, name: str) -> RelatedField:
        """The field of canonical ``name``, as a checked tree holds it."""
        (related_field,) = (f for f in self.fields if f.name == name)
        return related_field


@dataclass(frozen=True)
class FieldOf:
    """A field of related rows as the target of a comparison (what the parser checks)."""

    related: Related
    field: RelatedField

    @property
    def value_type(self) -> ValueType:
        return self.field.value_type

    @property
    def ops(self) -> tuple[Op, ...]:
        return self.field.value_type.ops

    @property
    def noun(self) -> str:
        """Names it in messages: 'datasets.name values are strings'."""
        return f"{self.related.plural}.{self.field.name}"

    @property
    def plural(self) -> str:
        return self.noun


@dataclass(frozen=True)
class KeyAlias:
    """A key of a kind that stands for something else, as MLflow's system tags do.

    A filter writing ``<kind>s.<key>`` (``key`` exactly, in any quoting) names ``target_key``
    of ``target`` instead: ``target`` is ``attribute`` (``tags.mlflow.runName`` is the
    attribute run_name) or a kind's singular (``tags.mlflow.source.name`` is the tag
    ``trackline.source.name``). The tree holds the target, so filters and order_by treat the
    alias and its target alike.
    """

    kind: str
    key: str
    target: str
    target_key: str


# What an identifier names: the parser checks a comparison against its ops and value_type.
Target = Attribute | KeyKind | FieldOf


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
    other_kinds: tuple[KeyKind | Related, ...] = ()
    related: tuple[Related, ...] = ()
    key_aliases: tuple[KeyAlias, ...] = ()
    _names: dict[str, Attribute] = field(init=False, repr=False)
    _prefixes: dict[str, KeyKind | Related | None] = field(init=False, repr=False)
    _key_aliases: dict[tuple[str, str], KeyAlias] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names: dict[str, Attribute] = {}
        for attribute in self.attributes:
            if attribute.column.table is not self.table:
                raise ValueError(f"attribute {attribute.name} is not a column of {self.table}")
            for name in (attribute.name, *attribute.aliases):
                _add(names, name, attribute, "attribute name")
        prefixes: dict[str, KeyKind | Related | None] = {}
        for prefix in (ATTRIBUTE + "s", *self.attribute_aliases):
            _add(prefixes, prefix, None, "prefix")
        for kind in self.kinds + self.other_kinds + self.related:
            if kind.name == ATTRIBUTE:
                raise ValueError(f"a kind cannot be called {ATTRIBUTE!r}, the kind of attributes")
            if isinstance(kind, KeyKind) and kind.owner not in kind.table.c:
                raise ValueError(f"kind {kind.name}: {kind.table} has no column {kind.owner}")
            for prefix in kind.prefixes:
                _add(prefixes, prefix, kind, "prefix")
        for name, _ in self.default_order:
            if not any(attribute.name == name for attribute in self.attributes):
                raise ValueError(f"default order: {name} is not the name of an attribute")
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_prefixes", prefixes)
        object.__setattr__(self, "_key_aliases", self._checked_key_aliases())

    def _checked_key_aliases(self) -> dict[tuple[str, str], KeyAlias]:
        aliases: dict[tuple[str, str], KeyAlias] = {}
        kind_names = {kind.name for kind in self.kinds}
        for alias in self.key_aliases:
            if alias.kind not in kind_names:
                raise ValueError(f"key alias {alias.key!r}: {alias.kind} is not a kind")
            if alias.target == ATTRIBUTE:
                if not any(a.name == alias.target_key for a in self.attributes):
                    raise ValueError(f"key alias {alias.key!r}: no attribute {alias.target_key}")
            elif alias.target not in kind_names:
                raise ValueError(f"key alias {alias.key!r}: {alias.target} is not a kind")
            if (alias.kind, alias.key) in aliases:
                raise ValueError(f"key alias {alias.key!r} would name two things")
            aliases[(alias.kind, alias.key)] = alias
        for alias in aliases.values():
            if (alias.target, alias.target_key) in aliases:
                raise ValueError(f"key alias {alias.key!r} names another alias")
        return aliases

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
        return kind if isinstance(kind, KeyKind) and kind in self.kinds else None

    def related_rows(self, prefix: str) -> Related | None:
        """The related rows of this entity that ``prefix`` (any case) names, or None."""
        related = self._prefixes.get(prefix.lower())
        return related if isinstance(related, Related) and related in self.related else None

    def other_kind(self, prefix: str) -> KeyKind | Related | None:
        """The kind or related rows of another entity that ``prefix`` (any case) names, or
        None."""
        kind = self._prefixes.get(prefix.lower())
        return kind if kind is not None and kind in self.other_kinds else None

    def key_target(self, kind: KeyKind, key: str) -> tuple[str, str, Target]:
        """What ``<kind>s.<key>`` names, through the key aliases: the identifier's kind and key
        as the tree holds them, and the target the comparison is checked against."""
        alias = self._key_aliases.get((kind.name, key))
        if alias is None:
            return kind.name, key, kind
        if alias.target == ATTRIBUTE:
            return ATTRIBUTE, alias.target_key, self.attribute_named(alias.target_key)
        return alias.target, alias.target_key, self.kind_named(alias.target)

    def attribute_named(self, name: str) -> Attribute:
        """The attribute of canonical ``name``, as a checked tree holds it."""
        return self._names[name]

    def kind_named(self, name: str) -> KeyKind:
        """The kind of this entity whose singular is ``name``, as a checked tree holds it."""
        (kind,) = (kind for kind in self.kinds if kind.name == name)
        return kind

    def related_named(self, name: str) -> Related | None:
        """The related rows whose singular is ``name`` (a kind a checked tree holds), or None
        when ``name`` is a kind of keyed values."""
        return next((related for related in self.related if related.name == name), None)

    def hints(self) -> list[str]:
        """How to write each sort of identifier: 'metrics.<key>', ..., 'attributes.<name>'."""
        return [kind.hint for kind in self.kinds] + [f"{ATTRIBUTE}s.<name>"]

    def prefix_hints(self) -> list[str]:
        """Like ``hints``, with the fields of related rows before the attributes: 'tags.<key>',
        'datasets.name, datasets.digest, datasets.context', 'attributes.<name>'."""
        return (
            [kind.hint for kind in self.kinds]
            + [r.hint for r in self.related]
            + [f"{ATTRIBUTE}s.<name>"]
        )

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
