"""MLflow's filter language on SearchRuns and SearchExperiments, table-driven, on SQLite and
PostgreSQL: each filter (our own cases, written from the grammar of MLflow's search_utils)
with the runs or experiments it must return, searched through the tracking layer over a real
database whose rows (dataset inputs included) are written straight into the tables."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import insert, update
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb
from trackline_server.database import Database
from trackline_server.errors import InvalidArgument
from trackline_server.models import experiments, latest_metrics, params, runs
from trackline_server.tracking import experiments as experiment_queries
from trackline_server.tracking import runs as run_queries
from trackline_server.tracking.search import search_experiments, search_runs

from tests.support.databases import store_url
from tests.support.run_inputs import add_dataset_input


@dataclass(frozen=True)
class RunSpec:
    """One run of the world: R resnet, V vit, N nan-run, B bert, X bare."""

    name: str
    experiment: str
    start: int
    status: int
    end: int | None
    user: str
    parent: str  # the letter of the parent run, "" for none
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    inputs: list[tuple[str, str, str]]  # (dataset name, digest, context)


SOURCE = "trackline.source."
WORLD = {
    "R": RunSpec(
        "resnet", "vision", 1000, pb.RUN_STATUS_FINISHED, 1500, "ana", "",
        {"loss": 0.25, "acc": 0.91},
        {"optimizer": "adam", "lr": "0.01"},
        {"team": "vision-core", "owner": "ana", SOURCE + "name": "train.py",
         SOURCE + "type": "LOCAL", SOURCE + "git.commit": "abc123", SOURCE + "git.branch": "main"},
        [("imagenet", "d-img1", "train"), ("cifar", "d-cif", "eval")],
    ),
    "V": RunSpec(
        "vit", "vision", 2000, pb.RUN_STATUS_RUNNING, None, "bob", "",
        {"loss": 0.4, "acc": 0.88},
        {"optimizer": "sgd", "lr": "0.1"},
        {"team": "Vision-research", SOURCE + "name": "notebook.ipynb",
         SOURCE + "type": "NOTEBOOK", SOURCE + "git.branch": "dev",
         "mlflow.source.name": "legacy"},
        [("imagenet", "d-img2", "train")],
    ),
    "N": RunSpec(
        "nan-run", "vision", 3000, pb.RUN_STATUS_KILLED, 3100, "ana", "R",
        {"loss": math.nan, "acc": math.inf},
        {"optimizer": "adam"},
        {},
        [],
    ),
    "B": RunSpec(
        "bert", "nlp", 4000, pb.RUN_STATUS_FAILED, 4500, "Carl", "",
        {"loss": 0.1, "val acc": 0.95},
        {"optimizer": "adam", "model.size": "base"},
        {"team": "nlp", "source_name": "a notebook", SOURCE + "name": "train.py",
         SOURCE + "git.commit": "def456"},
        [("wiki", "d-wiki", "train"), ("squad", "d-sq", "eval")],
    ),
    "X": RunSpec(
        "bare", "nlp", 5000, pb.RUN_STATUS_SCHEDULED, None, "", "B", {}, {}, {},
        [("wiki", "d-wiki", "")],
    ),
}  # fmt: skip
# name -> (creation time, tags)
EXPERIMENTS = {
    "vision": (100, {"team": "cv"}),
    "nlp": (200, {"team": "text"}),
    "vision-archive": (300, {}),
}


@dataclass(frozen=True)
class Store:
    url: str
    run_ids: dict[str, str]  # letter -> run id
    experiment_ids: dict[str, int]  # name -> id


async def _build(url: str) -> Store:
    db = Database(url)
    await db.create_schema()
    run_ids: dict[str, str] = {}
    exp_ids: dict[str, int] = {}
    try:
        async with db.write() as conn:
            for name, (created, tags) in EXPERIMENTS.items():
                exp_ids[name] = await experiment_queries.create(conn, name, "", tags, "/art")
                await conn.execute(
                    update(experiments)
                    .where(experiments.c.experiment_id == exp_ids[name])
                    .values(creation_time=created, last_update_time=created)
                )
            for letter, spec in WORLD.items():
                run_id = await run_queries.create(
                    conn,
                    exp_ids[spec.experiment],
                    spec.name,
                    spec.start,
                    spec.tags,
                    run_ids[spec.parent] if spec.parent else "",
                    spec.user,
                )
                run_ids[letter] = run_id
                await conn.execute(
                    update(runs)
                    .where(runs.c.run_id == run_id)
                    .values(status=spec.status, end_time=spec.end)
                )
                for key, value in spec.metrics.items():
                    stored = None if math.isnan(value) else value
                    row = {"run_id": run_id, "key": key, "value": stored, "step": 0}
                    await conn.execute(insert(latest_metrics).values(row | {"timestamp": 0}))
                for key, text in spec.params.items():
                    await conn.execute(insert(params).values(run_id=run_id, key=key, value=text))
                for dataset, digest, context in spec.inputs:
                    await add_dataset_input(conn, run_id, dataset, digest, context)
    finally:
        await db.close()
    return Store(url, run_ids, exp_ids)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Store:
    tmp: Path = tmp_path_factory.mktemp(f"mlflow_filters_{request.param}")
    return asyncio.run(_build(store_url(request.param, tmp)))


async def _search_runs(store: Store, text: str, order_by: Sequence[str]) -> list[str]:
    db = Database(store.url)
    try:
        page = tpb.SearchRunsResponse().runs
        async with db.read() as reader:
            await search_runs(
                reader,
                [str(i) for i in store.experiment_ids.values()],
                text,
                order_by,
                100,
                "",
                tpb.VIEW_TYPE_ACTIVE_ONLY,
                page,
            )
    finally:
        await db.close()
    letters = {run_id: letter for letter, run_id in store.run_ids.items()}
    return [letters[run.run_id] for run in page]


def found_runs(store: Store, text: str, order_by: Sequence[str] = ()) -> list[str]:
    """The letters of the runs ``text`` matches (``{R}`` in it stands for R's id), in order."""
    return asyncio.run(_search_runs(store, text.format(**store.run_ids), order_by))


async def _search_experiments(store: Store, text: str) -> list[str]:
    db = Database(store.url)
    try:
        async with db.read() as reader:
            found, _ = await search_experiments(
                reader, text, [], 100, "", tpb.VIEW_TYPE_ACTIVE_ONLY
            )
    finally:
        await db.close()
    names = {i: name for name, i in store.experiment_ids.items()}
    return [names.get(row.experiment_id, "?") for row in found]


ALL = "RVNBX"

# (filter, the runs it finds). Runs: R resnet, V vit, N nan-run, B bert, X bare.
RUN_CASES: list[tuple[str, str]] = [
    # metrics: each prefix word, backticked or not, and keys quoted either way
    ("metric.acc >= 0.9", "RN"),
    ("metrics.acc >= 0.9", "RN"),
    ("`metric`.acc >= 0.9", "RN"),
    ("`metrics`.loss < 0.3", "RB"),
    ("metrics.`val acc` > 0.9", "B"),
    ('metrics."val acc" > 0.9', "B"),
    ("`metrics`.`val acc` > 0.9", "B"),
    ("metrics.loss != 0.25", "VNB"),
    ("metrics.loss = 0.1", "B"),
    ("metrics.acc>=100", "N"),
    ("metrics.acc = Infinity", "N"),
    ("metrics.loss = NaN", "N"),
    ("metrics.loss IS NULL", "X"),
    # params
    ("param.optimizer = 'adam'", "RNB"),
    ("params.optimizer != 'adam'", "V"),
    ("parameter.lr = '0.1'", "V"),
    ("parameters.lr LIKE '0.%'", "RV"),
    ("`params`.optimizer = 'sgd'", "V"),
    ("`param`.`model.size` = 'base'", "B"),
    ('params."model.size" = "base"', "B"),
    ("params.model.size = 'base'", "B"),
    ("params.optimizer ILIKE 'ADAM'", "RNB"),
    ("params.optimizer LIKE 'ADAM'", ""),
    ("params.lr IS NULL", "NBX"),
    ("params.lr IS NOT NULL", "RV"),
    # tags
    ("tags.team = 'nlp'", "B"),
    ("tag.team LIKE 'vision%'", "R"),
    ("tags.team ILIKE 'vision%'", "RV"),
    ("`tags`.source_name = 'a notebook'", "B"),
    ("`tag`.team != 'nlp'", "RV"),
    ("tags.owner IS NOT NULL", "R"),
    ("tags.team IS NULL", "NX"),
    ("tags.team IN ('nlp', 'vision-core')", "RB"),
    ("tags.team NOT IN ('nlp')", "RV"),
    # status, compared as MLflow does (a string; LIKE and ILIKE too)
    ("attributes.status = 'FINISHED'", "R"),
    ("attribute.status = 'RUNNING'", "V"),
    ("attr.status != 'RUNNING'", "RNBX"),
    ("run.status = 'KILLED'", "N"),
    ("`attributes`.status = 'FAILED'", "B"),
    ("status = 'scheduled'", "X"),
    ("attributes.status LIKE 'FAIL%'", "B"),
    ("attributes.status LIKE 'F%'", "RB"),
    ("status ILIKE 'fail%'", "B"),
    ("status LIKE 'fail%'", ""),
    ("status NOT LIKE '%ED'", "V"),
    ("status NOT ILIKE 'r%'", "RNBX"),
    ("status LIKE '%'", ALL),
    ("status LIKE 'nothing'", ""),
    ("status IN ('FAILED', 'KILLED')", "NB"),
    ("status NOT IN ('RUNNING')", "RNBX"),
    # run names, in each of MLflow's spellings
    ("attributes.run_name = 'vit'", "V"),
    ("attributes.`Run name` = 'vit'", "V"),
    ("`run name` = 'vit'", "V"),
    ("`Run Name` = 'vit'", "V"),
    ("run_name LIKE 'b%'", "BX"),
    ("attributes.run_name ILIKE '%E%'", "RBX"),
    # run ids
    ("attribute.run_id = '{R}'", "R"),
    ("attributes.run_id IN ('{V}', '{X}')", "VX"),
    ("run_uuid NOT IN ('{V}')", "RNBX"),
    ("run_id = 'nope'", ""),
    # times
    ("attributes.start_time >= 3000", "NBX"),
    ("start_time < 2500", "RV"),
    ("`created` > 4000", "X"),
    ("attribute.end_time <= 3100", "RN"),
    ("end_time IS NULL", "VX"),
    ("end_time IS NOT NULL", "RNB"),
    # users, parents, artifacts, experiments
    ("attributes.user_id = 'ana'", "RN"),
    ("user_id = ''", "X"),
    ("user_id ILIKE 'c%'", "B"),
    ("user_id != 'ana'", "VBX"),
    ("parent_run_id = '{R}'", "N"),
    ("parent_run_id IS NULL", "RVB"),
    ("attributes.artifact_uri LIKE '%/{R}/artifacts'", "R"),
    # MLflow's system tags, as aliases
    ("tags.mlflow.runName = 'bert'", "B"),
    ("tags.\"mlflow.runName\" LIKE '%r%'", "RNBX"),
    ("tags.`mlflow.runName` = 'vit'", "V"),
    ("tags.mlflow.user = 'ana'", "RN"),
    ("tags.mlflow.parentRunId = '{B}'", "X"),
    ("tags.mlflow.parentRunId IS NOT NULL", "NX"),
    ("tags.mlflow.source.name = 'train.py'", "RB"),
    ("tags.mlflow.source.name = 'legacy'", ""),  # the literal tag is not what it names
    ("tags.`mlflow.source.type` = 'NOTEBOOK'", "V"),
    ("tags.mlflow.source.git.commit LIKE 'abc%'", "R"),
    ("tags.mlflow.source.git.commit IS NULL", "VNX"),
    ("tags.mlflow.source.git.branch IN ('main', 'dev')", "RV"),
    ("tags.trackline.source.name = 'notebook.ipynb'", "V"),
    # dataset inputs: some input matches
    ("datasets.name = 'imagenet'", "RV"),
    ("dataset.name = 'wiki'", "BX"),
    ("datasets.name IN ('cifar', 'squad')", "RB"),
    ("datasets.digest = 'd-img1'", "R"),
    ("datasets.digest IN ('d-img2', 'd-sq')", "VB"),
    ("datasets.context = 'train'", "RVB"),
    ("datasets.context = 'eval'", "RB"),
    ("datasets.context = ''", "X"),
    ("datasets.name != 'imagenet'", "RBX"),
    ("datasets.name NOT IN ('wiki')", "RVB"),
    ("datasets.name LIKE 'i%'", "RV"),
    ("datasets.name ILIKE 'WIKI'", "BX"),
    ("datasets.name = 'imagenet' AND datasets.context = 'eval'", "R"),
    ("`datasets`.name = 'cifar'", "R"),
    ("datasets.name = 'nope'", ""),
    # together, with AND, OR and parentheses
    ("metrics.loss < 0.3 AND params.optimizer = 'adam' AND tags.team LIKE 'vision%'", "R"),
    ("(datasets.context = 'eval' OR status = 'KILLED') AND user_id = 'ana'", "RN"),
    ("tags.mlflow.user = 'bob' OR `Run Name` = 'bare'", "VX"),
    ("attributes.status LIKE 'F%' and datasets.name = 'wiki'", "B"),
    ("`metric`.acc > 0.5 AND params.x IS NULL", "RVN"),
]


@pytest.mark.parametrize(("text", "letters"), RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_run_filters(store: Store, text: str, letters: str) -> None:
    assert sorted(found_runs(store, text)) == sorted(letters)


@pytest.mark.parametrize(
    ("order_by", "letters"),
    [
        (["tags.mlflow.runName DESC"], "VRNBX"),
        (["`Run Name`"], "XBNRV"),
        (["tags.mlflow.source.name", "start_time DESC"], "VBRXN"),
        (["`metric`.loss"], "BRVNX"),
        (["attributes.`created` DESC"], "XBNVR"),
    ],
)
def test_run_order_by(store: Store, order_by: list[str], letters: str) -> None:
    assert "".join(found_runs(store, "", order_by)) == letters


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("name = 'nlp'", ["nlp"]),
        ("attribute.name LIKE 'vision%'", ["vision", "vision-archive"]),
        ("`attribute`.name = 'nlp'", ["nlp"]),
        ("`name` ILIKE 'VISION'", ["vision"]),
        ("tags.team = 'cv'", ["vision"]),
        ("`tags`.team = 'text'", ["nlp"]),
        ("tag.`team` IS NULL AND name LIKE 'vision%'", ["vision-archive"]),
        ("creation_time > 150", ["nlp", "vision-archive"]),
        ("`created` <= 200 AND tags.team != 'cv'", ["nlp"]),
        ("attributes.last_update_time >= 100 AND last_update_time < 300", ["nlp", "vision"]),
    ],
)
def test_experiment_filters(store: Store, text: str, names: list[str]) -> None:
    assert sorted(asyncio.run(_search_experiments(store, text))) == names


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "attribute.status != 'blah'",
            "unknown status 'blah'; expected one of RUNNING, SCHEDULED, FINISHED, FAILED, KILLED"
            " at position 20",
        ),
        ("`metrics.a > 1", "unterminated quoted key; expected a closing ` at position 0"),
        ("datasets.foo = 'x'", "unknown field 'foo' of datasets; expected datasets.name"),
        ("datasets.name IS NULL", "IS NULL is not supported for datasets.name"),
        ("status LIKE 1", "expected a pattern string to match status names against after"),
    ],
)
def test_malformed_filters_are_invalid_filter(store: Store, text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        found_runs(store, text)
    assert info.value.reason == "INVALID_FILTER"
    assert message in info.value.message


def test_datasets_are_no_sort_key(store: Store) -> None:
    with pytest.raises(InvalidArgument) as info:
        found_runs(store, "", ["datasets.name"])
    assert info.value.reason == "INVALID_ORDER_BY"
    assert "cannot sort on datasets.name" in info.value.message
