"""MLflow's spellings of the filter language: backticked prefixes and attribute names, MLflow's
attribute names, its system tags as key aliases, dataset inputs, status patterns; and the
errors they keep when malformed."""

from __future__ import annotations

import pytest
from trackline_server.search import Expr, FilterError, parse_filter, parse_order_by, to_text
from trackline_server.search.lexer import Token, tokenize
from trackline_server.search.values import like_regex
from trackline_server.tracking.search_schema import EXPERIMENTS, RUN_STATUS, RUNS

from tests.support.filter_trees import AND, OR, a, cmp, failure, m, norm, p, parsed, t


def d(field: str, op: str, value: object = None) -> object:
    return cmp("dataset", field, op, value)  # type: ignore[arg-type]


class TestLexer:
    @pytest.mark.parametrize(
        ("text", "prefix", "key"),
        [
            ("`metric`.a", "metric", "a"),
            ("`tags`.source_name", "tags", "source_name"),
            ("`params`.`val loss`", "params", "val loss"),
            ('`attributes`."Run name"', "attributes", "Run name"),
            ("`a``b`.c", "a`b", "c"),
        ],
    )
    def test_a_backticked_prefix_makes_one_identifier(
        self, text: str, prefix: str, key: str
    ) -> None:
        tokens = tokenize(text + " = 1")
        assert tokens[0] == Token("IDENT", text, 0, key, prefix)
        assert tokens[1].position == len(text) + 1

    def test_a_backticked_word_without_a_dot_stays_a_name(self) -> None:
        assert tokenize("`Run Name` = 'x'")[0] == Token("BACKTICK", "`Run Name`", 0, "Run Name")
        assert [t.kind for t in tokenize("`metrics` = 1")] == ["BACKTICK", "OP", "NUMBER", "EOF"]

    def test_a_backticked_prefix_needs_a_key(self) -> None:
        with pytest.raises(FilterError) as info:
            tokenize("`metrics`. = 1")
        assert info.value.position == 10
        assert info.value.message.startswith("expected a key after '`metrics`.'")


class TestLikeRegex:
    @pytest.mark.parametrize(
        ("pattern", "ignore_case", "matches", "misses"),
        [
            ("FAIL%", False, ["FAILED", "FAIL"], ["fail", "XFAIL"]),
            ("fail%", True, ["FAILED"], ["KILLED"]),
            ("_UNNING", False, ["RUNNING"], ["UNNING"]),
            ("%ED", False, ["FAILED", "KILLED"], ["RUNNING"]),
            ("a\\%", False, ["a%"], ["ab"]),
            ("a\\_b", False, ["a_b"], ["axb"]),
            ("a\\", False, ["a\\"], ["a"]),
            ("x.*", False, ["x.*"], ["xyz"]),
        ],
    )
    def test_matches_as_sql_like(
        self, pattern: str, ignore_case: bool, matches: list[str], misses: list[str]
    ) -> None:
        regex = like_regex(pattern, ignore_case)
        assert all(regex.fullmatch(s) for s in matches)
        assert not any(regex.fullmatch(s) for s in misses)

    def test_status_patterns_pick_members(self) -> None:
        names = ("SCHEDULED", "FINISHED", "FAILED", "KILLED")
        scheduled, finished, failed, killed = (RUN_STATUS.stored(n) for n in names)
        assert RUN_STATUS.matching("F%", ignore_case=False) == [finished, failed]
        assert RUN_STATUS.matching("%ed", ignore_case=True) == [scheduled, finished, failed, killed]
        assert RUN_STATUS.matching("f%", ignore_case=False) == []


class TestSpellings:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            # backticked prefixes, any of MLflow's prefix words
            ("`metric`.a >= 0.1", m("a", ">=", 0.1)),
            ("`metrics`.`val loss` < 1", m("val loss", "<", 1)),
            ("`tags`.source_name = 'a notebook'", t("source_name", "=", "a notebook")),
            ("`tag`.x = 'y'", t("x", "=", "y")),
            ("`params`.model = 'LR'", p("model", "=", "LR")),
            ("`parameter`.model != 'LR'", p("model", "!=", "LR")),
            ("`attributes`.status = 'FAILED'", a("status", "=", "FAILED")),
            ("`attr`.start_time > 5", a("start_time", ">", 5)),
            ("`run`.run_id = 'r'", a("run_id", "=", "r")),
            ("`Metrics`.a = 1", m("a", "=", 1)),
            # attribute names as MLflow writes them
            ("attributes.`Run name` = 'x'", a("run_name", "=", "x")),
            ("attributes.\"run name\" = 'x'", a("run_name", "=", "x")),
            ("`run name` = 'x'", a("run_name", "=", "x")),
            ("`Run Name` = 'x'", a("run_name", "=", "x")),
            ("`Run name` LIKE 'x%'", a("run_name", "LIKE", "x%")),
            ("run_name = 'x'", a("run_name", "=", "x")),
            ("`run_name` = 'x'", a("run_name", "=", "x")),
            ("attribute.run_id = 'r'", a("run_id", "=", "r")),
            ("attributes.run_id = 'r'", a("run_id", "=", "r")),
            ("run_uuid IN ('r', 's')", a("run_id", "IN", ["r", "s"])),
            ("`Created` > 1", a("start_time", ">", 1)),
            ("attributes.user_id = 'ana'", a("user_id", "=", "ana")),
            ("user_id LIKE 'a%'", a("user_id", "LIKE", "a%")),
            # status as a string
            ("attributes.status LIKE 'FAIL%'", a("status", "LIKE", "FAIL%")),
            ("status ILIKE 'fail%'", a("status", "ILIKE", "fail%")),
            ("status NOT LIKE '%ED'", a("status", "NOT LIKE", "%ED")),
            ("status LIKE 'nothing'", a("status", "LIKE", "nothing")),
            ("status != 'finished'", a("status", "!=", "FINISHED")),
            # MLflow's system tags
            ("tags.mlflow.runName = 'x'", a("run_name", "=", "x")),
            ("tags.\"mlflow.runName\" LIKE 'x%'", a("run_name", "LIKE", "x%")),
            ("tags.`mlflow.runName` = 'x'", a("run_name", "=", "x")),
            ("`tags`.mlflow.user = 'ana'", a("user_id", "=", "ana")),
            ("tags.mlflow.parentRunId IS NULL", a("parent_run_id", "IS NULL")),
            ("tags.mlflow.parentRunId = 'r'", a("parent_run_id", "=", "r")),
            ("tags.mlflow.source.name = 'a.py'", t("trackline.source.name", "=", "a.py")),
            ("tag.mlflow.source.type = 'LOCAL'", t("trackline.source.type", "=", "LOCAL")),
            ("tags.mlflow.source.git.commit IS NULL", t("trackline.source.git.commit", "IS NULL")),
            (
                "tags.mlflow.source.git.branch = 'main'",
                t("trackline.source.git.branch", "=", "main"),
            ),
            ("tags.mlflow.runname = 'x'", t("mlflow.runname", "=", "x")),  # keys keep their case
            ("tags.mlflow.note.content = 'x'", t("mlflow.note.content", "=", "x")),
            ("params.mlflow.runName = 'x'", p("mlflow.runName", "=", "x")),  # tags only
            # dataset inputs
            ("datasets.name IN ('a', 'b')", d("name", "IN", ["a", "b"])),
            ("dataset.name = 'a'", d("name", "=", "a")),
            ("datasets.digest = 'd1'", d("digest", "=", "d1")),
            ("datasets.context = 'train'", d("context", "=", "train")),
            ("`datasets`.`Name` != 'a'", d("name", "!=", "a")),
            ("DATASETS.name LIKE 'ima%'", d("name", "LIKE", "ima%")),
            ("datasets.digest NOT IN ('d1')", d("digest", "NOT IN", ["d1"])),
            (
                "datasets.name = 'a' AND (datasets.context = 'eval' OR tags.mlflow.user = 'u')",
                AND(d("name", "=", "a"), OR(d("context", "=", "eval"), a("user_id", "=", "u"))),
            ),
        ],
    )
    def test_runs(self, text: str, expected: Expr) -> None:
        assert parsed(text) == norm(expected)
        assert parsed(to_text(parsed_tree(text))) == norm(expected)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("`tags`.team = 'cv'", t("team", "=", "cv")),
            ("`tag`.`team name` = 'cv'", t("team name", "=", "cv")),
            ("`attribute`.name LIKE 'v%'", a("name", "LIKE", "v%")),
            ("attributes.`name` = 'v'", a("name", "=", "v")),
            ("`name` ILIKE 'V%'", a("name", "ILIKE", "V%")),
            ("`creation_time` > 1", a("creation_time", ">", 1)),
            ("tags.mlflow.runName = 'x'", t("mlflow.runName", "=", "x")),  # no aliases here
        ],
    )
    def test_experiments(self, text: str, expected: Expr) -> None:
        assert parsed(text, EXPERIMENTS) == norm(expected)


def parsed_tree(text: str) -> Expr:
    tree = parse_filter(text, RUNS)
    assert tree is not None
    return tree


class TestErrors:
    @pytest.mark.parametrize(
        ("text", "position", "fragment"),
        [
            ("`foo`.x = 1", 0, "unknown prefix 'foo.'; expected metrics.<key>"),
            ("`metrics.a` > 1", 0, "a quoted key needs a prefix, e.g. tags.`metrics.a`"),
            ("`metrics.a > 1", 0, "unterminated quoted key"),
            ("metrics`.a > 1", 7, "unterminated quoted key"),
            ("`run  name` = 'x'", 0, "a quoted key needs a prefix"),
            ("attributes.`Run` = 'x'", 0, "unknown run attribute 'Run'"),
            ("attributes.lifecycle_stage = 'active'", 0, "unknown run attribute 'lifecycle_stage'"),
            ("status = 'blah'", 9, "unknown status 'blah'; expected one of RUNNING"),
            ("attribute.status != 'blah'", 20, "unknown status 'blah'"),
            ("status LIKE 5", 12, "expected a pattern string to match status names against"),
            ("status < 'R'", 7, "< is not supported for status"),
            ("user_id IS NULL", 8, "IS NULL is not supported for user_id"),
            (
                "tags.mlflow.user IS NULL",
                17,
                "IS NULL is not supported for user_id "
                "(tags.mlflow.user stands for attributes.`user_id`)",
            ),
            ("tags.mlflow.runName = 5", 22, "run_name values are strings; quote the value"),
            ("datasets.foo = 'x'", 0, "unknown field 'foo' of datasets; expected datasets.name"),
            ("datasets.name = 1", 16, "datasets.name values are strings"),
            ("datasets.name IS NULL", 14, "IS NULL is not supported for datasets.name"),
            ("datasets.name = 'a' OR datasets.x = 'b'", 23, "unknown field 'x' of datasets"),
            ("datasets = 'a'", 0, "unknown identifier 'datasets'"),
        ],
    )
    def test_runs(self, text: str, position: int, fragment: str) -> None:
        err = failure(text)
        assert (err.position, fragment in err.message) == (position, True), err.message

    @pytest.mark.parametrize(
        ("text", "position", "fragment"),
        [
            ("datasets.name = 'a'", 0, "datasets are not available when searching experiments"),
            ("`metrics`.a > 1", 0, "metrics are not available when searching experiments"),
            ("`run_name` = 'a'", 0, "a quoted key needs a prefix"),
        ],
    )
    def test_experiments(self, text: str, position: int, fragment: str) -> None:
        err = failure(text, EXPERIMENTS)
        assert (err.position, fragment in err.message) == (position, True), err.message


class TestOrderBy:
    def test_aliases_and_spellings_sort_on_what_they_name(self) -> None:
        keys = parse_order_by(
            ["tags.mlflow.runName DESC", "`Created`", "tags.mlflow.source.name", "`metric`.a"],
            RUNS,
        )
        assert [(k.ident.kind, k.ident.key, k.descending) for k in keys] == [
            ("attribute", "run_name", True),
            ("attribute", "start_time", False),
            ("tag", "trackline.source.name", False),
            ("metric", "a", False),
        ]

    def test_an_alias_and_its_target_are_one_sort_key(self) -> None:
        with pytest.raises(FilterError) as info:
            parse_order_by(["user_id", "tags.mlflow.user DESC"], RUNS)
        assert "is already sorted on by order_by[0]" in info.value.message

    def test_datasets_cannot_be_sorted_on(self) -> None:
        with pytest.raises(FilterError) as info:
            parse_order_by(["datasets.name"], RUNS)
        assert info.value.message == (
            "order_by[0]: cannot sort on datasets.name: a run may have many datasets"
        )
        assert info.value.position == 0
