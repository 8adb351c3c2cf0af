"""The module-level artifact functions on the active run against a real server: files and
trees, text, dictionaries as JSON and YAML, images from numpy and PIL, matplotlib figures,
listings, downloads by run or URI, and ``load_text`` / ``load_dict`` back; ``import
trackline`` stays free of the optional libraries they use."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trackline
import yaml
from PIL import Image
from trackline import FileInfo

from tests.support.artifacts import TREE, read_tree, sha256, write_tree
from tests.support.servers import ServerProcess


@pytest.fixture
def fluent(server: ServerProcess) -> ServerProcess:
    trackline.set_tracking_uri(server.address)
    return server


def test_files_text_and_dicts(fluent: ServerProcess, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src")
    config = {"lr": 0.01, "layers": [64, 32], "name": "naïve"}
    with trackline.start_run() as run:
        trackline.log_artifact(src / "a.txt")
        trackline.log_artifacts(src, "tree")
        trackline.log_text("héllo\nworld", "notes/summary.txt")
        trackline.log_dict(config, "config.json")
        trackline.log_dict(config, "conf/config.yaml")
        trackline.log_dict(config, "conf/config.yml")
        listed = trackline.list_artifacts()
    assert [f.path for f in listed] == ["a.txt", "conf", "config.json", "notes", "tree"]
    assert trackline.list_artifacts(run.run_id, "notes") == [
        FileInfo("notes/summary.txt", False, 12, sha256("héllo\nworld".encode()))
    ]

    base = f"runs:/{run.run_id}"
    assert trackline.load_text(f"{base}/notes/summary.txt") == "héllo\nworld"
    assert trackline.load_dict(f"{base}/config.json") == config
    assert trackline.load_dict(f"{base}/conf/config.yaml") == config
    assert trackline.load_dict(f"{base}/conf/config.yml") == config
    raw = trackline.load_text(f"{base}/conf/config.yaml")
    assert yaml.safe_load(raw) == config and not raw.lstrip().startswith("{")
    assert json.loads(trackline.load_text(f"{base}/config.json")) == config
    with pytest.raises(ValueError, match="not a dictionary"):
        trackline.load_dict(f"{base}/tree/deep/b c.csv")

    tree = trackline.download_artifacts(run_id=run.run_id, artifact_path="tree", dst_path=tmp_path)
    assert tree == str(tmp_path / "tree") and read_tree(Path(tree)) == TREE
    one = trackline.download_artifacts(f"{base}/tree/a.txt", dst_path=tmp_path / "one")
    assert Path(one).read_bytes() == b"alpha\n"
    everything = trackline.download_artifacts(run_id=run.run_id)
    assert (Path(everything) / "conf" / "config.yml").is_file()
    with pytest.raises(ValueError):
        trackline.download_artifacts(base, run_id=run.run_id)
    with pytest.raises(ValueError):
        trackline.download_artifacts()


def test_images_and_figures(fluent: ServerProcess) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pixels = np.zeros((4, 6, 3), dtype=np.uint8)
    pixels[1, 2] = (255, 0, 10)
    gray = np.linspace(0.0, 1.0, 12).reshape(3, 4)
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [2, 1, 3])
    with trackline.start_run() as run:
        trackline.log_image(pixels, "img/rgb.png")
        trackline.log_image(gray, "img/gray.png")
        trackline.log_image(Image.new("RGBA", (3, 2), (1, 2, 3, 4)), "img/pil.png")
        trackline.log_image(pixels, "img/rgb.jpg")
        trackline.log_figure(fig, "plots/line.png")
        trackline.log_figure(fig, "plots/line.svg")
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            trackline.log_image(gray * 2, "img/bad.png")
        with pytest.raises(ValueError, match="height x width"):
            trackline.log_image(np.zeros((2, 2, 2)), "img/bad.png")
        with pytest.raises(TypeError):
            trackline.log_figure(object(), "plots/bad.png")
    plt.close(fig)

    def image(path: str) -> Image.Image:
        local = trackline.download_artifacts(f"runs:/{run.run_id}/{path}")
        return Image.open(io.BytesIO(Path(local).read_bytes()))

    rgb = np.asarray(image("img/rgb.png"))
    assert rgb.shape == (4, 6, 3) and tuple(rgb[1, 2]) == (255, 0, 10)
    assert np.asarray(image("img/gray.png")).tolist()[2][3] == 255
    assert image("img/pil.png").mode == "RGBA"
    assert image("img/rgb.jpg").format == "JPEG"
    assert image("plots/line.png").format == "PNG"
    svg = trackline.load_text(f"runs:/{run.run_id}/plots/line.svg")
    assert "<svg" in svg
    listed = trackline.list_artifacts(run.run_id, "img")
    assert [f.path for f in listed] == ["img/gray.png", "img/pil.png", "img/rgb.jpg", "img/rgb.png"]


def test_import_stays_slim() -> None:
    code = (
        "import sys, trackline\n"
        "heavy = {'numpy', 'PIL', 'yaml', 'boto3', 'botocore', 'matplotlib', 'requests'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_needs_an_active_run(fluent: ServerProcess) -> None:
    with pytest.raises(RuntimeError, match="no active run"):
        trackline.log_text("x", "x.txt")
    with pytest.raises(RuntimeError, match="no active run"):
        trackline.list_artifacts()
