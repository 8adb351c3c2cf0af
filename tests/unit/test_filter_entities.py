"""The run and experiment schemas of tracking: which attributes, kinds, operators and values
a filter may use when searching each."""

from __future__ import annotations

import pytest
from trackline_server.search import Expr
from trackline_server.tracking.search_schema import EXPERIMENTS

from tests.support.filter_trees import AND, a, failure, m, norm, p, parsed, t

# ----------------------------------------------------------------------------------------------
# Type rules per kind of identifier and entity


class TestRunRules:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("metrics.m IS NULL", m("m", "IS NULL")),
            ("metrics.m NOT IN (1)", m("m", "NOT IN", [1])),
            ("params.p < 'b'", p("p", "<", "b")),
            ("tags.t >= 'b'", t("t", ">=", "b")),
            ("end_time IS NOT NULL", a("end_time", "IS NOT NULL")),
            ("parent_run_id IS NULL", a("parent_run_id", "IS NULL")),
            ("artifact_uri NOT LIKE 's3://%'", a("artifact_uri", "NOT LIKE", "s3://%")),
            ("start_time IN (1, 2)", a("start_time", "IN", [1, 2])),
            ("end_time < -5", a("end_time", "<", -5)),
            ("status = 'finished'", a("status", "=", "FINISHED")),
            ("status NOT IN ('Running', \"killed\")", a("status", "NOT IN", ["RUNNING", "KILLED"])),
            ("experiment_id = 3", a("experiment_id", "=", "3")),
            ("experiment_id = '007'", a("experiment_id", "=", "7")),
            ("experiment_id = 0", a("experiment_id", "=", "0")),
            ("experiment_id IN (1, '2', 0003)", a("experiment_id", "IN", ["1", "2", "3"])),
            ("experiment_id != '000'", a("experiment_id", "!=", "0")),
        ],
    )
    def test_valid(self, text: str, expected: Expr) -> None:
        assert parsed(text) == norm(expected)


class TestExperimentRules:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("name LIKE 'vision%'", a("name", "LIKE", "vision%")),
            ("attributes.name = 'x'", a("name", "=", "x")),
            ("created > 5", a("creation_time", ">", 5)),
            ("creation_time <= 5", a("creation_time", "<=", 5)),
            ("last_update_time IN (1, 2)", a("last_update_time", "IN", [1, 2])),
            ("artifact_location ILIKE '%x%'", a("artifact_location", "ILIKE", "%x%")),
            ("experiment_id IN ('1', 2)", a("experiment_id", "IN", ["1", "2"])),
            ("tags.team = 'cv'", t("team", "=", "cv")),
            (
                "name LIKE 'vision%' AND tags.team = 'cv'",
                AND(a("name", "LIKE", "vision%"), t("team", "=", "cv")),
            ),
        ],
    )
    def test_valid(self, text: str, expected: Expr) -> None:
        assert parsed(text, EXPERIMENTS) == norm(expected)

    @pytest.mark.parametrize(
        ("text", "position", "fragment"),
        [
            ("metrics.loss < 1", 0, "metrics are not available when searching experiments"),
            ("tags.a = 'x' or params.p = 'x'", 16, "params are not available"),
            ("run_name = 'x'", 0, "unknown identifier 'run_name'; expected tags.<key>, attri"),
            ("status = 'RUNNING'", 0, "one of experiment_id, name, creation_time"),
            ("attributes.start_time = 1", 0, "unknown experiment attribute 'start_time'"),
            ("creation_time IS NULL", 14, "IS NULL is not supported for creation_time"),
            ("name IS NULL", 5, "IS NULL is not supported for name"),
            ("name = 5", 7, "name values are strings; quote the value: '5'"),
        ],
    )
    def test_errors(self, text: str, position: int, fragment: str) -> None:
        err = failure(text, EXPERIMENTS)
        assert err.position == position
        assert fragment in err.message
