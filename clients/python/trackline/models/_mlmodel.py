"""The ``MLmodel`` file: a model directory's description, in MLflow's YAML layout so that
MLflow reads what Trackline writes and the other way round."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ._deps import require
from ._schema import ModelSignature

MLMODEL_FILE = "MLmodel"
PYFUNC_FLAVOR = "python_function"
# Keys this class reads and writes itself; the others a file holds are kept as they are.
_KNOWN = (
    "artifact_path",
    "run_id",
    "utc_time_created",
    "flavors",
    "signature",
    "saved_input_example_info",
    "model_uuid",
    "model_size_bytes",
)


def trackline_version() -> str:
    """The installed Trackline client's version, "unknown" when it is not installed as a
    distribution (run from a source tree)."""
    from importlib import metadata

    try:
        return metadata.version("trackline")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class Model:
    """A model directory's ``MLmodel``: its flavors (name -> that flavor's settings), where
    it was logged (``run_id``, ``artifact_path``), its signature and input example."""

    flavors: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifact_path: str | None = None
    run_id: str | None = None
    signature: ModelSignature | None = None
    saved_input_example_info: dict[str, Any] | None = None
    model_uuid: str = field(default_factory=lambda: uuid.uuid4().hex)
    utc_time_created: str = field(
        default_factory=lambda: str(datetime.now(timezone.utc).replace(tzinfo=None))
    )
    model_size_bytes: int | None = None
    # Other keys of the file (mlflow_version, trackline_version, metadata, ...), kept.
    extra: dict[str, Any] = field(default_factory=dict)

    def add_flavor(self, name: str, **settings: Any) -> None:
        self.flavors[name] = settings

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        if self.artifact_path is not None:
            out["artifact_path"] = self.artifact_path
        if self.run_id is not None:
            out["run_id"] = self.run_id
        out["flavors"] = self.flavors
        out["model_uuid"] = self.model_uuid
        out["utc_time_created"] = self.utc_time_created
        if self.signature is not None:
            out["signature"] = self.signature.to_dict()
        if self.saved_input_example_info is not None:
            out["saved_input_example_info"] = self.saved_input_example_info
        if self.model_size_bytes is not None:
            out["model_size_bytes"] = self.model_size_bytes
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Model:
        signature = d.get("signature")
        size = d.get("model_size_bytes")
        return cls(
            flavors=dict(d.get("flavors") or {}),
            artifact_path=d.get("artifact_path"),
            run_id=d.get("run_id"),
            signature=ModelSignature.from_dict(signature) if signature else None,
            saved_input_example_info=d.get("saved_input_example_info"),
            model_uuid=d.get("model_uuid") or "",
            utc_time_created=str(d.get("utc_time_created", "")),
            model_size_bytes=None if size is None else int(size),
            extra={k: v for k, v in d.items() if k not in _KNOWN},
        )

    def save(self, model_dir: str | os.PathLike[str]) -> None:
        """Writes ``MLmodel`` into ``model_dir``."""
        yaml = require("yaml", "PyYAML", extra="models")
        with open(os.path.join(model_dir, MLMODEL_FILE), "w", encoding="utf-8") as out:
            yaml.safe_dump(self.to_dict(), out, default_flow_style=False)

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str]) -> Model:
        """Reads ``MLmodel`` from ``model_dir`` (a directory, or the file itself);
        FileNotFoundError naming the path when there is none."""
        yaml = require("yaml", "PyYAML", extra="models")
        path = os.fspath(model_dir)
        if os.path.isdir(path):
            path = os.path.join(path, MLMODEL_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no {MLMODEL_FILE} file at {path!r}: not a model directory")
        with open(path, encoding="utf-8") as f:
            body = yaml.safe_load(f)
        if not isinstance(body, dict):
            raise ValueError(f"{path!r} is not an {MLMODEL_FILE} file: it holds no mapping")
        return cls.from_dict(body)
