"""The search filter language, below every domain: text to a checked tree to SQL.

A domain describes each searchable entity once as an ``EntitySchema`` (its attributes with
their value types, its kinds of keyed values, its related rows and key aliases, its default
order); ``parse_filter`` and
``parse_order_by`` check text against it, ``filter_clause`` and ``apply_order`` compile the
result to SQLAlchemy over the tables it names; ``requests`` holds what every search call
does with its request (filter and order_by checked, page size, page token). Nothing here
knows any particular entity.
"""

from .ast import (
    And,
    Comparison,
    Expr,
    Identifier,
    IdentKind,
    Op,
    Or,
    OrderKey,
    Scalar,
    to_text,
)
from .compiler import apply_order, filter_clause
from .lexer import FilterError
from .parser import parse_filter, parse_order_by
from .requests import next_page_token, page_offset, parse_request, rows_per_page
from .schema import (
    Attribute,
    EntitySchema,
    Examples,
    FieldOf,
    KeyAlias,
    KeyKind,
    Related,
    RelatedField,
)
from .values import DecimalId, Enum, Int64, Number, Text, ValueType

__all__ = [
    "And",
    "Attribute",
    "Comparison",
    "DecimalId",
    "EntitySchema",
    "Enum",
    "Examples",
    "Expr",
    "FieldOf",
    "FilterError",
    "IdentKind",
    "Identifier",
    "Int64",
    "KeyAlias",
    "KeyKind",
    "Number",
    "Op",
    "Or",
    "OrderKey",
    "Related",
    "RelatedField",
    "Scalar",
    "Text",
    "ValueType",
    "apply_order",
    "filter_clause",
    "next_page_token",
    "page_offset",
    "parse_filter",
    "parse_order_by",
    "parse_request",
    "rows_per_page",
    "to_text",
]
