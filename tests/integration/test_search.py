"""SearchRuns and SearchExperiments against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from trackline import InvalidArgument, TracklineClient
from trackline.v1 import resources_pb2 as pb


@dataclass
class World:
    """Two experiments with runs whose data exercises every operator."""

    vision: str
    nlp: str
    runs: dict[str, str]  # run name -> run id


def _run(
    client: TracklineClient,
    exp: str,
    name: str,
    start: int,
    metrics: dict[str, float],
    params: dict[str, str],
    tags: dict[str, str],
) -> str:
    run = client.create_run(exp, run_name=name, start_time=start)
    series = [
        pb.MetricSeries(key=k, steps=[0], timestamps=[start], values=[v])
        for k, v in metrics.items()
    ]
    client.log_batch(run.run_id, metrics=series, params=params, tags=tags)
    return run.run_id


@pytest.fixture
def world(client: TracklineClient) -> World:
    vision = client.create_experiment("vision", tags={"team": "cv"}).experiment_id
    nlp = client.create_experiment("nlp", tags={"team": "text"}).experiment_id
    runs = {
        "resnet": _run(
            client,
            vision,
            "resnet",
            1000,
            {"loss": 0.25, "acc": 0.91},
            {"optimizer": "adam", "lr": "0.01"},
            {"team": "vision-core", "owner": "ana"},
        ),
        "vit": _run(
            client,
            vision,
            "vit",
            2000,
            {"loss": 0.4, "acc": 0.88},
            {"optimizer": "sgd", "lr": "0.1"},
            {"team": "Vision-research"},
        ),
        "nan": _run(
            client,
            vision,
            "nan-run",
            3000,
            {"loss": math.nan, "acc": math.inf},
            {"optimizer": "adam"},
            {},
        ),
        "bert": _run(
            client,
            nlp,
            "bert",
            4000,
            {"loss": 0.1, "val acc": 0.95, "損失": 0.5},
            {"optimizer": "adam", "model.size": "base"},
            {"team": "nlp", "データ": "日本語"},
        ),
        "bare": _run(client, nlp, "bare", 5000, {}, {}, {}),
    }
    client.update_run(runs["resnet"], status=pb.RUN_STATUS_FINISHED, end_time=1500)
    client.update_run(runs["bert"], status=pb.RUN_STATUS_FAILED, end_time=4500)
    return World(vision, nlp, runs)


def names(client: TracklineClient, world: World, filter: str, **kw: object) -> list[str]:
    by_id = {v: k for k, v in world.runs.items()}
    found = client.search_runs([world.vision, world.nlp], filter, **kw)  # type: ignore[arg-type]
    return [by_id[r.run_id] for r in found]


def name_set(client: TracklineClient, world: World, filter: str) -> set[str]:
    return set(names(client, world, filter))


class TestFilters:
    def test_empty_filter_returns_all_newest_first(
        self, client: TracklineClient, world: World
    ) -> None:
        assert names(client, world, "") == ["bare", "bert", "nan", "vit", "resnet"]

    def test_and_of_metric_param_tag(self, client: TracklineClient, world: World) -> None:
        f = "metrics.loss < 0.3 and params.optimizer = 'adam' and tags.team LIKE 'vision%'"
        assert name_set(client, world, f) == {"resnet"}

    def test_or_with_parentheses(self, client: TracklineClient, world: World) -> None:
        f = "(metrics.acc >= 0.9 OR metrics.`val acc` > 0.9) AND params.optimizer = 'adam'"
        assert name_set(client, world, f) == {"resnet", "nan", "bert"}
        assert name_set(client, world, "params.lr = '0.1' or tags.team = 'nlp'") == {"vit", "bert"}

    def test_like_is_case_sensitive_and_ilike_is_not(
        self, client: TracklineClient, world: World
    ) -> None:
        assert name_set(client, world, "tags.team LIKE 'vision%'") == {"resnet"}
        assert name_set(client, world, "tags.team ILIKE 'vision%'") == {"resnet", "vit"}
        assert name_set(client, world, "tags.team NOT LIKE '%vision%'") == {"vit", "bert"}

    def test_in_and_not_in(self, client: TracklineClient, world: World) -> None:
        ids = f"'{world.runs['vit']}', '{world.runs['bare']}'"
        assert name_set(client, world, f"attributes.run_id IN ({ids})") == {"vit", "bare"}
        assert name_set(client, world, "params.optimizer NOT IN ('adam')") == {"vit"}
        assert name_set(client, world, "metrics.loss IN (0.1, 0.4)") == {"bert", "vit"}

    def test_is_null_means_key_absent(self, client: TracklineClient, world: World) -> None:
        assert name_set(client, world, "tags.owner IS NOT NULL") == {"resnet"}
        assert name_set(client, world, "metrics.loss IS NULL") == {"bare"}
        assert name_set(client, world, "end_time IS NULL") == {"vit", "nan", "bare"}

    def test_attributes(self, client: TracklineClient, world: World) -> None:
        assert name_set(client, world, "attributes.status = 'finished'") == {"resnet"}
        assert name_set(client, world, "status IN ('FAILED', 'FINISHED')") == {"resnet", "bert"}
        assert name_set(client, world, "start_time >= 3000 and start_time < 5000") == {
            "nan",
            "bert",
        }
        assert name_set(client, world, "run_name ILIKE '%ER%'") == {"bert"}
        assert name_set(client, world, f"experiment_id = {world.nlp}") == {"bert", "bare"}

    def test_nan_and_infinity_follow_ieee(self, client: TracklineClient, world: World) -> None:
        assert name_set(client, world, "metrics.acc = Infinity") == {"nan"}
        assert name_set(client, world, "metrics.acc > 1e308") == {"nan"}
        assert name_set(client, world, "metrics.loss = NaN") == {"nan"}
        # NaN is unequal to everything and not below or above anything.
        assert "nan" in name_set(client, world, "metrics.loss != 0.25")
        assert "nan" not in name_set(client, world, "metrics.loss < 100")
        assert "nan" not in name_set(client, world, "metrics.loss >= -Infinity")

    def test_unicode_and_backticked_keys(self, client: TracklineClient, world: World) -> None:
        assert name_set(client, world, "metrics.`損失` = 0.5") == {"bert"}
        assert name_set(client, world, "tags.`データ` = '日本語'") == {"bert"}
        assert name_set(client, world, "params.\"model.size\" = 'base'") == {"bert"}
        assert name_set(client, world, "params.model.size = 'base'") == {"bert"}

    def test_like_escapes_wildcards(self, client: TracklineClient, world: World) -> None:
        run = _run(client, world.nlp, "pct", 6000, {}, {}, {"note": "100%_done"})
        found = client.search_runs([world.nlp], r"tags.note LIKE '100\%\_done'")
        assert [r.run_id for r in found] == [run]
        assert list(client.search_runs([world.nlp], r"tags.note LIKE '100\%x'")) == []


class TestScope:
    def test_searches_span_experiments(self, client: TracklineClient, world: World) -> None:
        assert {r.run_name for r in client.search_runs([world.nlp])} == {"bert", "bare"}
        everywhere = {r.run_id for r in client.search_runs(None, "params.optimizer = 'adam'")}
        assert everywhere == {world.runs[n] for n in ("resnet", "nan", "bert")}

    def test_view_types(self, client: TracklineClient, world: World) -> None:
        client.delete_run(world.runs["vit"])
        assert "vit" not in name_set(client, world, "")
        deleted = client.search_runs([world.vision], view_type="deleted")
        assert [r.run_name for r in deleted] == ["vit"]
        assert len(list(client.search_runs([world.vision], view_type="all"))) == 3

    def test_results_carry_run_data(self, client: TracklineClient, world: World) -> None:
        (run,) = client.search_runs(None, "run_name = 'bert'")
        assert {p.key: p.value for p in run.params} == {"optimizer": "adam", "model.size": "base"}
        assert {m.key for m in run.latest_metrics} == {"loss", "val acc", "損失"}
        assert run.status == pb.RUN_STATUS_FAILED and run.end_time == 4500

    def test_unknown_experiment_is_empty_and_bad_id_is_error(
        self, client: TracklineClient, world: World
    ) -> None:
        assert list(client.search_runs(["987654"])) == []
        with pytest.raises(InvalidArgument) as err:
            list(client.search_runs(["abc"]))
        assert err.value.reason == "INVALID_EXPERIMENT_ID"


class TestOrderAndPaging:
    def test_order_by_metric_puts_missing_last(self, client: TracklineClient, world: World) -> None:
        asc = names(client, world, "", order_by=["metrics.loss ASC"])
        assert asc[:3] == ["bert", "resnet", "vit"]
        assert asc[3:] == ["nan", "bare"]  # NaN, then no value at all
        desc = names(client, world, "", order_by=["metrics.loss DESC"])
        assert desc[:3] == ["vit", "resnet", "bert"] and desc[3:] == ["nan", "bare"]

    def test_order_by_param_then_attribute(self, client: TracklineClient, world: World) -> None:
        got = names(client, world, "", order_by=["params.optimizer", "start_time DESC"])
        assert got == ["bert", "nan", "resnet", "vit", "bare"]

    def test_pages_cover_all_runs_once(self, client: TracklineClient, world: World) -> None:
        paged = [r.run_id for r in client.search_runs(None, "", page_size=2)]
        whole = [r.run_id for r in client.search_runs(None, "")]
        assert paged == whole and len(whole) == 5

    def test_max_results(self, client: TracklineClient, world: World) -> None:
        assert len(list(client.search_runs(None, max_results=3, page_size=2))) == 3

    def test_token_of_another_search_is_rejected(
        self, client: TracklineClient, world: World
    ) -> None:
        from trackline.v1 import tracking_pb2 as tpb

        first = client.stub.SearchRuns(tpb.SearchRunsRequest(page_size=1))
        assert first.next_page_token
        with pytest.raises(InvalidArgument) as err:
            client.calls.SearchRuns(
                tpb.SearchRunsRequest(
                    page_size=1, page_token=first.next_page_token, filter="run_name = 'x'"
                ),
            )
        assert err.value.reason == "INVALID_PAGE_TOKEN"
        with pytest.raises(InvalidArgument, match="not returned by a search"):
            client.calls.SearchRuns(tpb.SearchRunsRequest(page_token="garbage!"))


class TestReadMask:
    def test_mask_returns_only_the_named_fields(
        self, client: TracklineClient, world: World
    ) -> None:
        (run,) = client.search_runs(None, "params.model.size = 'base'", fields=["run_name"])
        assert run == pb.Run(run_name="bert")  # nothing else: no params, tags, metrics, ids
        (run,) = client.search_runs(
            None, "run_name = 'bert'", fields=["run_id", "status", "latest_metrics"]
        )
        assert run.run_id == world.runs["bert"] and run.status == pb.RUN_STATUS_FAILED
        assert {m.key for m in run.latest_metrics} == {"loss", "val acc", "損失"}
        assert not run.params and not run.tags and not run.run_name and not run.HasField("end_time")

    def test_empty_or_star_mask_returns_everything(
        self, client: TracklineClient, world: World
    ) -> None:
        whole = list(client.search_runs(None, ""))
        assert list(client.search_runs(None, "", fields=["*"])) == whole
        assert list(client.search_runs(None, "", fields=["run_id", "*"])) == whole
        assert any(r.params for r in whole) and any(r.tags for r in whole)

    def test_masked_search_orders_and_pages_as_the_whole(
        self, client: TracklineClient, world: World
    ) -> None:
        order = ["metrics.loss ASC"]
        whole = [r.run_id for r in client.search_runs(None, "", order_by=order)]
        paged = client.search_runs(None, "", order_by=order, page_size=2, fields=["run_id"])
        assert [r.run_id for r in paged] == whole

    @pytest.mark.parametrize("path", ["metrics", "params.lr", "", "RUN_ID", "data"])
    def test_unknown_field_is_refused(
        self, client: TracklineClient, world: World, path: str
    ) -> None:
        with pytest.raises(InvalidArgument) as err:
            list(client.search_runs(None, "", fields=["run_id", path]))
        assert err.value.reason == "INVALID_READ_MASK"
        assert "read_mask" in err.value.field_violations
        assert "latest_metrics" in err.value.message  # names what it takes


class TestBadFilters:
    @pytest.mark.parametrize(
        ("filter", "fragment"),
        [
            ("metrics.loss <", "position"),
            ("metrics.loss < 'abc'", "number"),
            ("params.lr = 0.01", "quote"),
            ("loss < 1", "unknown identifier"),
            ("(metrics.loss < 1", "')'"),
            ("metrics.loss < 1 and", "position"),
            ("status = 'DONE'", "RUNNING"),
            ("tags.x IN ()", "position"),
            ("tags.x = 'unterminated", "position"),
        ],
    )
    def test_malformed_filter_names_position(
        self, client: TracklineClient, world: World, filter: str, fragment: str
    ) -> None:
        with pytest.raises(InvalidArgument) as err:
            list(client.search_runs(None, filter))
        assert err.value.reason == "INVALID_FILTER"
        assert fragment in err.value.message
        assert "filter" in err.value.field_violations

    def test_bad_order_by(self, client: TracklineClient, world: World) -> None:
        with pytest.raises(InvalidArgument) as err:
            list(client.search_runs(None, order_by=["metrics.loss SIDEWAYS"]))
        assert err.value.reason == "INVALID_ORDER_BY"

    def test_negative_page_size(self, client: TracklineClient, world: World) -> None:
        with pytest.raises(InvalidArgument, match="page_size"):
            list(client.search_runs(None, page_size=-1))


class TestExperiments:
    def test_search_by_name_and_tag(self, client: TracklineClient, world: World) -> None:
        found = client.search_experiments("name LIKE 'vis%' or tags.team = 'text'")
        assert {e.name for e in found} == {"vision", "nlp"}
        assert [e.name for e in client.search_experiments("tags.team = 'cv'")] == ["vision"]

    def test_default_order_newest_first_and_paging(
        self, client: TracklineClient, world: World
    ) -> None:
        for i in range(5):
            client.create_experiment(f"extra-{i}")
        all_names = [e.name for e in client.search_experiments(page_size=2)]
        assert len(all_names) == 8 and set(all_names) >= {"Default", "vision", "nlp"}
        by_name = [e.name for e in client.search_experiments(order_by=["name DESC"])]
        assert by_name == sorted(all_names, reverse=True)

    def test_rename_and_tags(self, client: TracklineClient, world: World) -> None:
        renamed = client.rename_experiment(world.vision, "vision-2")
        assert renamed.name == "vision-2"
        assert client.get_experiment_by_name("vision-2").experiment_id == world.vision
        client.set_experiment_tag(world.vision, "stage", "prod")
        client.set_experiment_tag(world.vision, "stage", "dev")
        tags = {t.key: t.value for t in client.get_experiment(world.vision).tags}
        assert tags == {"team": "cv", "stage": "dev"}
        client.delete_experiment_tag(world.vision, "stage")
        assert [e.name for e in client.search_experiments("tags.stage IS NOT NULL")] == []

    def test_rename_errors(self, client: TracklineClient, world: World) -> None:
        from trackline import AlreadyExists, FailedPrecondition, NotFound

        with pytest.raises(AlreadyExists):
            client.rename_experiment(world.vision, "nlp")
        with pytest.raises(InvalidArgument):
            client.rename_experiment(world.vision, "  ")
        with pytest.raises(NotFound):
            client.rename_experiment("424242", "x")
        with pytest.raises(NotFound):
            client.delete_experiment_tag(world.vision, "no-such-tag")
        client.delete_experiment(world.nlp)
        with pytest.raises(FailedPrecondition):
            client.rename_experiment(world.nlp, "nlp-2")

    def test_view_types(self, client: TracklineClient, world: World) -> None:
        client.delete_experiment(world.nlp)
        assert "nlp" not in {e.name for e in client.search_experiments()}
        assert [e.name for e in client.search_experiments(view_type="deleted")] == ["nlp"]

    def test_metric_filter_is_rejected_for_experiments(
        self, client: TracklineClient, world: World
    ) -> None:
        with pytest.raises(InvalidArgument) as err:
            list(client.search_experiments("metrics.loss < 1"))
        assert err.value.reason == "INVALID_FILTER"
