"""Models in MLflow's format: save, log, register and load them anywhere.

A model is a directory with an ``MLmodel`` file (flavors, signature, input example, where it
was logged), its serialized model and environment files, laid out as MLflow lays it out, so
MLflow loads the models Trackline saves and the other way round. Flavors are submodules
(``trackline.sklearn``, ``trackline.pyfunc``) that register themselves (``register_flavor``).

Importing this package imports no third-party module; PyYAML, cloudpickle, numpy, pandas and
the flavors' libraries are imported when a function needs them (``MissingDependency`` says
what to install when one is missing).
"""

from ._api import ModelInfo, infer_signature, load_model, log_model, save_model
from ._deps import MissingDependency
from ._enforce import SchemaError
from ._flavors import Flavor, Predictor, get_flavor, register_flavor
from ._mlmodel import Model
from ._pyfunc_model import PyFuncModel
from ._schema import ColSpec, ModelSignature, ParamSchema, ParamSpec, Schema, TensorSpec

__all__ = [
    "ColSpec",
    "Flavor",
    "MissingDependency",
    "Model",
    "ModelInfo",
    "ModelSignature",
    "ParamSchema",
    "ParamSpec",
    "Predictor",
    "PyFuncModel",
    "Schema",
    "SchemaError",
    "TensorSpec",
    "get_flavor",
    "infer_signature",
    "load_model",
    "log_model",
    "register_flavor",
    "save_model",
]
