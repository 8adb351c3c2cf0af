"""The tokens of the search filter language, and the one error every malformed filter raises.

The lexer knows the language's lexemes only (keywords, operators, literals, ``prefix.key``
identifiers, whose prefix may be backticked as MLflow allows, as in `metrics`.loss); which
prefixes and attributes exist is the entity schema's business.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

_NEAR_LENGTH = 20


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


TokenKind = Literal[
    "IDENT",  # prefix.key; value is the key, prefix the word (or `word`) before the dot
    "WORD",  # a bare word that is not a keyword, e.g. an attribute name
    "KEYWORD",  # AND OR IN NOT IS NULL LIKE ILIKE ASC DESC; value is upper case
    "NUMBER",  # value is an int or a float
    "STRING",  # '...' or "..."; value is the unescaped content
    "BACKTICK",  # `...` not followed by a dot: an attribute name such as `Run Name`
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


def is_numeral(text: str) -> bool:
    """Whether ``text`` is a decimal number literal such as ``-1``, ``.5`` or ``2E+10``."""
    return bool(_NUMBER.fullmatch(text))


def is_number_text(text: str) -> bool:
    """Whether ``text`` is a number literal of the language (including NaN and Infinity)."""
    unsigned = text[1:] if text[:1] in ("+", "-") else text
    return is_numeral(text) or unsigned.lower() in _SPECIAL_FLOATS


def clip(text: str) -> str:
    """Shortens quoted source text for a message and keeps the message on one line."""
    text = text if len(text) <= 40 else text[:37] + "..."
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def found(token: Token) -> str:
    """Describes a token for 'but found ...' in messages."""
    if token.kind == "EOF":
        return "the end of filter"
    if token.kind == "STRING":
        return clip(token.text)
    return f"'{clip(token.text)}'"


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
        if text[pos + length : pos + length + 1] == ".":
            return _read_identifier(text, pos, value, length)
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
        return _read_identifier(text, pos, word.group(), len(word.group()))
    upper = word.group().upper()
    if upper in KEYWORDS:
        return Token("KEYWORD", word.group(), pos, upper)
    if word.group().lower() in _SPECIAL_FLOATS:
        return Token("NUMBER", word.group(), pos, _SPECIAL_FLOATS[word.group().lower()])
    return Token("WORD", word.group(), pos, word.group())


def _read_identifier(text: str, pos: int, prefix: str, prefix_length: int) -> Token:
    """Reads ``prefix.key`` where the key is unquoted, `backticked` or "double-quoted";
    ``prefix_length`` is the length of the prefix's source text (longer than ``prefix`` when
    it is backticked)."""
    key_pos = pos + prefix_length + 1
    if key_pos < len(text) and text[key_pos] in '`"':
        key, length = _read_quoted_key(text, key_pos)
        key_end = key_pos + length
    else:
        match = _UNQUOTED_KEY.match(text, key_pos)
        if match is None:
            written = text[pos : key_pos - 1]
            raise FilterError(
                f"expected a key after '{clip(written)}.', e.g. {clip(written)}.loss or "
                f"{clip(written)}.`my key`",
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
        raise FilterError(f"invalid number '{clip(bad.group())}'", pos, text)
    try:
        parsed = float(number) if any(c in number for c in ".eE") else int(number)
    except ValueError:  # more digits than int() accepts
        raise FilterError(f"number too long ({len(number)} characters)", pos, text) from None
    return Token("NUMBER", number, pos, parsed)
