"""Train -> log_model -> register -> alias -> load anywhere -> predict, against a real
server: every models:/ form, runs:/, and the s3:// form on the test S3 store."""

from __future__ import annotations

from pathlib import Path

import pytest
import trackline
import trackline.sklearn
from trackline import TracklineClient
from trackline.v1 import registry_pb2 as rpb

from tests.support.models import trained_classifier
from tests.support.s3 import S3Bucket
from tests.support.servers import ServerProcess, start_server


@pytest.fixture
def fluent(server: ServerProcess) -> ServerProcess:
    trackline.set_tracking_uri(server.address)
    return server


def test_train_log_register_alias_load_predict(fluent: ServerProcess) -> None:
    model, frame = trained_classifier()
    trackline.set_experiment("iris")
    with trackline.start_run() as run:
        info = trackline.log_model(
            model, "model", input_example=frame.head(5), registered_model_name="iris-clf"
        )
    assert info.model_uri == f"runs:/{run.run_id}/model" and info.run_id == run.run_id
    assert info.registered_model_version == 1 and set(info.flavors) == {
        "python_function", "sklearn",
    }  # fmt: skip
    assert info.signature is not None and info.signature.inputs is not None
    client = TracklineClient(fluent.address)
    version = client.get_model_version("iris-clf", 1)
    assert version.status == rpb.MODEL_VERSION_STATUS_READY
    assert version.source == info.model_uri and version.run_id == run.run_id
    listed = {f.path for f in client.list_artifacts(run.run_id, "model")}
    assert {"model/MLmodel", "model/model.pkl", "model/input_example.json"} <= listed
    client.set_registered_model_alias("iris-clf", "champion", 1)
    client.transition_model_version_stage("iris-clf", 1, "Production")

    expected = model.predict(frame).tolist()
    champion = trackline.load_model("models:/iris-clf@champion")
    assert champion.predict(frame).tolist() == expected
    assert champion.metadata.run_id == run.run_id and champion.metadata.artifact_path == "model"
    forms = ("models:/iris-clf/1", "models:/iris-clf/latest", "models:/iris-clf/Production")
    for uri in (*forms, info.model_uri):
        assert trackline.load_model(uri).predict(frame).tolist() == expected
    estimator = trackline.sklearn.load_model("models:/iris-clf@champion")
    assert estimator.predict(frame).tolist() == expected


def test_a_second_log_registers_the_next_version(fluent: ServerProcess, tmp_path: Path) -> None:
    model, frame = trained_classifier()
    with trackline.start_run():
        first = trackline.sklearn.log_model(model, "m", registered_model_name="twice")
    with trackline.start_run():
        second = trackline.sklearn.log_model(
            model, "m", registered_model_name="twice", serialization_format="pickle"
        )
    assert (first.registered_model_version, second.registered_model_version) == (1, 2)
    loaded = trackline.load_model("models:/twice/latest", dst_path=tmp_path / "here")
    assert loaded.model_dir.startswith(str(tmp_path / "here"))
    assert loaded.metadata.flavors["sklearn"]["serialization_format"] == "pickle"
    assert loaded.metadata.signature is None  # no example, no signature
    assert loaded.predict(frame).tolist() == model.predict(frame).tolist()


def test_a_failed_upload_leaves_the_version_failed(
    fluent: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: TracklineClient, *args: object, **kwargs: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(TracklineClient, "log_artifacts", broken)
    with trackline.start_run(), pytest.raises(OSError, match="disk on fire"):
        trackline.log_model(trained_classifier()[0], "m", registered_model_name="broken")
    version = TracklineClient(fluent.address).get_model_version("broken", 1)
    assert version.status == rpb.MODEL_VERSION_STATUS_FAILED_REGISTRATION
    assert "disk on fire" in version.status_message


def test_log_model_needs_an_active_run(fluent: ServerProcess) -> None:
    with pytest.raises(RuntimeError, match="no active run"):
        trackline.log_model(trained_classifier()[0], "m")


def test_a_model_logged_to_s3_loads_straight_from_s3(
    s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server(tmp_path, extra_args=s3_bucket.server_args, env=s3_bucket.env)
    trackline.set_tracking_uri(server.address)
    model, frame = trained_classifier()
    with trackline.start_run() as run:
        trackline.sklearn.log_model(model, "model", input_example=frame.head(3))
    artifact_uri = TracklineClient(server.address).get_run(run.run_id).artifact_uri
    assert artifact_uri.startswith(s3_bucket.root_uri)
    for key, value in s3_bucket.env.items():
        monkeypatch.setenv(key, value)
    estimator = trackline.sklearn.load_model(f"{artifact_uri}/model/")
    assert estimator.predict(frame).tolist() == model.predict(frame).tolist()
    loaded = trackline.load_model(f"{artifact_uri}/model")
    assert loaded.predict(frame).tolist() == model.predict(frame).tolist()
