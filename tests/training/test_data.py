"""Image folders: validation, stratified splits, class weights and the tf.data pipelines."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from service.card import Preprocessing
from service.preprocessing import prepare
from training.data import (
    Split,
    class_weights,
    evaluation_pipeline,
    load_folder,
    stratified_split,
    training_pipeline,
)

SPEC = Preprocessing(input_size=(16, 16), resize="squash")


def make_folder(root: Path, counts: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_stratified_split_keeps_class_proportions_and_is_seeded() -> None:
    labels = np.array([0] * 120 + [1] * 18)

    splits = stratified_split(labels, 0.2, 0.2, seed=1)

    counts = {name: np.bincount(labels[idx], minlength=2).tolist() for name, idx in splits.items()}
    assert counts == {"train": [72, 10], "val": [24, 4], "test": [24, 4]}
    everything = np.concatenate(list(splits.values()))
    assert sorted(everything.tolist()) == list(range(len(labels)))
    again = stratified_split(labels, 0.2, 0.2, seed=1)
    assert all(np.array_equal(splits[k], again[k]) for k in splits)
    other = stratified_split(labels, 0.2, 0.2, seed=2)
    assert not np.array_equal(splits["test"], other["test"])


def test_stratified_split_without_validation_trains_on_the_rest() -> None:
    labels = np.array([0] * 20 + [1] * 10)

    splits = stratified_split(labels, 0.0, 0.2, seed=1)

    assert len(splits["val"]) == 0
    assert (len(splits["train"]), len(splits["test"])) == (24, 6)


def test_stratified_split_refuses_a_class_too_small_to_split() -> None:
    with pytest.raises(ValueError, match="too few"):
        stratified_split(np.array([0, 0, 0, 0, 1, 1]), 0.2, 0.2, seed=0)


def test_class_weights_balance_an_imbalanced_split() -> None:
    weights = class_weights(np.array([0] * 90 + [1] * 10), 2)

    assert weights == pytest.approx({0: 100 / 180, 1: 100 / 20})
    assert weights[0] * 90 == pytest.approx(weights[1] * 10)


def test_load_folder_skips_unreadable_files_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_folder(tmp_path, {"b": 5, "a": 6})
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "b" / "truncated.png").write_bytes((root / "b" / "0.png").read_bytes()[:60])

    with caplog.at_level(logging.WARNING, logger="argos.training.data"):
        folder = load_folder(root, SPEC, 0.2, 0.2, seed=0)

    assert folder.classes == ["a", "b"]
    assert sorted(Path(p).name for p in folder.skipped) == ["notes.txt", "truncated.png"]
    assert "notes.txt" in caplog.text and "truncated.png" in caplog.text
    summary = folder.summary()
    assert summary["counts"] == {
        "train": {"a": 4, "b": 3},
        "val": {"a": 1, "b": 1},
        "test": {"a": 1, "b": 1},
    }
    first = folder.train.files[0]
    with Image.open(first) as image:
        expected = prepare(image, SPEC)
    np.testing.assert_array_equal(folder.train.images[0], expected)
    assert folder.train.images.dtype == np.uint8 and folder.train.images.shape[1:] == (16, 16, 3)


def test_load_folder_refuses_a_class_without_readable_images(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"a": 5})
    (root / "b").mkdir()
    (root / "b" / "x.jpg").write_bytes(b"garbage")

    with pytest.raises(ValueError, match=r"no readable images for classes \['b'\]"):
        load_folder(root, SPEC, 0.2, 0.2, seed=0)


def split_of(count: int) -> Split:
    images = np.arange(count, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    return Split(images, np.arange(count, dtype=np.int32) % 2, [str(i) for i in range(count)])


def test_training_pipeline_reshuffles_every_epoch_and_keeps_every_image() -> None:
    dataset = training_pipeline(split_of(20), batch_size=8, seed=0)

    epochs = [[int(x[0, 0, 0]) for x, _ in dataset.unbatch()] for _ in range(2)]

    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(20))
    assert epochs[0] != epochs[1]


def test_training_pipeline_applies_the_augmentation_to_float_batches() -> None:
    calls = []

    def augment(images: tf.Tensor, training: bool) -> tf.Tensor:
        calls.append(training)
        return images + 1.0

    batch, labels = next(iter(training_pipeline(split_of(4), 4, 0, augment)))

    assert calls == [True] and batch.dtype.name == "float32"
    assert sorted(batch.numpy()[:, 0, 0, 0].tolist()) == [1.0, 2.0, 3.0, 4.0]


def test_evaluation_pipeline_keeps_order() -> None:
    values = [int(x[0, 0, 0]) for x, _ in evaluation_pipeline(split_of(10), 4).unbatch()]

    assert values == list(range(10))
