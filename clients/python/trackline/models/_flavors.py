"""The flavor registry: each flavor module registers a Flavor when imported, and the core
finds the flavor for a model object or for an ``MLmodel``'s ``loader_module`` by convention,
so a new flavor needs no change here.

Conventions: a model whose class lives in package ``pkg`` is offered to ``trackline.pkg``
(``sklearn.linear_model.LogisticRegression`` -> ``trackline.sklearn``); a loader module
``mlflow.a.b`` is looked for in ``trackline.a.b``, then ``trackline.a`` (``mlflow.sklearn``
-> ``trackline.sklearn``); a loader module ``trackline.x`` is imported as it is.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any, Protocol

from ._mlmodel import Model


class Predictor(Protocol):
    """What a flavor's loader returns: the loaded model behind ``PyFuncModel.predict``."""

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any: ...


class Flavor(Protocol):
    """A way to save and load one kind of model."""

    # The key under ``flavors`` in MLmodel ("sklearn", "python_function", ...).
    name: str
    # The python_function ``loader_module`` values whose models this flavor loads.
    loader_modules: tuple[str, ...]

    def accepts(self, model: Any) -> bool:
        """Whether this flavor saves ``model``."""
        ...

    # save(model, model_dir, mlmodel, *, code, **options) -> pip requirements: writes the
    # model's files into model_dir and adds its flavor entries (its own and python_function)
    # to mlmodel; ``code`` is the directory of its code paths (or None), ``options`` the
    # flavor's own (serialization_format, artifacts, ...).
    @property
    def save(self) -> Callable[..., list[str]]: ...

    def load_pyfunc(self, model_dir: str, mlmodel: Model) -> Predictor:
        """The model of a local model directory, behind a ``predict(data, params=None)``."""
        ...


_flavors: dict[str, Flavor] = {}


def register_flavor(flavor: Flavor) -> Flavor:
    """Makes ``flavor`` known to ``log_model`` (by ``accepts``) and ``load_model`` (by its
    loader modules); a flavor of the same name is replaced. Returns ``flavor``."""
    _flavors[flavor.name] = flavor
    return flavor


def get_flavor(name: str) -> Flavor:
    """The flavor registered as ``name`` (importing ``trackline.<name>`` when none is yet);
    ValueError listing the known flavors otherwise."""
    if name not in _flavors:
        _import_quietly(f"trackline.{name}")
    if name not in _flavors:
        raise ValueError(f"no flavor {name!r}; known: {', '.join(sorted(_flavors)) or 'none'}")
    return _flavors[name]


def flavor_for_model(model: Any) -> Flavor:
    """The flavor that saves ``model``; TypeError when none does."""
    for flavor in list(_flavors.values()):
        if flavor.accepts(model):
            return flavor
    package = type(model).__module__.split(".", 1)[0]
    if package.isidentifier():
        _import_quietly(f"trackline.{package}")
    for flavor in list(_flavors.values()):
        if flavor.accepts(model):
            return flavor
    raise TypeError(
        f"no flavor saves a {type(model).__module__}.{type(model).__qualname__}: pass"
        f" flavor= or wrap it in a trackline.pyfunc.PythonModel (known flavors:"
        f" {', '.join(sorted(_flavors)) or 'none'})"
    )


def flavor_for_loader(loader_module: str) -> Flavor | None:
    """The flavor that loads models whose python_function ``loader_module`` is this one,
    or None."""
    for candidate in (None, *_counterparts(loader_module)):
        if candidate is not None:
            _import_quietly(candidate)
        for flavor in list(_flavors.values()):
            if loader_module in flavor.loader_modules:
                return flavor
    return None


def _counterparts(loader_module: str) -> list[str]:
    parts = loader_module.split(".")
    if parts[0] == "trackline":
        return [loader_module]
    if parts[0] != "mlflow" or len(parts) < 2:
        return []
    return [".".join(["trackline", *parts[1:i]]) for i in range(len(parts), 1, -1)]


def _import_quietly(module: str) -> None:
    """Imports ``module`` when it exists; a module that exists but fails to import raises."""
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a parent is not a package
        return
    if found is not None:
        importlib.import_module(module)
