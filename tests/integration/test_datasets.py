"""Datasets as the inputs of runs (LogInputs, MLflow's log_input) against a real server:
stored once per experiment, returned by GetRun and SearchRuns (read_mask and page budget
included), updated by a second logging, refused when malformed, applied once per
request_id, and shown by ``trackline runs show``."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest
import trackline
from trackline import FailedPrecondition, InvalidArgument, NotFound, TracklineClient
from trackline.data import Dataset, from_numpy, from_pandas
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb
from trackline_server import limits

from tests.support.servers import ServerProcess

FRAME = pd.DataFrame({"x": [1.0, 2.0, 3.0], "label": [0, 1, 0]})


def _inputs(run: pb.Run) -> list[tuple[str, str, str, dict[str, str]]]:
    return [
        (i.dataset.name, i.dataset.digest, i.context, {t.key: t.value for t in i.tags})
        for i in run.inputs
    ]


def test_inputs_round_trip_through_get_run_and_search(client: TracklineClient) -> None:
    exp = client.create_experiment("data").experiment_id
    run = client.create_run(exp, run_name="r")
    train = from_pandas(FRAME, source="s3://bucket/train.csv", name="train", targets="label")
    evals = from_numpy(np.arange(6).reshape(3, 2), source="/data/eval.npy", name="eval")
    client.log_inputs(
        run.run_id,
        [train.to_input("training", {"split": "a"}), evals.to_input("eval")],
    )
    got = client.get_run(run.run_id)
    assert _inputs(got) == [
        ("eval", evals.digest, "eval", {}),
        ("train", train.digest, "training", {"split": "a"}),
    ]
    stored = got.inputs[1].dataset
    assert stored == train.to_proto()
    assert stored.source_type == "s3" and got.inputs[0].dataset.source_type == "local"
    assert json.loads(stored.schema)["targets"] == "label"
    assert json.loads(stored.profile) == {"num_rows": 3, "num_elements": 6}

    (found,) = client.search_runs([exp])
    assert list(found.inputs) == list(got.inputs)
    (masked,) = client.search_runs([exp], fields=["run_id", "inputs"])
    assert list(masked.inputs) == list(got.inputs) and not masked.params and not masked.run_name
    (without,) = client.search_runs([exp], fields=["run_id", "tags"])
    assert not without.inputs


def test_logged_inputs_are_found_by_dataset_filters(client: TracklineClient) -> None:
    exp = client.create_experiment("found").experiment_id
    train, other = client.create_run(exp), client.create_run(exp)
    ds = from_pandas(FRAME, source="train.csv", name="train")
    client.log_inputs(train.run_id, [ds.to_input("training")])
    client.log_inputs(other.run_id, [Dataset("eval", "e1", "").to_input("eval")])
    for text in [
        "datasets.name = 'train'",
        f"datasets.digest = '{ds.digest}'",
        "datasets.context = 'training'",
    ]:
        assert [r.run_id for r in client.search_runs([exp], text)] == [train.run_id], text


def test_relogging_updates_context_and_tags(client: TracklineClient) -> None:
    run = client.create_run()
    train = from_pandas(FRAME, source="train.csv", name="train")
    client.log_inputs(run.run_id, [train.to_input("training", {"a": "1", "b": "2"})])
    client.log_inputs(run.run_id, [train.to_input("fine-tuning", {"b": "3", "c": "4"})])
    assert _inputs(client.get_run(run.run_id)) == [
        ("train", train.digest, "fine-tuning", {"a": "1", "b": "3", "c": "4"})
    ]
    # Twice in one call: the last context wins, the tags merge.
    client.log_inputs(run.run_id, [train.to_input("x", {"d": "5"}), train.to_input("y")])
    ((_, _, context, tags),) = _inputs(client.get_run(run.run_id))
    assert context == "y" and tags["d"] == "5"


def test_a_dataset_is_stored_once_per_experiment(client: TracklineClient) -> None:
    """Two runs of an experiment logging the same (name, digest) share the first copy; an
    experiment of its own stores its own."""
    exp = client.create_experiment("shared").experiment_id
    first, second = client.create_run(exp), client.create_run(exp)
    original = Dataset("d", "abc", "s3://one", "s3", '{"v": 1}', "")
    client.log_inputs(first.run_id, [original])
    client.log_inputs(second.run_id, [Dataset("d", "abc", "s3://two", "s3", '{"v": 2}', "")])
    assert client.get_run(second.run_id).inputs[0].dataset == original.to_proto()
    other = client.create_run(client.create_experiment("other").experiment_id)
    client.log_inputs(other.run_id, [Dataset("d", "abc", "s3://two", "s3")])
    assert client.get_run(other.run_id).inputs[0].dataset.source == "s3://two"
    # Another digest under the same name is another dataset.
    client.log_inputs(first.run_id, [Dataset("d", "abd", "s3://three")])
    assert [i.dataset.digest for i in client.get_run(first.run_id).inputs] == ["abc", "abd"]


def test_concurrent_first_loggings_store_one_dataset(client: TracklineClient) -> None:
    """Runs logging a dataset the experiment lacks, all at once: every call succeeds and all
    of them name the one copy stored (on PostgreSQL the inserts race; SQLite serializes)."""
    exp = client.create_experiment("race").experiment_id
    runs = [client.create_run(exp).run_id for _ in range(8)]
    errors: list[BaseException] = []

    def log(n: int) -> None:
        try:
            client.log_inputs(runs[n], [Dataset("d", "abc", f"s3://copy{n}")])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=log, args=(n,)) for n in range(len(runs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    sources = {client.get_run(r).inputs[0].dataset.source for r in runs}
    assert len(sources) == 1


def test_unicode_names_and_empty_optional_fields(client: TracklineClient) -> None:
    run = client.create_run()
    client.log_inputs(run.run_id, [Dataset("données ✓ 数据", "d1", "")])
    (found,) = client.get_run(run.run_id).inputs
    assert found.dataset == pb.Dataset(name="données ✓ 数据", digest="d1")
    assert found.context == "" and not found.tags


def _dataset_input(**fields: str) -> pb.DatasetInput:
    context = fields.pop("context", "")
    values = {"name": "d", "digest": "abc", **fields}
    return pb.DatasetInput(dataset=pb.Dataset(**values), context=context)


@pytest.mark.parametrize(
    ("given", "reason", "field"),
    [
        (_dataset_input(name=""), "INVALID_NAME", "datasets[0].dataset.name"),
        (_dataset_input(name="  "), "INVALID_NAME", "datasets[0].dataset.name"),
        (_dataset_input(name="n" * 501), "INVALID_NAME", "datasets[0].dataset.name"),
        (_dataset_input(name="a\x00b"), "INVALID_NAME", "datasets[0].dataset.name"),
        (_dataset_input(digest=""), "INVALID_DATASET", "datasets[0].dataset.digest"),
        (_dataset_input(digest="d" * 65), "INVALID_DATASET", "datasets[0].dataset.digest"),
        (_dataset_input(digest="a\nb"), "INVALID_DATASET", "datasets[0].dataset.digest"),
        (
            _dataset_input(source_type="t" * 65),
            "INVALID_DATASET",
            "datasets[0].dataset.source_type",
        ),
        (_dataset_input(source="s" * 65537), "INVALID_DATASET", "datasets[0].dataset.source"),
        (
            _dataset_input(schema="é" * (limits.MAX_DATASET_SCHEMA_BYTES // 2 + 1)),
            "INVALID_DATASET",
            "datasets[0].dataset.schema",
        ),
        (
            _dataset_input(profile="p" * (limits.MAX_DATASET_PROFILE_BYTES + 1)),
            "INVALID_DATASET",
            "datasets[0].dataset.profile",
        ),
        (_dataset_input(context="c" * 501), "INVALID_DATASET", "datasets[0].context"),
        (_dataset_input(context="\x00"), "INVALID_DATASET", "datasets[0].context"),
    ],
)
def test_malformed_inputs_are_refused_by_field(
    client: TracklineClient, given: pb.DatasetInput, reason: str, field: str
) -> None:
    run = client.create_run()
    with pytest.raises(InvalidArgument) as err:
        client.log_inputs(run.run_id, [Dataset("ok", "1", ""), given])
    assert err.value.reason == reason
    assert set(err.value.field_violations) == {field.replace("[0]", "[1]")}
    assert not client.get_run(run.run_id).inputs  # nothing of the call was stored


def test_every_problem_of_every_input_is_reported(client: TracklineClient) -> None:
    run = client.create_run()
    bad = [
        _dataset_input(name="", digest=""),
        _dataset_input(context="c" * 501),
        Dataset("d", "abc", "").to_input(tags={"": "v"}),
    ]
    with pytest.raises(InvalidArgument) as err:
        client.log_inputs(run.run_id, bad)
    assert err.value.reason == "INVALID_NAME"  # the first problem's
    assert [field for field, _ in err.value.violations] == [
        "datasets[0].dataset.name",
        "datasets[0].dataset.digest",
        "datasets[1].context",
        "datasets[2].tags[0].key",
    ]
    assert "and 3 more problems" in err.value.message
    assert not client.get_run(run.run_id).inputs


def test_input_tags_and_counts_are_bounded(client: TracklineClient) -> None:
    run = client.create_run()
    d = Dataset("d", "abc", "")
    with pytest.raises(InvalidArgument) as err:
        client.log_inputs(run.run_id, [d.to_input(tags={"": "v"})])
    assert err.value.reason == "INVALID_KEY" and "datasets[0].tags[0].key" in (
        err.value.field_violations
    )
    with pytest.raises(InvalidArgument) as err:
        client.log_inputs(run.run_id, [d.to_input(tags={f"k{i}": "v" for i in range(101)})])
    assert err.value.reason == "INVALID_DATASET"
    many = [Dataset("d", str(i), "") for i in range(limits.MAX_INPUTS_PER_CALL + 1)]
    with pytest.raises(InvalidArgument) as err:
        client.log_inputs(run.run_id, many)
    assert err.value.reason == "BATCH_TOO_LARGE"
    client.log_inputs(run.run_id, many[:-1])
    assert len(client.get_run(run.run_id).inputs) == limits.MAX_INPUTS_PER_CALL


def test_unknown_and_deleted_runs_are_refused(client: TracklineClient) -> None:
    d = [Dataset("d", "abc", "")]
    for run_id in ["0" * 32, "", "a\x00b"]:
        with pytest.raises(NotFound) as missing:
            client.log_inputs(run_id, d)
        assert missing.value.reason == "RUN_NOT_FOUND"
    run = client.create_run()
    client.delete_run(run.run_id)
    with pytest.raises(FailedPrecondition) as deleted:
        client.log_inputs(run.run_id, d)
    assert deleted.value.reason == "RUN_DELETED"
    exp = client.create_experiment("gone").experiment_id
    of_deleted = client.create_run(exp)
    client.delete_experiment(exp)
    with pytest.raises(FailedPrecondition) as gone:
        client.log_inputs(of_deleted.run_id, d)
    assert gone.value.reason == "EXPERIMENT_DELETED"


def test_a_retry_with_the_same_request_id_applies_once(client: TracklineClient) -> None:
    run = client.create_run()
    d = Dataset("d", "abc", "")
    first = tpb.LogInputsRequest(
        run_id=run.run_id, datasets=[d.to_input("training")], request_id="inputs-1"
    )
    client.calls.LogInputs(first)
    client.log_inputs(run.run_id, [d.to_input("eval")])
    client.calls.LogInputs(first)  # the retry of the first call: not applied again
    assert _inputs(client.get_run(run.run_id)) == [("d", "abc", "eval", {})]
    other = client.create_run()
    with pytest.raises(InvalidArgument) as err:
        client.calls.LogInputs(tpb.LogInputsRequest(run_id=other.run_id, request_id="inputs-1"))
    assert err.value.reason == "REQUEST_ID_REUSED"
    with pytest.raises(InvalidArgument) as err:
        client.calls.LogInputs(tpb.LogInputsRequest(run_id=run.run_id, request_id="r" * 129))
    assert err.value.reason == "INVALID_REQUEST_ID"


def test_search_pages_count_the_size_of_inputs(client: TracklineClient) -> None:
    """Every run's reply carries the dataset's schema (stored once): 40 runs with a 1 MiB
    schema take two pages within the reply budget, and one page without inputs."""
    exp = client.create_experiment("heavy").experiment_id
    big = Dataset("big", "abc", "", schema="s" * limits.MAX_DATASET_SCHEMA_BYTES)
    made = set()
    for i in range(40):
        run = client.create_run(exp, start_time=1 + i)
        client.log_inputs(run.run_id, [big])
        made.add(run.run_id)
    pages: list[list[str]] = []
    token = ""
    while True:
        reply = client.stub.SearchRuns(
            tpb.SearchRunsRequest(experiment_ids=[exp], page_token=token)
        )
        assert reply.ByteSize() <= limits.MAX_SEARCH_REPLY_BYTES
        assert all(len(r.inputs[0].dataset.schema) == len(big.schema) for r in reply.runs)
        pages.append([r.run_id for r in reply.runs])
        token = reply.next_page_token
        if not token:
            break
    assert len(pages) == 2 and sorted(r for p in pages for r in p) == sorted(made)
    assert len(list(client.search_runs([exp], fields=["run_id"], page_size=50))) == 40
    reply = client.stub.SearchRuns(
        tpb.SearchRunsRequest(experiment_ids=[exp], read_mask={"paths": ["run_id"]})
    )
    assert len(reply.runs) == 40 and not reply.next_page_token


def test_fluent_log_input(server: ServerProcess) -> None:
    trackline.set_tracking_uri(server.address)
    train = from_pandas(FRAME, source="train.csv", name="train")
    with trackline.start_run() as run:
        trackline.log_input(train, context="training", tags={"epochs": 3})
    got = TracklineClient(server.address).get_run(run.run_id)
    assert _inputs(got) == [("train", train.digest, "training", {"epochs": "3"})]
    with pytest.raises(RuntimeError, match="no active run"):
        trackline.log_input(train)


def test_cli_shows_inputs(server: ServerProcess, client: TracklineClient) -> None:
    run = client.create_run()
    train = from_pandas(FRAME, source="s3://b/train.csv", name="train")
    client.log_inputs(run.run_id, [train.to_input("training", {"split": "a\x1b"})])
    cli = [sys.executable, "-m", "trackline.cli", "--uri", server.address, "runs", "show"]
    out = subprocess.run([*cli, run.run_id], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    summary = f"digest {train.digest}, context training, 3 rows, source s3://b/train.csv"
    assert any(line.split() == ["inputs.train", *summary.split()] for line in lines)
    assert any(line.split() == ["inputs.train.tags.split", "a\\x1b"] for line in lines)
    out = subprocess.run([*cli, run.run_id, "--json"], capture_output=True, text=True, timeout=60)
    (shown,) = json.loads(out.stdout)["inputs"]
    assert shown["dataset"]["name"] == "train" and shown["context"] == "training"
    assert shown["tags"] == [{"key": "split", "value": "a\x1b"}]
