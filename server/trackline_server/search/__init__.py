"""The search filter language: parsing filter text and order_by items into a checked AST."""

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
from .parser import Entity, FilterError, parse_filter, parse_order_by

__all__ = [
    "And",
    "Comparison",
    "Entity",
    "Expr",
    "FilterError",
    "IdentKind",
    "Identifier",
    "Op",
    "Or",
    "OrderKey",
    "Scalar",
    "parse_filter",
    "parse_order_by",
    "to_text",
]
