"""Class activation maps on the tiny model's dense graphs, the box they cover, the picture."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.card import Preprocessing
from service.explain.cam import activation_map, explain_steps
from service.explain.pipeline import covered
from service.explain.render import overlay
from service.inference.model import DenseGraphs
from service.inference.sessions import OnnxModel
from service.preprocessing import prepare_bytes, prepare_upload
from tests.service.tiny_model import write_tiny_classifier, write_tiny_dense_graphs

SQUASH = Preprocessing(input_size=(8, 8), resize="squash")


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> tuple[OnnxModel, DenseGraphs]:
    """The tiny classifier and its dense split."""
    folder = tmp_path_factory.mktemp("tiny-dense")
    dense = write_tiny_dense_graphs(folder)
    classifier = OnnxModel.load(write_tiny_classifier(folder / "model.onnx"))
    backbone, head = (
        OnnxModel.load(folder / name) for name in (dense.backbone_file, dense.head_file)
    )
    return classifier, DenseGraphs(backbone, head, dense.stride)


def red_corner(size: int = 8) -> np.ndarray:
    """A blue (H, W, 3) model input whose top-left quarter is red."""
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[..., 2] = 230
    pixels[: size // 2, : size // 2] = (230, 20, 20)
    return pixels


def run_job(steps):  # noqa: ANN001, ANN201
    """Step a runner job to its end; its result and the steps it took."""
    taken = 0
    try:
        while True:
            next(steps)
            taken += 1
    except StopIteration as done:
        return done.value, taken


def test_the_map_has_a_value_per_feature_map_cell_and_its_mean_is_the_classification(
    graphs: tuple[OnnxModel, DenseGraphs],
) -> None:
    classifier, dense = graphs
    pixels = red_corner()
    cam, steps = run_job(explain_steps(pixels, dense))
    features = dense.backbone.run(pixels[np.newaxis])[0]
    assert steps == 1, "the backbone and the head take a turn each"
    assert cam.grid.shape == features.shape[:2] == (4, 4)
    expected = classifier.run(pixels[np.newaxis])[0]
    np.testing.assert_allclose(cam.probabilities, expected, atol=1e-5)
    pooled = dense.head.run(features.reshape(-1, 3).mean(axis=0, keepdims=True))[0]
    np.testing.assert_allclose(cam.probabilities, pooled, atol=1e-6)
    assert cam.index == int(np.argmax(expected))


def test_each_cell_is_the_top_labels_probability_from_that_cell_alone(
    graphs: tuple[OnnxModel, DenseGraphs],
) -> None:
    _, dense = graphs
    features = np.zeros((2, 3, 3), dtype=np.float32)
    features[0, 2] = (255, 0, 0)  # a red cell, top right
    features[1] = (0, 0, 40)  # a blueish bottom row
    cam = activation_map(features, dense.head)
    alone = dense.head.run(features.reshape(-1, 3))[:, cam.index].reshape(2, 3)
    np.testing.assert_allclose(cam.grid, alone, atol=1e-6)
    assert cam.index == 0, "red wins the mean"
    assert np.unravel_index(np.argmax(cam.grid), cam.grid.shape) == (0, 2)


def test_the_map_is_cold_where_the_top_label_is_not(
    graphs: tuple[OnnxModel, DenseGraphs],
) -> None:
    _, dense = graphs
    cam, _ = run_job(explain_steps(red_corner(16), dense))
    assert cam.index == 2, "mostly blue"
    blue = np.ones((8, 8), dtype=bool)
    blue[:4, :4] = False
    assert cam.grid[:4, :4].max() < cam.grid[blue].min(), "the red quarter says blue least"


@pytest.mark.parametrize(
    ("spec", "size", "box"),
    [
        (SQUASH, (512, 430), (0, 0, 512, 430)),
        (Preprocessing(input_size=(224, 224), resize="center_crop", crop_pct=0.875),
         (512, 430), (67.875, 26.875, 444.125, 403.125)),
        (Preprocessing(input_size=(224, 224), resize="center_crop", crop_pct=1.0),
         (300, 600), (0, 150, 300, 450)),
    ],
)  # fmt: skip
def test_the_box_is_what_the_model_input_shows(
    spec: Preprocessing, size: tuple[int, int], box: tuple[float, ...]
) -> None:
    assert covered(size, spec) == pytest.approx(box)


def test_a_prepared_upload_knows_its_upright_size(tmp_path: Path) -> None:
    image = Image.new("RGB", (60, 20), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: upright it is 20 wide and 60 high
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes())
    data = buffer.getvalue()
    prepared = prepare_upload(data, SQUASH, max_pixels=10_000)
    assert prepared.size == (20, 60)
    np.testing.assert_array_equal(prepared.pixels, prepare_bytes(data, SQUASH, max_pixels=10_000))


def test_the_picture_colours_the_box_only_and_most_where_the_map_is_hot() -> None:
    photo = Image.new("RGB", (120, 100), (128, 128, 128))
    grid = np.array([[0.0, 0.0], [0.0, 1.0]])
    png = overlay(photo, (20.0, 10.0, 100.0, 90.0), grid, "blue 0.93")
    picture = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert picture.shape == (100, 120, 3)
    changed = np.abs(picture - 128).sum(axis=2) > 10
    assert not changed[:, :15].any() and not changed[95:].any(), "outside the box: untouched"
    hot, cold = picture[80, 90], picture[45, 40]
    assert hot[0] > max(hot[1], hot[2]) + 60, "the hot cell is red"
    assert cold[2] > cold[0], "a cold cell is blue"
    assert (picture[10:40, 20:100] > 240).all(axis=2).any(), "the caption, in white"
    assert not (picture[40:88, 22:98] > 240).all(axis=2).any(), "the map itself is no white"
