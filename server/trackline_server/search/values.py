"""The value types of the filter language: what a comparison's value may be written as, what it
means, and how it is stored.

A value type checks one literal token (a string or a number) and returns the value the syntax
tree holds, or raises ``ValueMismatch``, which the parser turns into a positioned FilterError.
The compiler reads the stored representation from here too (``Enum.stored``,
``DecimalId.stored``), so a schema names a type and both ends agree on it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from .ast import Op, Scalar
from .lexer import Token, found, is_number_text, is_numeral

ORDERED_OPS: tuple[Op, ...] = ("=", "!=", "<", "<=", ">", ">=", "IN", "NOT IN")
TEXT_OPS: tuple[Op, ...] = (
    "=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE", "IN", "NOT IN",
)  # fmt: skip
EQUALITY_OPS: tuple[Op, ...] = ("=", "!=", "IN", "NOT IN")
PATTERN_OPS: tuple[Op, ...] = ("LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE")
NULL_OPS: tuple[Op, ...] = ("IS NULL", "IS NOT NULL")

# The range of a 64-bit integer column (BIGINT on both backends).
_INT64 = range(-(2**63), 2**63)


class ValueMismatch(Exception):
    """A literal that does not fit its value type, raised for the token under the parser.

    With ``expected`` set the parser reports ``expected <expected> after '<previous token>'
    but found <token>[; <hint>]``; otherwise ``message`` as it is.
    """

    def __init__(self, message: str = "", *, expected: str = "", hint: str = "") -> None:
        super().__init__(message or expected)
        self.message = message
        self.expected = expected
        self.hint = hint


@dataclass(frozen=True, slots=True)
class Number:
    """A float or an integer of any size, NaN and infinities included. The column is a float
    column in which NULL stands for NaN, so comparisons follow IEEE 754 (see the compiler)."""

    description: ClassVar[str] = "a number"
    ops: ClassVar[tuple[Op, ...]] = ORDERED_OPS
    strings_only: ClassVar[bool] = False

    def parse(self, token: Token, subject: str) -> Scalar:
        """The number of a NUMBER token; ``subject`` names the compared thing in messages."""
        if token.kind == "STRING":
            if is_number_text(str(token.value).strip()):
                raise ValueMismatch(f"{subject} values are numbers; remove the quotes")
            raise ValueMismatch(expected="a number")
        return token.value


@dataclass(frozen=True, slots=True)
class Int64:
    """A 64-bit integer, e.g. a time in milliseconds; ``unit`` (when given) says what it counts
    in the message for a non-integer number."""

    unit: str = ""
    description: ClassVar[str] = "an integer"
    ops: ClassVar[tuple[Op, ...]] = ORDERED_OPS
    strings_only: ClassVar[bool] = False

    def parse(self, token: Token, subject: str) -> Scalar:
        """The integer of a NUMBER token within the 64-bit range."""
        if token.kind == "STRING":
            if is_numeral(str(token.value).strip()):
                raise ValueMismatch(f"{subject} values are integers; remove the quotes")
            raise ValueMismatch(expected="an integer")
        if not isinstance(token.value, int):
            unit = f" ({self.unit})" if self.unit else ""
            raise ValueMismatch(f"{subject} values are integers{unit} but found {found(token)}")
        if token.value not in _INT64:
            raise ValueMismatch(
                f"number out of range; {subject} values are 64-bit integers, "
                f"from {_INT64.start} to {_INT64.stop - 1}"
            )
        return token.value


@dataclass(frozen=True, slots=True)
class Text:
    """A string, compared by code point on both backends."""

    description: ClassVar[str] = "a string"
    ops: ClassVar[tuple[Op, ...]] = TEXT_OPS
    strings_only: ClassVar[bool] = True

    def parse(self, token: Token, subject: str) -> Scalar:
        """The content of a STRING token."""
        if token.kind == "NUMBER":
            raise ValueMismatch(f"{subject} values are strings; quote the value: '{token.text}'")
        return token.value


@dataclass(frozen=True, slots=True)
class Enum:
    """One of named values, written as a string in any case, e.g. a run status.

    ``members`` maps each upper-case name to what the column stores for it, in the order
    messages list them; ``noun`` (taking the article ``article``) names one in messages. The
    tree holds the upper-case name, the compiler compares ``stored(name)``. With ``patterns``
    the names also match LIKE patterns as strings (MLflow compares a run's status as a
    string): the tree holds the pattern as written, the compiler the members it matches.
    """

    noun: str
    members: Mapping[str, Scalar]
    article: str = "a"
    patterns: bool = False
    strings_only: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError(f"the {self.noun} enum has no members")
        lower = [name for name in self.members if name != name.upper()]
        if lower:
            raise ValueError(f"{self.noun} names must be upper case, not {', '.join(lower)}")

    @property
    def ops(self) -> tuple[Op, ...]:
        """Equality and lists; LIKE and ILIKE too with ``patterns``."""
        if self.patterns:
            return ("=", "!=", *PATTERN_OPS, "IN", "NOT IN")
        return EQUALITY_OPS

    @property
    def description(self) -> str:
        """Completes 'expected ...', e.g. 'a status'."""
        return f"{self.article} {self.noun}"

    def parse(self, token: Token, subject: str) -> Scalar:
        """The upper-case member name a STRING token names (in any case)."""
        if token.kind != "STRING":
            raise ValueMismatch(expected=f"{self.description} string")
        name = str(token.value).upper()
        if name not in self.members:
            raise ValueMismatch(
                f"unknown {self.noun} {found(token)}; expected one of {', '.join(self.members)}"
            )
        return name

    def parse_pattern(self, token: Token) -> Scalar:
        """The LIKE pattern of a STRING token, as written (it may match no member)."""
        if token.kind != "STRING":
            raise ValueMismatch(expected=f"a pattern string to match {self.noun} names against")
        return token.value

    def stored(self, name: Scalar) -> Scalar:
        """What the column stores for the member ``name`` (a name the tree holds)."""
        return self.members[str(name)]

    def matching(self, pattern: str, ignore_case: bool) -> list[Scalar]:
        """What the column stores for the members whose names match the LIKE ``pattern``
        (``%`` any run of characters, ``_`` one, ``\\`` escapes the next), as SQL's LIKE
        (or ILIKE with ``ignore_case``) would match them."""
        regex = like_regex(pattern, ignore_case)
        return [stored for name, stored in self.members.items() if regex.fullmatch(name)]


@dataclass(frozen=True, slots=True)
class DecimalId:
    """A non-negative integer id, written as a number or as a string of ASCII digits with any
    leading zeros. The tree holds the digits without leading zeros; the column holds integers
    up to ``maximum``, so a larger id names no row (``= id`` holds for none, ``!= id`` for all).
    ``description`` completes 'expected ...', e.g. 'an experiment ID'."""

    description: str
    maximum: int
    ops: ClassVar[tuple[Op, ...]] = EQUALITY_OPS
    strings_only: ClassVar[bool] = False

    def parse(self, token: Token, subject: str) -> Scalar:
        """The canonical digits of a STRING or NUMBER token."""
        digits = str(token.value) if token.kind == "STRING" else token.text.lstrip("+")
        if not (digits.isascii() and digits.isdigit()):
            raise ValueMismatch(
                f"{subject} values are non-negative integers such as '3' or 3, "
                f"but found {found(token)}"
            )
        return digits.lstrip("0") or "0"

    def stored(self, digits: str) -> int | None:
        """The integer of canonical ``digits``, or None when no row can hold an id that large."""
        if len(digits) > len(str(self.maximum)) or int(digits) > self.maximum:
            return None
        return int(digits)


ValueType: TypeAlias = Number | Int64 | Text | Enum | DecimalId


def like_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """A regular expression that fully matches what the LIKE ``pattern`` matches, with
    backslash as its escape character (a trailing backslash stands for itself)."""
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        i += 1
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))
