"""Malformed filters: the position and message of each error, and the parser's limits."""

from __future__ import annotations

import pytest

from tests.support.filter_trees import failure, m, norm, parsed, t

# ----------------------------------------------------------------------------------------------
# Errors: position and message


ERRORS: list[tuple[str, int, str]] = [
    # lists
    ("tags.x IN ()", 11, "empty IN list; expected at least one value"),
    ("tags.x NOT IN ( )", 16, "empty IN list"),
    ("tags.x IN ('a',)", 15, "expected a string after ',' but found ')'"),
    ("metrics.a IN (1 2)", 16, "expected ',' or ')' to close the list opened at position 13"),
    ("metrics.a IN (1", 15, "expected ',' or ')'"),
    ("metrics.a IN 1", 13, "expected '(' to start a list of values after 'IN'"),
    # strings and keys
    ("tags.x = 'abc", 9, "unterminated string"),
    ('tags.x = "abc', 9, "unterminated string"),
    ("tags.x = 'it''s", 9, "unterminated string"),
    ("tags.x = 'ends with \\'", 9, "unterminated string"),
    ("tags.`abc = 'x'", 5, "unterminated quoted key"),
    ("metrics. = 1", 8, "expected a key after 'metrics.'"),
    ("metrics.", 8, "expected a key after 'metrics.'"),
    ("metrics.`` = 1", 8, "empty key"),
    ('metrics."" = 1', 8, "empty key"),
    ("tags.`a\tb` = 'x'", 7, "quoted keys cannot contain control characters"),
    ("tags.チーム = 'x'", 5, "expected a key after 'tags.'"),
    ("`val loss` < 1", 0, "a quoted key needs a prefix, e.g. tags.`val loss`"),
    # identifiers
    (
        "loss < 1",
        0,
        "unknown identifier 'loss'; expected metrics.<key>, params.<key>, tags.<key>, "
        "attributes.<name> or one of run_id, run_name, status, start_time",
    ),
    ("attributes.foo = 'x'", 0, "unknown run attribute 'foo'; expected one of run_id, run_name"),
    ("foo.bar = 'x'", 0, "unknown prefix 'foo.'; expected metrics.<key>"),
    ("チーム = 'x'", 0, "unexpected character 'チ'"),
    # operators
    (
        "params.optimizer adam",
        17,
        "expected a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN, IS NULL)"
        " but found 'adam'",
    ),
    ("params.optimizer", 16, "expected a comparison operator"),
    ("metrics.a NOT = 1", 14, "expected LIKE, ILIKE or IN after 'NOT' but found '='"),
    ("metrics.a IS NOT 1", 17, "expected NULL after 'NOT' but found '1'"),
    ("metrics.a IS", 12, "expected NULL after 'IS'"),
    ("metrics.a ! 1", 10, "unexpected character '!'"),
    # AND / OR
    ("metrics.a = 1 AND", 17, "expected a comparison such as metrics.loss < 1 after 'AND'"),
    ("metrics.a = 1 or", 16, "expected a comparison"),
    ("AND metrics.a = 1", 0, "unexpected 'AND'"),
    ("metrics.a = 1 AND OR metrics.b = 2", 18, "unexpected 'OR' after 'AND'"),
    ("metrics.a = 1 metrics.b = 2", 14, "expected AND, OR or the end of filter"),
    ("metrics.a = 1 # comment", 14, "unexpected character '#'"),
    ("NOT metrics.a = 1", 0, "unexpected 'NOT'"),
    # parentheses
    ("(metrics.a = 1", 14, "expected ')' to close the '(' opened at position 0"),
    ("((metrics.a = 1)", 16, "expected ')' to close the '(' opened at position 0"),
    (
        "(metrics.a = 1 metrics.b = 2",
        15,
        "expected ')' to close the '(' opened at position 0, or AND/OR",
    ),
    ("metrics.a = 1)", 13, "unexpected ')' with no matching '('"),
    ("(metrics.a = 1))", 15, "unexpected ')' with no matching '('"),
    (")", 0, "unexpected ')' with no matching '('"),
    ("()", 1, "unexpected ')' after '('"),
    ("(", 1, "expected a comparison"),
    # value types
    ("metrics.loss < ", 15, "expected a number after '<'"),
    ("params.lr = 0.01", 12, "param values are strings; quote the value: '0.01'"),
    ("tags.x = 5", 9, "tag values are strings; quote the value: '5'"),
    ("params.p IN ('a', 1)", 18, "param values are strings; quote the value: '1'"),
    ("run_name = 1e3", 11, "run_name values are strings; quote the value: '1e3'"),
    ("params.a = adam", 11, "expected a string after '=' but found 'adam'; quote it: 'adam'"),
    ("metrics.a = '1.5'", 12, "metric values are numbers; remove the quotes"),
    ("metrics.a = 'NaN'", 12, "metric values are numbers; remove the quotes"),
    ("metrics.a = 'abc'", 12, "expected a number after '=' but found 'abc'"),
    ("metrics.a = abc", 12, "expected a number after '=' but found 'abc'"),
    ("metrics.a IN (1, 'x')", 17, "expected a number after ','"),
    ("metrics.a = NULL", 12, "use IS NULL or IS NOT NULL"),
    ("metrics.a LIKE '%x'", 10, "LIKE is not supported for metrics; expected one of =, !="),
    ("metrics.a NOT ILIKE '%x'", 10, "NOT ILIKE is not supported for metrics"),
    ("start_time > 1.5", 13, "start_time values are integers"),
    ("end_time = NaN", 11, "end_time values are integers"),
    ("start_time = '5'", 13, "start_time values are integers; remove the quotes"),
    ("start_time = 'x'", 13, "expected an integer"),
    ("start_time LIKE 'x'", 11, "LIKE is not supported for start_time"),
    ("start_time IS NULL", 11, "IS NULL is not supported for start_time"),
    ("run_name IS NULL", 9, "IS NULL is not supported for run_name"),
    ("status = 'DONE'", 9, "unknown status 'DONE'; expected one of RUNNING, SCHEDULED, FINISHED"),
    ("status IN ('RUNNING', 'x')", 22, "unknown status 'x'"),
    ("status = 1", 9, "expected a status string after '=' but found '1'"),
    ("status = running", 9, "quote it: 'running'"),
    ("status < 'R'", 7, "< is not supported for status"),
    ("status IS NULL", 7, "IS NULL is not supported for status"),
    ("experiment_id > 3", 14, "> is not supported for experiment_id"),
    ("experiment_id = 1.5", 16, "experiment_id values are non-negative integers"),
    ("experiment_id = -1", 16, "experiment_id values are non-negative integers"),
    ("experiment_id = 'abc'", 16, "experiment_id values are non-negative integers"),
    ("experiment_id = '٣'", 16, "experiment_id values are non-negative integers"),
    # numbers
    ("metrics.a = 1e", 12, "invalid number '1e'"),
    ("metrics.a = 1.2.3", 12, "invalid number '1.2.3'"),
    ("metrics.a = 12abc", 12, "invalid number '12abc'"),
    ("metrics.a = -x", 12, "unexpected '-'"),
    ("metrics.a = - 1", 12, "unexpected character '-'"),
    ("metrics.a = " + "1" * 5000, 12, "number too long"),
]


class TestErrors:
    @pytest.mark.parametrize(("text", "position", "fragment"), ERRORS)
    def test_error(self, text: str, position: int, fragment: str) -> None:
        err = failure(text)
        assert err.position == position, str(err)
        assert fragment in err.message, str(err)

    def test_str_at_end_of_filter(self) -> None:
        err = failure("metrics.loss < ")
        assert err.message == "expected a number after '<'"
        assert str(err) == "expected a number after '<' at position 15 (end of filter)"

    def test_str_near_text(self) -> None:
        err = failure("params.optimizer adam and metrics.loss < 1")
        assert str(err) == f"{err.message} at position 17 near 'adam and metrics.los'"

    def test_str_near_replaces_unprintable_characters(self) -> None:
        err = failure("metrics.a = 1 #\n")
        assert str(err).endswith("at position 14 near '# '")

    def test_message_is_one_line_without_position(self) -> None:
        for text, _, _ in ERRORS:
            err = failure(text)
            assert "\n" not in err.message
            assert not err.message.endswith(f" at position {err.position}")

    def test_found_text_is_kept_on_one_line(self) -> None:
        err = failure("metrics.a = 'two\nlines'")
        assert err.message == "expected a number after '=' but found 'two\\nlines'"


class TestLimits:
    def test_too_deep_nesting(self) -> None:
        err = failure("(" * 100 + "metrics.a=1" + ")" * 100)
        assert err.position == 64
        assert "too deeply nested" in err.message

    def test_nesting_up_to_the_limit(self) -> None:
        assert parsed("(" * 64 + "metrics.a=1" + ")" * 64) == norm(m("a", "=", 1))

    def test_deepest_possible_text_is_not_a_recursion_error(self) -> None:
        err = failure("(" * 65536)
        assert err.position == 64

    def test_too_long_text(self) -> None:
        text = "tags.t = '" + "x" * 65536 + "'"
        err = failure(text)
        assert err.position == 65536
        assert "too long" in err.message

    def test_longest_text(self) -> None:
        text = "tags.t = '" + "x" * (65536 - 11) + "'"
        assert len(text) == 65536
        assert parsed(text) == norm(t("t", "=", "x" * (65536 - 11)))

    def test_too_many_comparisons(self) -> None:
        assert len(parsed(" or ".join(["metrics.a = 1"] * 1000)).operands) == 1000
        err = failure(" or ".join(["metrics.a = 1"] * 1001))
        assert err.position == 1000 * len("metrics.a = 1 or ")
        assert "too many comparisons" in err.message

    def test_too_many_in_values(self) -> None:
        assert len(parsed("metrics.a IN (" + ",".join(["1"] * 10000) + ")").value) == 10000
        err = failure("metrics.a IN (" + ",".join(["1"] * 10001) + ")")
        assert err.position == len("metrics.a IN (") + 2 * 10000
        assert "too many values" in err.message
