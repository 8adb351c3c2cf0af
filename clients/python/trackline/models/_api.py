"""Saving, logging and loading models: ``save_model``, ``log_model``, ``load_model``."""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ._environment import pip_requirements_of, write_environment
from ._flavors import Flavor, Predictor, flavor_for_loader, flavor_for_model, get_flavor
from ._infer import infer_param_schema, infer_schema, save_example, split_example
from ._mlmodel import PYFUNC_FLAVOR, Model, trackline_version
from ._pyfunc_model import PyFuncModel, add_code_to_path, copy_code_paths
from ._schema import ModelSignature

if TYPE_CHECKING:
    from .._client import TracklineClient

Requirements = Sequence[str] | str | os.PathLike[str] | None


@dataclass(frozen=True)
class ModelInfo:
    """What ``log_model`` logged: ``model_uri`` (``runs:/<run_id>/<artifact_path>``) loads
    it; ``registered_model_version`` is the version registered, or None."""

    model_uri: str
    run_id: str
    artifact_path: str
    flavors: dict[str, dict[str, Any]]
    signature: ModelSignature | None
    model_uuid: str
    utc_time_created: str
    registered_model_version: int | None = None


def save_model(
    model: Any,
    path: str | os.PathLike[str],
    *,
    flavor: str | Flavor | None = None,
    signature: ModelSignature | Literal[False] | None = None,
    input_example: Any = None,
    pip_requirements: Requirements = None,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    **options: Any,
) -> Model:
    """Writes ``model`` as an MLflow-format model directory at ``path`` (which must not
    exist, or be empty) and returns its ``MLmodel``. ``flavor`` (a name or a Flavor)
    defaults to the one that accepts the model's type. Without ``signature``, one is
    inferred from ``input_example`` (a DataFrame, array, dict of arrays, or a ``(data,
    params)`` tuple) and the model's output on it; ``signature=False`` saves none.
    ``pip_requirements`` (a list or a requirements file) replaces the flavor's; the files of
    ``code_paths`` are copied into the directory's ``code`` folder. ``options`` go to the
    flavor (``serialization_format`` for scikit-learn, ...)."""
    return _write(
        model, os.fspath(path), Model(), flavor, signature, input_example,
        pip_requirements, code_paths, options,
    )  # fmt: skip


def _write(
    model: Any,
    path: str,
    mlmodel: Model,
    flavor: str | Flavor | None,
    signature: ModelSignature | Literal[False] | None,
    input_example: Any,
    pip_requirements: Requirements,
    code_paths: Sequence[str | os.PathLike[str]] | None,
    options: dict[str, Any],
) -> Model:
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise FileExistsError(f"{path!r} exists and is not an empty directory")
    chosen = get_flavor(flavor) if isinstance(flavor, str) else flavor or flavor_for_model(model)
    created = not os.path.exists(path)
    os.makedirs(path, exist_ok=True)
    try:
        return _write_into(
            model, path, mlmodel, chosen, signature, input_example, pip_requirements,
            code_paths, options,
        )  # fmt: skip
    except BaseException:
        if created:  # no half-written model left behind
            shutil.rmtree(path, ignore_errors=True)
        raise


def _write_into(
    model: Any,
    path: str,
    mlmodel: Model,
    chosen: Flavor,
    signature: ModelSignature | Literal[False] | None,
    input_example: Any,
    pip_requirements: Requirements,
    code_paths: Sequence[str | os.PathLike[str]] | None,
    options: dict[str, Any],
) -> Model:
    mlmodel.extra.setdefault("trackline_version", trackline_version())
    code = copy_code_paths(code_paths, path)
    if input_example is not None:
        mlmodel.saved_input_example_info = save_example(input_example, path)
    requirements = chosen.save(model, path, mlmodel, code=code, **options)
    if signature is None and input_example is not None:
        mlmodel.signature = _infer_signature(chosen, path, mlmodel, input_example)
    elif signature:
        mlmodel.signature = signature
    env = write_environment(path, pip_requirements_of(pip_requirements, requirements))
    if PYFUNC_FLAVOR in mlmodel.flavors:
        mlmodel.flavors[PYFUNC_FLAVOR]["env"] = env
    mlmodel.model_size_bytes = _size(path)
    mlmodel.save(path)
    return mlmodel


def _infer_signature(flavor: Flavor, path: str, mlmodel: Model, example: Any) -> ModelSignature:
    """The inputs (and parameters) of ``example``; the outputs of the saved model's
    prediction on it, left out with a warning when predicting fails."""
    data, params = split_example(example)
    inputs = infer_schema(data)
    params_schema = infer_param_schema(params) if params else None
    outputs = None
    if PYFUNC_FLAVOR in mlmodel.flavors:
        try:
            predicted = flavor.load_pyfunc(path, mlmodel).predict(data, params=params)
            outputs = infer_schema(predicted)
        except Exception as e:  # the user's model: any failure only loses the outputs
            warnings.warn(
                f"could not infer the model's output schema from its input example: {e}",
                stacklevel=4,
            )
    return ModelSignature(inputs, outputs, params_schema)


def infer_signature(
    model_input: Any, model_output: Any = None, params: dict[str, Any] | None = None
) -> ModelSignature:
    """The signature of input data, output data and parameters, as ``mlflow.models.
    infer_signature`` infers it."""
    return ModelSignature(
        infer_schema(model_input),
        None if model_output is None else infer_schema(model_output),
        infer_param_schema(params) if params else None,
    )


def _size(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def log_model(
    model: Any,
    name: str,
    flavor: str | Flavor | None = None,
    signature: ModelSignature | Literal[False] | None = None,
    input_example: Any = None,
    pip_requirements: Requirements = None,
    registered_model_name: str | None = None,
    *,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    **options: Any,
) -> ModelInfo:
    """Saves ``model`` (as ``save_model`` does) and uploads the directory to the active
    run's artifacts under ``name``. With ``registered_model_name``, registers it as that
    model's next version (creating the model when missing): the version is
    PENDING_REGISTRATION while the files upload, then READY, or FAILED_REGISTRATION with
    the error when the upload fails."""
    from .. import _fluent

    run_id = _fluent._run()
    with tempfile.TemporaryDirectory(prefix="trackline-model-") as tmp:
        local = os.path.join(tmp, "model")
        mlmodel = _write(
            model, local, Model(artifact_path=name, run_id=run_id), flavor, signature,
            input_example, pip_requirements, code_paths, options,
        )  # fmt: skip
        version = _upload(_fluent.client(), run_id, local, name, registered_model_name)
    return ModelInfo(
        f"runs:/{run_id}/{name}", run_id, name, mlmodel.flavors, mlmodel.signature,
        mlmodel.model_uuid, mlmodel.utc_time_created, version,
    )  # fmt: skip


def _upload(
    client: TracklineClient, run_id: str, local: str, name: str, registered_name: str | None
) -> int | None:
    """Uploads the model directory ``local`` to the run under ``name`` and, with
    ``registered_name``, registers it around the upload; returns the version number."""
    if registered_name is None:
        client.log_artifacts(run_id, local, name)
        return None
    from .._exceptions import AlreadyExists

    try:
        client.create_registered_model(registered_name)
    except AlreadyExists:
        pass  # every version after the first
    source = f"runs:/{run_id}/{name}"
    version = client.create_model_version(
        registered_name, source, run_id, status="PENDING_REGISTRATION"
    ).version
    try:
        client.log_artifacts(run_id, local, name)
    except BaseException as e:
        message = f"uploading the model failed: {e}"[:4096]
        client.update_model_version(
            registered_name, version, status="FAILED_REGISTRATION", status_message=message
        )
        raise
    client.update_model_version(registered_name, version, status="READY")
    return version


def local_model_dir(uri: str | os.PathLike[str], dst_path: str | os.PathLike[str] | None) -> str:
    """A local directory holding the model at ``uri``: a plain path or ``file://`` as it
    is; ``runs:/`` and ``models:/`` downloaded through the module-level API's server,
    ``s3://`` straight from S3 (into ``dst_path``, or a temp dir)."""
    from .._artifact_uris import download_uri

    return download_uri(None, os.fspath(uri), dst_path)


def load_model(
    uri: str | os.PathLike[str], dst_path: str | os.PathLike[str] | None = None
) -> PyFuncModel:
    """The model at ``uri`` (``runs:/<run_id>/<path>``, ``models:/<name>/<version>``,
    ``models:/<name>@<alias>``, ``models:/<name>/<stage>``, ``models:/<name>/latest``,
    ``s3://...``, ``file://...`` or a local path), loaded through its python_function
    flavor, whoever saved it (Trackline or MLflow)."""
    model_dir = local_model_dir(uri, dst_path)
    mlmodel = Model.load(model_dir)
    return PyFuncModel(_load_predictor(model_dir, mlmodel), mlmodel, model_dir)


def _load_predictor(model_dir: str, mlmodel: Model) -> Predictor:
    """The python_function flavor of a local model directory, loaded by the Trackline
    flavor that claims its loader module, else by that module itself when it is installed
    (MLflow's ``_load_pyfunc`` protocol)."""
    settings = mlmodel.flavors.get(PYFUNC_FLAVOR)
    if settings is None:
        raise ValueError(
            f"the model at {model_dir!r} has no {PYFUNC_FLAVOR} flavor (it has"
            f" {', '.join(mlmodel.flavors) or 'none'}): load it with its flavor's load_model"
        )
    add_code_to_path(model_dir, settings)
    loader = str(settings.get("loader_module", ""))
    flavor = flavor_for_loader(loader)
    if flavor is not None:
        return flavor.load_pyfunc(model_dir, mlmodel)
    try:
        module = importlib.import_module(loader)
    except ImportError as e:
        raise ImportError(
            f"no Trackline flavor loads models of loader module {loader!r}, and it is not"
            f" installed ({e}); install the package that provides it"
        ) from e
    data = settings.get("data")
    predictor: Predictor = module._load_pyfunc(os.path.join(model_dir, data) if data else model_dir)
    return predictor
