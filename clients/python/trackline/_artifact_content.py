"""The bytes of the artifacts ``log_dict``, ``log_figure`` and ``log_image`` write, and the
dictionaries ``load_dict`` reads back. The libraries they need (PyYAML, Pillow, numpy) are
imported only when such a function runs; a missing one is an ImportError naming what to
install. A figure is drawn by its own library (matplotlib's ``savefig``, plotly's
``write_html`` or ``write_image``), which Trackline never imports."""

from __future__ import annotations

import io
import json
import posixpath
from typing import Any

YAML_EXTENSIONS = (".yaml", ".yml")


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:
        raise ImportError("YAML artifacts need PyYAML: pip install pyyaml") from None
    return yaml


def _extension(artifact_file: str) -> str:
    return posixpath.splitext(artifact_file)[1].lower()


def dict_bytes(dictionary: Any, artifact_file: str) -> bytes:
    """``dictionary`` as YAML for a ``.yaml``/``.yml`` file, as indented JSON otherwise."""
    if _extension(artifact_file) in YAML_EXTENSIONS:
        text: str = _yaml().safe_dump(dictionary, sort_keys=False, allow_unicode=True)
    else:
        text = json.dumps(dictionary, indent=2, ensure_ascii=False)
    return text.encode("utf-8")


def parse_dict(data: bytes, artifact_file: str) -> dict[str, Any]:
    """The dictionary a JSON or YAML (by extension) artifact holds; ValueError when it holds
    something else."""
    text = data.decode("utf-8")
    if _extension(artifact_file) in YAML_EXTENSIONS:
        found = _yaml().safe_load(text)
    else:
        found = json.loads(text)
    if not isinstance(found, dict):
        raise ValueError(f"{artifact_file!r} holds a {type(found).__name__}, not a dictionary")
    return found


def figure_bytes(figure: Any, artifact_file: str) -> bytes:
    """A matplotlib figure saved in the format the extension names (``.png``, ``.svg``,
    ``.pdf``, ...), or a plotly figure as HTML (``.html``) or an image (``write_image``,
    which needs kaleido)."""
    out = io.BytesIO()
    fmt = _extension(artifact_file).lstrip(".") or "png"
    module = type(figure).__module__
    if module.startswith("plotly"):
        if fmt == "html":
            out.write(figure.to_html(include_plotlyjs="cdn").encode("utf-8"))
        else:
            figure.write_image(out, format=fmt)
    elif hasattr(figure, "savefig"):
        figure.savefig(out, format=fmt)
    else:
        raise TypeError(
            "log_figure takes a matplotlib or plotly figure, not a"
            f" {module}.{type(figure).__name__}"
        )
    return out.getvalue()


def image_bytes(image: Any, artifact_file: str) -> bytes:
    """A numpy array (height x width, with 1, 3 or 4 channels or none; uint8, or floats in
    [0, 1]) or a PIL image, saved by Pillow in the format the extension names (``.png``
    when none)."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("log_image needs Pillow: pip install pillow") from None
    if type(image).__module__ == "numpy":
        image = Image.fromarray(_uint8_pixels(image))
    elif not isinstance(image, Image.Image):
        raise TypeError(f"log_image takes a numpy array or a PIL image, not {type(image).__name__}")
    out = io.BytesIO()
    fmt = _extension(artifact_file).lstrip(".") or "png"
    image.save(out, format=Image.registered_extensions().get(f".{fmt}", fmt.upper()))
    return out.getvalue()


def _uint8_pixels(array: Any) -> Any:
    import numpy as np

    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(
            f"an image array is height x width (x 1, 3 or 4 channels), not {array.shape}"
        )
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        if array.size and not (array.min() >= 0.0 and array.max() <= 1.0):
            raise ValueError("an image array of floats has values in [0, 1]")
        return (array * 255).round().astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.size and not (array.min() >= 0 and array.max() <= 255):
            raise ValueError("an image array of integers has values in [0, 255]")
        return array.astype(np.uint8)
    raise TypeError(f"an image array holds integers or floats, not {array.dtype}")


__all__ = ["dict_bytes", "figure_bytes", "image_bytes", "parse_dict"]
