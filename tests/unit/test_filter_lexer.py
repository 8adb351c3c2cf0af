"""Unit tests of the filter lexer: token kinds, source text, positions and values."""

from __future__ import annotations

import math

import pytest
from trackline_server.search.lexer import (
    FilterError,
    Token,
    clip,
    found,
    is_number_text,
    is_numeral,
    tokenize,
)


def lexemes(text: str) -> list[tuple[str, str, int]]:
    """(kind, source text, position) of each token but the final EOF."""
    tokens = tokenize(text)
    assert tokens[-1] == Token("EOF", "", len(text))
    return [(t.kind, t.text, t.position) for t in tokens[:-1]]


def only(text: str) -> Token:
    tokens = tokenize(text)
    assert len(tokens) == 2, tokens
    return tokens[0]


class TestTokens:
    def test_a_whole_filter(self) -> None:
        text = "metrics.`val loss` >= -1.5e3 AND\ttags.x IN ('a', \"b\")"
        assert lexemes(text) == [
            ("IDENT", "metrics.`val loss`", 0),
            ("OP", ">=", 19),
            ("NUMBER", "-1.5e3", 22),
            ("KEYWORD", "AND", 29),
            ("IDENT", "tags.x", 33),
            ("KEYWORD", "IN", 40),
            ("LPAREN", "(", 43),
            ("STRING", "'a'", 44),
            ("COMMA", ",", 47),
            ("STRING", '"b"', 49),
            ("RPAREN", ")", 52),
        ]

    @pytest.mark.parametrize("text", ["", "   ", "\n\t"])
    def test_blank_text_is_only_eof(self, text: str) -> None:
        assert tokenize(text) == [Token("EOF", "", len(text))]

    @pytest.mark.parametrize(
        ("text", "prefix", "key"),
        [
            ("metrics.loss", "metrics", "loss"),
            ("tags.mlflow.runName", "tags", "mlflow.runName"),
            ("Params.a-b/c:d", "Params", "a-b/c:d"),
            ("tags.`a``b`", "tags", "a`b"),
            ('tags."say ""hi"""', "tags", 'say "hi"'),
            ("foo.bar", "foo", "bar"),
        ],
    )
    def test_identifiers_keep_prefix_and_unquoted_key(
        self, text: str, prefix: str, key: str
    ) -> None:
        token = only(text)
        assert (token.kind, token.text, token.prefix, token.value) == ("IDENT", text, prefix, key)

    def test_bare_words_and_backticks(self) -> None:
        assert only("start_time") == Token("WORD", "start_time", 0, "start_time")
        assert only("`val loss`") == Token("BACKTICK", "`val loss`", 0, "val loss")

    @pytest.mark.parametrize("word", ["and", "Or", "iN", "NOT", "is", "null", "LIKE", "ilike"])
    def test_keywords_carry_their_upper_case(self, word: str) -> None:
        assert only(word) == Token("KEYWORD", word, 0, word.upper())

    @pytest.mark.parametrize(
        ("text", "value"),
        [
            ("=", "="),
            ("==", "="),
            ("!=", "!="),
            ("<>", "!="),
            ("<", "<"),
            ("<=", "<="),
            (">=", ">="),
        ],
    )
    def test_operators_are_normalised(self, text: str, value: str) -> None:
        assert only(text) == Token("OP", text, 0, value)

    def test_operators_split_without_spaces(self) -> None:
        assert lexemes("a<=-1") == [("WORD", "a", 0), ("OP", "<=", 1), ("NUMBER", "-1", 3)]

    @pytest.mark.parametrize(
        ("text", "value"),
        [
            ("7", 7),
            ("+7", 7),
            ("-0", 0),
            ("1.", 1.0),
            (".5", 0.5),
            ("2E+10", 2e10),
            ("123456789012345678901234567890", 123456789012345678901234567890),
            ("Infinity", math.inf),
            ("-inf", -math.inf),
        ],
    )
    def test_numbers(self, text: str, value: float) -> None:
        token = only(text)
        assert token.kind == "NUMBER" and token.value == value
        assert type(token.value) is type(value)

    def test_nan(self) -> None:
        for text in ("NaN", "+nan", "-NAN"):
            value = only(text).value
            assert isinstance(value, float) and math.isnan(value)

    @pytest.mark.parametrize(
        ("literal", "value"),
        [("'it''s'", "it's"), ("'a\\'b'", "a'b"), ("'C:\\x'", "C:\\x"), ('"\\\\"', "\\")],
    )
    def test_strings_are_unescaped(self, literal: str, value: str) -> None:
        assert only(literal) == Token("STRING", literal, 0, value)


class TestErrors:
    @pytest.mark.parametrize(
        ("text", "position", "start"),
        [
            ("x = 'abc", 4, "unterminated string"),
            ("tags.`abc", 5, "unterminated quoted key"),
            ("tags.``", 5, "empty key"),
            ("tags.`a\nb`", 7, "quoted keys cannot contain control characters"),
            ("metrics. = 1", 8, "expected a key after 'metrics.'"),
            ("x = 1e", 4, "invalid number '1e'"),
            ("x = -y", 4, "unexpected '-'; expected a number after it"),
            ("x = " + "1" * 5000, 4, "number too long (5000 characters)"),
            ("x ! 1", 2, "unexpected character '!'"),
        ],
    )
    def test_position_and_message(self, text: str, position: int, start: str) -> None:
        with pytest.raises(FilterError) as info:
            tokenize(text)
        assert info.value.position == position
        assert info.value.message.startswith(start), info.value.message

    def test_str_says_where(self) -> None:
        assert str(FilterError("bad", 3, "abc")) == "bad at position 3 (end of filter)"
        assert str(FilterError("bad", 3, "abc", "item")) == "bad at position 3 (end of item)"
        assert str(FilterError("bad", 1, "a\tb")) == "bad at position 1 near ' b'"
        assert str(FilterError("bad", 0)) == "bad at position 0"


class TestHelpers:
    @pytest.mark.parametrize(
        ("text", "numeral", "number"),
        [("1", True, True), ("-1.5e3", True, True), ("NaN", False, True), ("-Inf", False, True)]
        + [("1e", False, False), ("x", False, False), ("", False, False)],
    )
    def test_number_text(self, text: str, numeral: bool, number: bool) -> None:
        assert (is_numeral(text), is_number_text(text)) == (numeral, number)

    def test_clip_keeps_messages_short_and_on_one_line(self) -> None:
        assert clip("a\nb") == "a\\nb"
        assert clip("x" * 50) == "x" * 37 + "..."

    def test_found_describes_tokens(self) -> None:
        string, word, eof = tokenize("'s' w")
        assert (found(eof), found(string), found(word)) == ("the end of filter", "'s'", "'w'")
