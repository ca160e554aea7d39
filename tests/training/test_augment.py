"""Augmentation layers from the config and the preview grid."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from PIL import Image

from training.augment import augmentation
from training.config import load_config
from training.preview import preview

OFF = {"flip": None, "rotation": 0, "zoom": 0, "translation": 0, "contrast": 0, "brightness": 0}


def test_config_picks_the_layers_and_off_means_none() -> None:
    layers = augmentation(load_config(None, OFF | {"flip": "vertical", "zoom": 0.2}))

    assert [type(layer) for layer in layers.layers] == [
        keras.layers.RandomFlip,
        keras.layers.RandomZoom,
    ]
    assert augmentation(load_config(None, OFF)) is None


def test_augmentation_changes_training_batches_only_and_keeps_the_pixel_range() -> None:
    augment = augmentation(load_config(None, {"brightness": 0.5, "contrast": 0.5}))
    pixels = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)

    trained = np.asarray(augment(pixels, training=True))

    assert not np.allclose(trained, pixels)
    assert trained.min() >= 0 and trained.max() <= 255
    np.testing.assert_array_equal(np.asarray(augment(pixels, training=False)), pixels)


def test_preview_writes_a_grid_of_augmented_images(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(3):
            pixels = np.full((40, 40, 3), 60 * i + (100 if name == "b" else 0), np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / name / f"{i}.png")
    config = load_config(None, {"data": str(tmp_path / "data"), "input_size": 48})

    out = preview(config, tmp_path / "preview.png", images=3, variants=2)

    with Image.open(out) as image:
        assert image.format == "PNG"
        assert np.asarray(image.convert("L")).std() > 10
