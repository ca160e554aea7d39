"""End to end on a tiny folder: ``python -m training train`` → BentoML store → ``/classify``."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import bentoml
import httpx
import numpy as np
import onnx
import pytest
from PIL import Image, ImageDraw

from service.card import verify_artifact
from tests.conftest import argos_server
from training import store
from training.cli import main
from training.config import load_config
from training.export import BACKBONE_FILENAME, HEAD_FILENAME

pytestmark = pytest.mark.slow

SHAPES = {"circle": "ellipse", "square": "rectangle"}
REPORTS = {
    "model.onnx",
    "card.json",
    "config.yaml",
    "history.csv",
    "metrics.json",
    "confusion_matrix.json",
    "confusion_matrix.png",
    "curves.png",
    "errors.png",
}


def shape_image(shape: str, rng: np.random.Generator) -> Image.Image:
    image = Image.new("RGB", (64, 64), tuple(int(v) for v in rng.integers(0, 80, 3)))
    x, y, side = (int(v) for v in rng.integers((4, 4, 24), (20, 20, 36)))
    colour = tuple(int(v) for v in rng.integers((150, 0, 0), (256, 256, 256)))
    getattr(ImageDraw.Draw(image), shape)([x, y, x + side, y + side], fill=colour)
    return image


def make_shapes(root: Path) -> Path:
    """2 classes x 12 PNGs of coloured shapes, plus one file that is not an image."""
    rng = np.random.default_rng(0)
    for label, shape in SHAPES.items():
        (root / label).mkdir(parents=True)
        for i in range(12):
            shape_image(shape, rng).save(root / label / f"{i}.png")
    (root / "circle" / "broken.png").write_bytes(b"this is not a PNG")
    return root


DENSE = {BACKBONE_FILENAME, HEAD_FILENAME}


@pytest.fixture()
def model_name() -> Iterator[str]:
    """A fresh store name; every version registered under it is deleted afterwards."""
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    yield name
    for model in bentoml.models.list(name):
        bentoml.models.delete(model.tag)


def test_train_export_register_and_serve(
    tmp_path: Path, model_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = make_shapes(tmp_path / "shapes")
    args = ["train", "--data", str(data), "--name", model_name, "--out", str(tmp_path / "models")]
    args += ["--weights", "null", "--input-size", "64", "--batch-size", "8", "--verbose", "0"]
    args += ["--epochs-frozen", "1", "--epochs-finetune", "1"]

    with caplog.at_level(logging.WARNING, logger="argos.training.data"):
        assert main(args) == 0

    assert "broken.png" in caplog.text
    [run_dir] = (tmp_path / "models" / model_name).iterdir()
    assert {path.name for path in run_dir.iterdir()} == REPORTS | {"checkpoint"} | DENSE
    card = verify_artifact(run_dir)
    assert card.labels == ["circle", "square"]
    assert card.preprocessing.input_size == (64, 64) and card.preprocessing.resize == "squash"
    assert card.parity.max_abs_diff <= 1e-5 and card.parity.top1_agreement == 1.0
    assert card.training["data"]["skipped"] == [str(data / "circle" / "broken.png")]
    assert sum(sum(split.values()) for split in card.training["data"]["counts"].values()) == 24
    assert card.training["config"] == load_config(run_dir / "config.yaml").model_dump()
    assert (card.training["epochs"]["frozen"], card.training["epochs"]["finetune"]) == (1, 1)
    assert card.metrics["images"] == 4
    wrong = [m["file"] for m in card.metrics["misclassified"]]
    assert len(wrong) == round((1 - card.metrics["accuracy"]) * 4)
    assert json.loads((run_dir / "confusion_matrix.json").read_text())["labels"] == card.labels
    assert len((run_dir / "history.csv").read_text().splitlines()) == 3  # header + 2 epochs
    assert store.exists(card.tag)
    graph = onnx.load(str(run_dir / "model.onnx")).graph
    assert not [n.name for n in graph.node if "random" in (n.name + n.op_type).lower()]
    assert [output.name for output in graph.output] == ["probabilities", "distance"]
    familiarity = card.familiarity
    assert familiarity is not None and familiarity.held_out_images == 4  # the test split
    assert familiarity.training_images == 20 and len(familiarity.held_out_distances) == 101
    assert card.calibration is None, "calibration needs a cross-validation of the recipe"

    photo = io.BytesIO()
    shape_image("ellipse", np.random.default_rng(1)).save(photo, format="PNG")
    with argos_server(card.tag) as url:
        reply = httpx.post(f"{url}/classify", files={"image": photo.getvalue()}, timeout=60)
        dense = httpx.post(
            f"{url}/detect",
            params={"mode": "dense", "classes": ["circle", "square"]},
            files={"image": photo.getvalue()},
            timeout=60,
        )

    assert dense.status_code == 200, dense.text
    assert dense.json()["windows"] > 0

    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == {"name": model_name, "version": card.version}
    assert {p["label"] for p in body["predictions"]} == {"circle", "square"}
    assert 0 <= body["familiarity"] <= 1 and isinstance(body["unknown"], bool)
