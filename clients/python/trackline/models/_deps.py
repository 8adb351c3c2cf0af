"""Optional dependencies of the model functions, imported when a function needs them: the
base client installs only grpcio and protobuf."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingDependency(ImportError):
    """A package a model function or flavor needs is not installed; the message says what to
    install."""


def require(module: str, package: str, *, extra: str | None) -> ModuleType:
    """``module``, imported; MissingDependency naming ``pip install <package>`` (and the
    Trackline extra that brings it, if one does) when it cannot be imported."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        also = f" (or pip install 'trackline[{extra}]')" if extra else ""
        raise MissingDependency(
            f"this needs {package}, which is not installed: pip install {package}{also}",
            name=module,
        ) from e
