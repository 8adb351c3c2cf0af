"""Recursive-descent parser of the search filter language and of ``order_by`` items.

The grammar (keywords are case-insensitive)::

    filter     := or_expr EOF
    or_expr    := and_expr (OR and_expr)*
    and_expr   := primary (AND primary)*
    primary    := '(' or_expr ')' | comparison
    comparison := identifier op value
               |  identifier [NOT] IN '(' value (',' value)* ')'
               |  identifier IS [NOT] NULL
    op         := = | == | != | <> | < | <= | > | >= | [NOT] LIKE | [NOT] ILIKE
    order_item := identifier [ASC | DESC]

Identifiers are ``prefix.key`` (the prefix may be backticked) or a bare attribute name (which
may be backticked: ```Run Name```), resolved against the entity schema given, key aliases
included (``tags.mlflow.runName`` is the attribute run_name); every comparison is checked
against what its identifier names (allowed operators, value type) while parsing, so a returned
tree is valid for that entity. Any malformed input raises ``FilterError`` and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

from ..limits import (
    MAX_FILTER_COMPARISONS,
    MAX_FILTER_LENGTH,
    MAX_FILTER_NESTING,
    MAX_IN_LIST,
    MAX_ORDER_BY_KEYS,
)
from .ast import And, Comparison, Expr, Identifier, Op, Or, OrderKey, Scalar, identifier_text
from .lexer import FilterError, Token, TokenKind, clip, found, tokenize
from .schema import ATTRIBUTE, EntitySchema, FieldOf, Target
from .values import PATTERN_OPS, Enum, ValueMismatch

_OPS: dict[str, Op] = {op: op for op in get_args(Op)}
_OP_LIST = "=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN, IS NULL"


class Parser:
    """Recursive-descent parser over the tokens of one filter or order_by item.

    ``source`` ("filter" or "item") names the text in messages about its end.
    """

    def __init__(self, text: str, schema: EntitySchema, source: str = "filter") -> None:
        self.text = text
        self.schema = schema
        self.source = source
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0
        self.comparisons = 0

    # -- token helpers

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    @property
    def previous(self) -> Token:
        return self.tokens[self.index - 1]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "EOF":
            self.index += 1
        return token

    def at(self, kind: TokenKind) -> bool:
        """Whether the current token is of ``kind`` (a call, so mypy does not narrow it)."""
        return self.token.kind == kind

    def at_keyword(self, *keywords: str) -> bool:
        return self.token.kind == "KEYWORD" and self.token.value in keywords

    def error(self, message: str, token: Token | None = None) -> FilterError:
        """An error at ``token`` (default: the current token)."""
        return FilterError(message, (token or self.token).position, self.text, self.source)

    def expected(self, what: str, hint: str = "", after: bool = True) -> FilterError:
        """'expected <what> [after '<previous>'] [but found <current>][; <hint>]'."""
        message = f"expected {what}"
        if after and self.index > 0:
            message += f" after '{clip(self.previous.text)}'"
        if not self.at("EOF"):
            message += f" but found {found(self.token)}"
        if hint:
            message += f"; {hint}"
        return self.error(message)

    # -- grammar rules

    def parse_filter(self) -> Expr | None:
        """filter := or_expr EOF; None when the text holds no tokens."""
        if self.at("EOF"):
            return None
        expr = self.or_expr()
        if self.at("RPAREN"):
            raise self.error("unexpected ')' with no matching '('")
        if not self.at("EOF"):
            raise self.expected("AND, OR or the end of filter")
        return expr

    def or_expr(self) -> Expr:
        """or_expr := and_expr (OR and_expr)*"""
        operands = [self.and_expr()]
        while self.at_keyword("OR"):
            self.advance()
            operands.append(self.and_expr())
        return _combine(Or, operands)

    def and_expr(self) -> Expr:
        """and_expr := primary (AND primary)*"""
        operands = [self.primary()]
        while self.at_keyword("AND"):
            self.advance()
            operands.append(self.primary())
        return _combine(And, operands)

    def primary(self) -> Expr:
        """primary := '(' or_expr ')' | comparison"""
        if not self.at("LPAREN"):
            return self.comparison()
        opening = self.advance()
        self.depth += 1
        if self.depth > MAX_FILTER_NESTING:
            raise self.error(
                f"too deeply nested; at most {MAX_FILTER_NESTING} levels of parentheses",
                opening,
            )
        expr = self.or_expr()
        if not self.at("RPAREN"):
            message = f"expected ')' to close the '(' opened at position {opening.position}"
            if not self.at("EOF"):
                message += f", or AND/OR, but found {found(self.token)}"
            raise self.error(message)
        self.advance()
        self.depth -= 1
        return expr

    def comparison(self) -> Comparison:
        """comparison := identifier op value | identifier [NOT] IN list | identifier IS [NOT] NULL

        The operator and the value are checked against what the identifier names.
        """
        start = self.token
        ident, target = self.identifier()
        self.comparisons += 1
        if self.comparisons > MAX_FILTER_COMPARISONS:
            raise self.error(f"too many comparisons; at most {MAX_FILTER_COMPARISONS}", start)
        op_token = self.token
        op = self.operator()
        if op not in target.ops:
            raise self.error(
                f"{op} is not supported for {target.plural}{self._alias_note(start, ident)}; "
                f"expected one of {', '.join(target.ops)}",
                op_token,
            )
        value: Scalar | tuple[Scalar, ...] | None
        if op in ("IS NULL", "IS NOT NULL"):
            value = None
        elif op in ("IN", "NOT IN"):
            value = self.value_list(target)
        else:
            value = self.value(target, pattern=op in PATTERN_OPS)
        return Comparison(ident, op, value, start.position)

    def identifier(self) -> tuple[Identifier, Target]:
        """identifier := prefix '.' key | attribute name; resolved against the schema."""
        token = self.token
        examples = self.schema.examples
        if token.kind == "IDENT":
            self.advance()
            return self._prefixed_identifier(token)
        if token.kind == "WORD":
            self.advance()
            attribute = self.schema.attribute(token.text)
            if attribute is None:
                raise self.error(
                    f"unknown identifier '{clip(token.text)}'; expected {self._identifier_hint()}",
                    token,
                )
            return Identifier(ATTRIBUTE, attribute.name, token.position), attribute
        if token.kind == "BACKTICK":
            attribute = self.schema.attribute(str(token.value))
            if attribute is not None:
                self.advance()
                return Identifier(ATTRIBUTE, attribute.name, token.position), attribute
            raise self.error(
                f"a quoted key needs a prefix, e.g. {examples.key_prefix}.{clip(token.text)}; "
                f"expected {self._identifier_hint()}"
            )
        if self.source != "filter":
            raise self.expected(f"an identifier such as {examples.identifiers}")
        if token.kind == "EOF":
            raise self.expected(f"a comparison such as {examples.comparison}")
        if token.kind == "RPAREN" and self.depth == 0:
            raise self.error("unexpected ')' with no matching '('")
        message = f"unexpected {found(token)}"
        if self.index > 0:
            message += f" after '{clip(self.previous.text)}'"
        raise self.error(f"{message}; expected {self._identifier_hint()} or '('")

    def _prefixed_identifier(self, token: Token) -> tuple[Identifier, Target]:
        schema = self.schema
        key = str(token.value)
        if schema.is_attribute_prefix(token.prefix):
            attribute = schema.attribute(key)
            if attribute is None:
                raise self.error(
                    f"unknown {schema.name} attribute '{clip(key)}'; expected one of "
                    + schema.attribute_list(),
                    token,
                )
            return Identifier(ATTRIBUTE, attribute.name, token.position), attribute
        kind = schema.kind(token.prefix)
        if kind is not None:
            ident_kind, ident_key, target = schema.key_target(kind, key)
            return Identifier(ident_kind, ident_key, token.position), target
        related = schema.related_rows(token.prefix)
        if related is not None:
            field = related.field(key)
            if field is None:
                raise self.error(
                    f"unknown field '{clip(key)}' of {related.plural}; expected {related.hint}",
                    token,
                )
            return Identifier(related.name, field.field.name, token.position), field
        other = schema.other_kind(token.prefix)
        if other is None:
            raise self.error(
                f"unknown prefix '{clip(token.prefix)}.'; expected "
                + ", ".join(schema.prefix_hints())
                + f" or one of {schema.attribute_list()}",
                token,
            )
        raise self.error(
            f"{other.plural} are not available when searching {schema.plural}; expected "
            + " or ".join(schema.hints()),
            token,
        )

    def _alias_note(self, token: Token, ident: Identifier) -> str:
        """' (tags.mlflow.user stands for attributes.`user_id`)' when ``token`` wrote a key
        alias, else ''."""
        kind = self.schema.kind(token.prefix) if token.kind == "IDENT" else None
        if kind is None or (ident.kind, ident.key) == (kind.name, token.value):
            return ""
        return f" ({kind.plural}.{clip(str(token.value))} stands for {identifier_text(ident)})"

    def _identifier_hint(self) -> str:
        return f"{', '.join(self.schema.hints())} or one of {self.schema.attribute_list()}"

    def operator(self) -> Op:
        """op := = | != | < | <= | > | >= | [NOT] LIKE | [NOT] ILIKE | [NOT] IN | IS [NOT] NULL"""
        token = self.token
        if token.kind == "OP":
            self.advance()
            return _OPS[str(token.value)]
        if token.kind == "KEYWORD":
            if token.value in ("LIKE", "ILIKE", "IN"):
                self.advance()
                return _OPS[str(token.value)]
            if token.value == "NOT":
                self.advance()
                if not self.at_keyword("LIKE", "ILIKE", "IN"):
                    raise self.expected("LIKE, ILIKE or IN")
                return _OPS[f"NOT {self.advance().value}"]
            if token.value == "IS":
                self.advance()
                negated = self.at_keyword("NOT")
                if negated:
                    self.advance()
                if not self.at_keyword("NULL"):
                    raise self.expected("NULL")
                self.advance()
                return "IS NOT NULL" if negated else "IS NULL"
        raise self.expected(f"a comparison operator ({_OP_LIST})", after=False)

    def value_list(self, target: Target) -> tuple[Scalar, ...]:
        """list := '(' value (',' value)* ')'"""
        if not self.at("LPAREN"):
            raise self.expected("'(' to start a list of values")
        opening = self.advance()
        if self.at("RPAREN"):
            raise self.error("empty IN list; expected at least one value")
        values = [self.value(target)]
        while self.at("COMMA"):
            self.advance()
            if len(values) >= MAX_IN_LIST:
                raise self.error(f"too many values in the list; at most {MAX_IN_LIST}")
            values.append(self.value(target))
        if not self.at("RPAREN"):
            raise self.expected(
                f"',' or ')' to close the list opened at position {opening.position}",
                after=False,
            )
        self.advance()
        return tuple(values)

    def value(self, target: Target, pattern: bool = False) -> Scalar:
        """value := string | number, checked against the value type of ``target``; a LIKE
        ``pattern`` over an enum's names is any string."""
        token = self.token
        value_type = target.value_type
        if pattern and isinstance(value_type, Enum):
            try:
                value = value_type.parse_pattern(token)
            except ValueMismatch as mismatch:
                raise self.expected(mismatch.expected) from None
            self.advance()
            return value
        what = value_type.description
        if token.kind == "KEYWORD" and token.value == "NULL":
            raise self.expected(what, "use IS NULL or IS NOT NULL to test for a missing value")
        if token.kind == "WORD" and value_type.strings_only:
            raise self.expected(what, f"quote it: '{clip(token.text)}'")
        if token.kind not in ("STRING", "NUMBER"):
            raise self.expected(what)
        try:
            value = value_type.parse(token, target.noun)
        except ValueMismatch as mismatch:
            if mismatch.expected:
                raise self.expected(mismatch.expected, mismatch.hint) from None
            raise self.error(mismatch.message) from None
        self.advance()
        return value

    def order_item(self) -> OrderKey:
        """order_item := identifier [ASC | DESC] EOF"""
        start = self.token
        ident, target = self.identifier()
        if isinstance(target, FieldOf):
            raise self.error(
                f"cannot sort on {target.noun}: a {self.schema.name} may have many "
                f"{target.related.plural}",
                start,
            )
        descending = False
        if self.at_keyword("ASC", "DESC"):
            descending = self.advance().value == "DESC"
        if not self.at("EOF"):
            raise self.expected("ASC, DESC or the end of the item")
        return OrderKey(ident, descending)


def _combine(node: type[And] | type[Or], operands: list[Expr]) -> Expr:
    """One operand as is; several as ``node``, flattening operands of the same type."""
    if len(operands) == 1:
        return operands[0]
    flat: list[Expr] = []
    for operand in operands:
        flat.extend(operand.operands if isinstance(operand, node) else (operand,))
    return node(tuple(flat))


def parse_filter(text: str, schema: EntitySchema) -> Expr | None:
    """Parses a filter for searching the entity of ``schema``; None for empty or
    whitespace-only text.

    Raises FilterError (and nothing else) for any malformed text, including text over the
    length, nesting, comparison-count and list-length limits.
    """
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(
            f"filter too long ({len(text)} characters); at most {MAX_FILTER_LENGTH}",
            MAX_FILTER_LENGTH,
        )
    return Parser(text, schema).parse_filter()


def parse_order_by(items: Sequence[str], schema: EntitySchema) -> list[OrderKey]:
    """Parses order_by items such as ``metrics.loss DESC`` (ASC when omitted).

    Errors are FilterError whose message starts with ``order_by[i]: `` and whose position is
    an offset into item ``i``. More than MAX_ORDER_BY_KEYS items, or one identifier twice,
    is an error.
    """
    if len(items) > MAX_ORDER_BY_KEYS:
        raise FilterError(
            f"order_by[{MAX_ORDER_BY_KEYS}]: too many sort keys; at most {MAX_ORDER_BY_KEYS}", 0
        )
    keys: list[OrderKey] = []
    first_index: dict[tuple[str, str], int] = {}
    for i, item in enumerate(items):
        try:
            if len(item) > MAX_FILTER_LENGTH:
                raise FilterError(f"item too long; at most {MAX_FILTER_LENGTH}", 0)
            key = Parser(item, schema, source="item").order_item()
        except FilterError as err:
            raise FilterError(f"order_by[{i}]: {err.message}", err.position, item, "item") from None
        identity = (key.ident.kind, key.ident.key)
        if identity in first_index:
            raise FilterError(
                f"order_by[{i}]: {identifier_text(key.ident)} is already sorted on by "
                f"order_by[{first_index[identity]}]",
                key.ident.position,
                item,
                "item",
            )
        first_index[identity] = i
        keys.append(key)
    return keys
