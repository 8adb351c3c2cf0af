"""Lexer and recursive-descent parser of the search filter language and of ``order_by`` items.

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

Identifiers are ``prefix.key`` (metrics, params, tags, attributes and their aliases) or a bare
attribute name. Every comparison is checked against the rules of its identifier (allowed
operators, value type) while parsing, so a returned tree is valid for the entity searched.
Any malformed input raises ``FilterError`` and nothing else.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..limits import (
    MAX_FILTER_COMPARISONS,
    MAX_FILTER_LENGTH,
    MAX_FILTER_NESTING,
    MAX_IN_LIST,
    MAX_ORDER_BY_KEYS,
)
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
    identifier_text,
)

Entity = Literal["run", "experiment"]

_NEAR_LENGTH = 20
# The range of the integer attributes' columns (BIGINT on both backends).
_INT64 = range(-(2**63), 2**63)


class FilterError(Exception):
    """A malformed filter or order_by item.

    ``position`` is the 0-based character offset of the problem in the text that was parsed
    (for order_by, in that item), ``message`` a one-line explanation without the position.
    """

    def __init__(
        self, message: str, position: int, text: str | None = None, source: str = "filter"
    ) -> None:
        """``text`` (when given) adds where the position is: ``(end of <source>)`` or near."""
        self.message = message
        self.position = position
        detail = f"{message} at position {position}"
        if text is not None and position >= len(text):
            detail += f" (end of {source})"
        elif text is not None:
            near = "".join(
                c if c.isprintable() else " " for c in text[position : position + _NEAR_LENGTH]
            )
            detail += f" near '{near}'"
        super().__init__(detail)


# ----------------------------------------------------------------------------------------------
# Lexer

TokenKind = Literal[
    "IDENT",  # prefix.key; value is the key, prefix the word before the dot
    "WORD",  # a bare word that is not a keyword, e.g. an attribute name
    "KEYWORD",  # AND OR IN NOT IS NULL LIKE ILIKE ASC DESC; value is upper case
    "NUMBER",  # value is an int or a float
    "STRING",  # '...' or "..."; value is the unescaped content
    "BACKTICK",  # `...` without a prefix; only ever reported as an error
    "OP",  # = != < <= > >=; value is normalised (== -> =, <> -> !=)
    "LPAREN",
    "RPAREN",
    "COMMA",
    "EOF",
]


@dataclass(frozen=True, slots=True)
class Token:
    """One lexeme: ``text`` is its exact source text, ``value`` its meaning (see TokenKind)."""

    kind: TokenKind
    text: str
    position: int
    value: str | int | float = ""
    prefix: str = ""


KEYWORDS = frozenset({"AND", "OR", "IN", "NOT", "IS", "NULL", "LIKE", "ILIKE", "ASC", "DESC"})
_SPECIAL_FLOATS = {"nan": float("nan"), "inf": float("inf"), "infinity": float("inf")}
_OPERATORS = {
    "<=": "<=",
    ">=": ">=",
    "<>": "!=",
    "!=": "!=",
    "==": "=",
    "=": "=",
    "<": "<",
    ">": ">",
}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNQUOTED_KEY = re.compile(r"[A-Za-z0-9_.\-/:]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SIGNED_WORD = re.compile(r"[+-][A-Za-z_][A-Za-z0-9_]*")
_NUMBER_TAIL = re.compile(r"[A-Za-z0-9_.]")
_BAD_NUMBER = re.compile(r"[A-Za-z0-9_.+-]*")


def is_number_text(text: str) -> bool:
    """Whether ``text`` is a number literal of the language (including NaN and Infinity)."""
    unsigned = text[1:] if text[:1] in ("+", "-") else text
    return bool(_NUMBER.fullmatch(text)) or unsigned.lower() in _SPECIAL_FLOATS


def tokenize(text: str) -> list[Token]:
    """Splits ``text`` into tokens, ending with an EOF token at ``len(text)``."""
    tokens: list[Token] = []
    pos = 0
    end = len(text)
    while True:
        while pos < end and text[pos].isspace():
            pos += 1
        if pos >= end:
            tokens.append(Token("EOF", "", end))
            return tokens
        token = _next_token(text, pos)
        tokens.append(token)
        pos += len(token.text)


def _next_token(text: str, pos: int) -> Token:
    char = text[pos]
    if char == "(":
        return Token("LPAREN", char, pos)
    if char == ")":
        return Token("RPAREN", char, pos)
    if char == ",":
        return Token("COMMA", char, pos)
    if char in "'\"":
        value, length = _read_string(text, pos)
        return Token("STRING", text[pos : pos + length], pos, value)
    if char == "`":
        value, length = _read_quoted_key(text, pos)
        return Token("BACKTICK", text[pos : pos + length], pos, value)
    for op_text in (text[pos : pos + 2], char):
        if op_text in _OPERATORS:
            return Token("OP", op_text, pos, _OPERATORS[op_text])
    if (char.isdigit() and char.isascii()) or char in "+-.":
        return _read_number(text, pos)
    word = _WORD.match(text, pos)
    if word is None:
        raise FilterError(f"unexpected character {char!r}", pos, text)
    if word.end() < len(text) and text[word.end()] == ".":
        return _read_identifier(text, pos, word.group())
    upper = word.group().upper()
    if upper in KEYWORDS:
        return Token("KEYWORD", word.group(), pos, upper)
    if word.group().lower() in _SPECIAL_FLOATS:
        return Token("NUMBER", word.group(), pos, _SPECIAL_FLOATS[word.group().lower()])
    return Token("WORD", word.group(), pos, word.group())


def _read_identifier(text: str, pos: int, prefix: str) -> Token:
    """Reads ``prefix.key`` where the key is unquoted, `backticked` or "double-quoted"."""
    key_pos = pos + len(prefix) + 1
    if key_pos < len(text) and text[key_pos] in '`"':
        key, length = _read_quoted_key(text, key_pos)
        key_end = key_pos + length
    else:
        match = _UNQUOTED_KEY.match(text, key_pos)
        if match is None:
            raise FilterError(
                f"expected a key after '{prefix}.', e.g. {prefix}.loss or {prefix}.`my key`",
                key_pos,
                text,
            )
        key, key_end = match.group(), match.end()
    return Token("IDENT", text[pos:key_end], pos, key, prefix)


def _read_quoted_key(text: str, pos: int) -> tuple[str, int]:
    """Reads a `key` or "key" at ``pos`` (the quote doubled inside stands for itself).

    Returns the key and the length of its source text.
    """
    quote = text[pos]
    chars: list[str] = []
    i = pos + 1
    while True:
        if i >= len(text):
            raise FilterError(f"unterminated quoted key; expected a closing {quote}", pos, text)
        char = text[i]
        if char == quote:
            if text[i + 1 : i + 2] == quote:
                chars.append(quote)
                i += 2
                continue
            break
        if unicodedata.category(char) == "Cc":
            raise FilterError(
                f"quoted keys cannot contain control characters, found {char!r}", i, text
            )
        chars.append(char)
        i += 1
    if not chars:
        raise FilterError(
            "empty key; expected at least one character between the quotes", pos, text
        )
    return "".join(chars), i + 1 - pos


def _read_string(text: str, pos: int) -> tuple[str, int]:
    """Reads a '...' or "..." string at ``pos``.

    The quote doubled stands for itself; ``\\'``, ``\\"`` and ``\\\\`` are escapes; any other
    backslash is kept literally (so LIKE patterns and Windows paths read naturally).
    Returns the value and the length of its source text.
    """
    quote = text[pos]
    chars: list[str] = []
    i = pos + 1
    while True:
        if i >= len(text):
            raise FilterError(f"unterminated string; expected a closing {quote}", pos, text)
        char = text[i]
        if char == quote:
            if text[i + 1 : i + 2] == quote:
                chars.append(quote)
                i += 2
                continue
            return "".join(chars), i + 1 - pos
        if char == "\\" and text[i + 1 : i + 2] in ("'", '"', "\\"):
            chars.append(text[i + 1])
            i += 2
            continue
        chars.append(char)
        i += 1


def _read_number(text: str, pos: int) -> Token:
    """Reads an int, a float or a signed NaN/Inf/Infinity at ``pos``."""
    signed_word = _SIGNED_WORD.match(text, pos)
    if signed_word is not None:
        word = signed_word.group()
        if word[1:].lower() in _SPECIAL_FLOATS:
            special = _SPECIAL_FLOATS[word[1:].lower()]
            return Token("NUMBER", word, pos, -special if word[0] == "-" else special)
        raise FilterError(f"unexpected {text[pos]!r}; expected a number after it", pos, text)
    match = _NUMBER.match(text, pos)
    if match is None:
        raise FilterError(f"unexpected character {text[pos]!r}", pos, text)
    number = match.group()
    if _NUMBER_TAIL.match(text, match.end()):
        bad = _BAD_NUMBER.match(text, pos)
        assert bad is not None  # the pattern matches the empty string
        raise FilterError(f"invalid number '{_clip(bad.group())}'", pos, text)
    try:
        parsed = float(number) if any(c in number for c in ".eE") else int(number)
    except ValueError:  # more digits than int() accepts
        raise FilterError(f"number too long ({len(number)} characters)", pos, text) from None
    return Token("NUMBER", number, pos, parsed)


# ----------------------------------------------------------------------------------------------
# Identifier rules

ValueType = Literal["number", "integer", "string", "experiment_id", "status"]

NUMBER_OPS: tuple[Op, ...] = (
    "=", "!=", "<", "<=", ">", ">=", "IN", "NOT IN", "IS NULL", "IS NOT NULL",
)  # fmt: skip
STRING_OPS: tuple[Op, ...] = (
    "=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE",
    "IN", "NOT IN", "IS NULL", "IS NOT NULL",
)  # fmt: skip
EQUALITY_OPS: tuple[Op, ...] = ("=", "!=", "IN", "NOT IN")
_NULL_OPS = ("IS NULL", "IS NOT NULL")


@dataclass(frozen=True, slots=True)
class Rule:
    """What may be compared with an identifier: ``noun`` names it in error messages."""

    noun: str
    value_type: ValueType
    ops: tuple[Op, ...]


def _attribute(name: str, value_type: ValueType, nullable: bool = False) -> Rule:
    """An attribute's rule: ``nullable`` ones also accept IS NULL / IS NOT NULL."""
    ops = {"integer": NUMBER_OPS, "string": STRING_OPS}.get(value_type, EQUALITY_OPS)
    if not nullable:
        ops = tuple(op for op in ops if op not in _NULL_OPS)
    return Rule(name, value_type, ops)


# The allowed operators and value type per kind of identifier.
KIND_RULES: dict[IdentKind, Rule] = {
    "metric": Rule("metric", "number", NUMBER_OPS),
    "param": Rule("param", "string", STRING_OPS),
    "tag": Rule("tag", "string", STRING_OPS),
}
ATTRIBUTES: dict[Entity, dict[str, Rule]] = {
    "run": {
        "run_id": _attribute("run_id", "string"),
        "run_name": _attribute("run_name", "string"),
        "status": _attribute("status", "status"),
        "start_time": _attribute("start_time", "integer"),
        "end_time": _attribute("end_time", "integer", nullable=True),
        "experiment_id": _attribute("experiment_id", "experiment_id"),
        "parent_run_id": _attribute("parent_run_id", "string", nullable=True),
        "artifact_uri": _attribute("artifact_uri", "string"),
    },
    "experiment": {
        "experiment_id": _attribute("experiment_id", "experiment_id"),
        "name": _attribute("name", "string"),
        "creation_time": _attribute("creation_time", "integer"),
        "last_update_time": _attribute("last_update_time", "integer"),
        "artifact_location": _attribute("artifact_location", "string"),
    },
}
ATTRIBUTE_ALIASES: dict[Entity, dict[str, str]] = {
    "run": {"created": "start_time", "name": "run_name", "id": "run_id"},
    "experiment": {"created": "creation_time"},
}
KINDS: dict[Entity, tuple[IdentKind, ...]] = {
    "run": ("metric", "param", "tag", "attribute"),
    "experiment": ("tag", "attribute"),
}
PREFIXES: dict[str, IdentKind] = {
    "metrics": "metric",
    "metric": "metric",
    "params": "param",
    "param": "param",
    "parameters": "param",
    "parameter": "param",
    "tags": "tag",
    "tag": "tag",
    "attributes": "attribute",
    "attribute": "attribute",
    "attr": "attribute",
    "run": "attribute",
}
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
_PREFIX_HINTS: dict[IdentKind, str] = {
    "metric": "metrics.<key>",
    "param": "params.<key>",
    "tag": "tags.<key>",
    "attribute": "attributes.<name>",
}
_OP_LIST = "=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN, IS NULL"
_VALUE_NOUNS: dict[ValueType, str] = {
    "number": "a number",
    "integer": "an integer",
    "string": "a string",
    "experiment_id": "an experiment ID",
    "status": "a status",
}


def _found(token: Token) -> str:
    """Describes a token for 'but found ...' in messages."""
    if token.kind == "EOF":
        return "the end of filter"
    if token.kind == "STRING":
        return _clip(token.text)
    return f"'{_clip(token.text)}'"


def _clip(text: str) -> str:
    """Shortens quoted source text for a message and keeps the message on one line."""
    text = text if len(text) <= 40 else text[:37] + "..."
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# ----------------------------------------------------------------------------------------------
# Parser


class Parser:
    """Recursive-descent parser over the tokens of one filter or order_by item.

    ``source`` ("filter" or "item") names the text in messages about its end.
    """

    def __init__(self, text: str, entity: Entity, source: str = "filter") -> None:
        if entity not in KINDS:
            raise ValueError(f"unknown entity {entity!r}")
        self.text = text
        self.entity: Entity = entity
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
            message += f" after '{_clip(self.previous.text)}'"
        if not self.at("EOF"):
            message += f" but found {_found(self.token)}"
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
                message += f", or AND/OR, but found {_found(self.token)}"
            raise self.error(message)
        self.advance()
        self.depth -= 1
        return expr

    def comparison(self) -> Comparison:
        """comparison := identifier op value | identifier [NOT] IN list | identifier IS [NOT] NULL

        The operator and the value are checked against the identifier's rule.
        """
        start = self.token
        ident, rule = self.identifier()
        self.comparisons += 1
        if self.comparisons > MAX_FILTER_COMPARISONS:
            raise self.error(f"too many comparisons; at most {MAX_FILTER_COMPARISONS}", start)
        op_token = self.token
        op = self.operator()
        if op not in rule.ops:
            raise self.error(
                f"{op} is not supported for {_plural(rule.noun)}; "
                f"expected one of {', '.join(rule.ops)}",
                op_token,
            )
        value: Scalar | tuple[Scalar, ...] | None
        if op in ("IS NULL", "IS NOT NULL"):
            value = None
        elif op in ("IN", "NOT IN"):
            value = self.value_list(rule)
        else:
            value = self.value(rule)
        return Comparison(ident, op, value, start.position)

    def identifier(self) -> tuple[Identifier, Rule]:
        """identifier := prefix '.' key | attribute name; resolved against the entity."""
        token = self.token
        if token.kind == "IDENT":
            self.advance()
            return self._prefixed_identifier(token)
        if token.kind == "WORD":
            self.advance()
            resolved = self._attribute_name(token.text)
            if resolved is None:
                raise self.error(
                    f"unknown identifier '{_clip(token.text)}'; expected {self._identifier_hint()}",
                    token,
                )
            rule = ATTRIBUTES[self.entity][resolved]
            return Identifier("attribute", resolved, token.position), rule
        if token.kind == "BACKTICK":
            raise self.error(
                f"a quoted key needs a prefix, e.g. tags.{_clip(token.text)}; "
                f"expected {self._identifier_hint()}"
            )
        if self.source != "filter":
            raise self.expected("an identifier such as metrics.loss or start_time")
        if token.kind == "EOF":
            raise self.expected("a comparison such as metrics.loss < 1")
        if token.kind == "RPAREN" and self.depth == 0:
            raise self.error("unexpected ')' with no matching '('")
        message = f"unexpected {_found(token)}"
        if self.index > 0:
            message += f" after '{_clip(self.previous.text)}'"
        raise self.error(f"{message}; expected {self._identifier_hint()} or '('")

    def _prefixed_identifier(self, token: Token) -> tuple[Identifier, Rule]:
        kinds = KINDS[self.entity]
        kind = PREFIXES.get(token.prefix.lower())
        if kind is None:
            raise self.error(
                f"unknown prefix '{_clip(token.prefix)}.'; expected "
                + ", ".join(_PREFIX_HINTS[k] for k in kinds)
                + f" or one of {', '.join(ATTRIBUTES[self.entity])}",
                token,
            )
        if kind not in kinds:
            raise self.error(
                f"{_plural(kind)} are not available when searching {self.entity}s; expected "
                + " or ".join(_PREFIX_HINTS[k] for k in kinds),
                token,
            )
        key = str(token.value)
        if kind != "attribute":
            return Identifier(kind, key, token.position), KIND_RULES[kind]
        resolved = self._attribute_name(key)
        if resolved is None:
            raise self.error(
                f"unknown {self.entity} attribute '{_clip(key)}'; expected one of "
                + ", ".join(ATTRIBUTES[self.entity]),
                token,
            )
        return Identifier("attribute", resolved, token.position), ATTRIBUTES[self.entity][resolved]

    def _attribute_name(self, name: str) -> str | None:
        """The canonical attribute name for ``name`` (any case, aliases resolved), or None."""
        lowered = name.lower()
        lowered = ATTRIBUTE_ALIASES[self.entity].get(lowered, lowered)
        return lowered if lowered in ATTRIBUTES[self.entity] else None

    def _identifier_hint(self) -> str:
        prefixes = ", ".join(_PREFIX_HINTS[k] for k in KINDS[self.entity])
        return f"{prefixes} or one of {', '.join(ATTRIBUTES[self.entity])}"

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

    def value_list(self, rule: Rule) -> tuple[Scalar, ...]:
        """list := '(' value (',' value)* ')'"""
        if not self.at("LPAREN"):
            raise self.expected("'(' to start a list of values")
        opening = self.advance()
        if self.at("RPAREN"):
            raise self.error("empty IN list; expected at least one value")
        values = [self.value(rule)]
        while self.at("COMMA"):
            self.advance()
            if len(values) >= MAX_IN_LIST:
                raise self.error(f"too many values in the list; at most {MAX_IN_LIST}")
            values.append(self.value(rule))
        if not self.at("RPAREN"):
            raise self.expected(
                f"',' or ')' to close the list opened at position {opening.position}",
                after=False,
            )
        self.advance()
        return tuple(values)

    def value(self, rule: Rule) -> Scalar:
        """value := string | number, checked against the identifier's value type."""
        token = self.token
        what = _VALUE_NOUNS[rule.value_type]
        if token.kind == "KEYWORD" and token.value == "NULL":
            raise self.expected(what, "use IS NULL or IS NOT NULL to test for a missing value")
        if token.kind == "WORD" and rule.value_type in ("string", "status"):
            raise self.expected(what, f"quote it: '{_clip(token.text)}'")
        if token.kind not in ("STRING", "NUMBER"):
            raise self.expected(what)
        checkers = {
            "number": self._number_value,
            "integer": self._integer_value,
            "string": self._string_value,
            "experiment_id": self._experiment_id_value,
            "status": self._status_value,
        }
        value = checkers[rule.value_type](token, rule)
        self.advance()
        return value

    def _number_value(self, token: Token, rule: Rule) -> Scalar:
        if token.kind == "STRING":
            if is_number_text(str(token.value).strip()):
                raise self.error(f"{rule.noun} values are numbers; remove the quotes")
            raise self.expected("a number")
        return token.value

    def _integer_value(self, token: Token, rule: Rule) -> Scalar:
        if token.kind == "STRING":
            if _NUMBER.fullmatch(str(token.value).strip()):
                raise self.error(f"{rule.noun} values are integers; remove the quotes")
            raise self.expected("an integer")
        if not isinstance(token.value, int):
            raise self.error(
                f"{rule.noun} values are integers (milliseconds since the epoch) "
                f"but found {_found(token)}"
            )
        if token.value not in _INT64:
            raise self.error(
                f"number out of range; {rule.noun} values are 64-bit integers, "
                f"from {_INT64.start} to {_INT64.stop - 1}"
            )
        return token.value

    def _string_value(self, token: Token, rule: Rule) -> Scalar:
        if token.kind == "NUMBER":
            raise self.error(f"{rule.noun} values are strings; quote the value: '{token.text}'")
        return token.value

    def _experiment_id_value(self, token: Token, rule: Rule) -> Scalar:
        digits = str(token.value) if token.kind == "STRING" else token.text.lstrip("+")
        if not (digits.isascii() and digits.isdigit()):
            raise self.error(
                "experiment_id values are non-negative integers such as '3' or 3, "
                f"but found {_found(token)}"
            )
        return digits.lstrip("0") or "0"

    def _status_value(self, token: Token, rule: Rule) -> Scalar:
        if token.kind != "STRING":
            raise self.expected("a status string")
        status = str(token.value).upper()
        if status not in RUN_STATUSES:
            raise self.error(
                f"unknown status {_found(token)}; expected one of {', '.join(RUN_STATUSES)}"
            )
        return status

    def order_item(self) -> OrderKey:
        """order_item := identifier [ASC | DESC] EOF"""
        ident, _ = self.identifier()
        descending = False
        if self.at_keyword("ASC", "DESC"):
            descending = self.advance().value == "DESC"
        if not self.at("EOF"):
            raise self.expected("ASC, DESC or the end of the item")
        return OrderKey(ident, descending)


_OPS: dict[str, Op] = {op: op for op in STRING_OPS}


def _combine(node: type[And] | type[Or], operands: list[Expr]) -> Expr:
    """One operand as is; several as ``node``, flattening operands of the same type."""
    if len(operands) == 1:
        return operands[0]
    flat: list[Expr] = []
    for operand in operands:
        flat.extend(operand.operands if isinstance(operand, node) else (operand,))
    return node(tuple(flat))


def _plural(noun: str) -> str:
    return noun + "s" if noun in ("metric", "param", "tag", "attribute") else noun


# ----------------------------------------------------------------------------------------------
# Entry points


def parse_filter(text: str, entity: Entity = "run") -> Expr | None:
    """Parses a filter for searching ``entity``; None for empty or whitespace-only text.

    Raises FilterError (and nothing else) for any malformed text, including text over the
    length, nesting, comparison-count and list-length limits.
    """
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(
            f"filter too long ({len(text)} characters); at most {MAX_FILTER_LENGTH}",
            MAX_FILTER_LENGTH,
        )
    return Parser(text, entity).parse_filter()


def parse_order_by(items: Sequence[str], entity: Entity = "run") -> list[OrderKey]:
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
            key = Parser(item, entity, source="item").order_item()
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
