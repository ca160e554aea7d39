"""Keras → ONNX export: parity gate, embedded card, artifact hash."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from service.card import ONNX_FILENAME, ModelCard, Preprocessing, verify_artifact
from service.inference.sessions import OnnxModel
from training.export import BACKBONE_FILENAME, HEAD_FILENAME, DenseParts, ParityError, export

SPEC = Preprocessing(input_size=(32, 32), resize="squash")


@pytest.fixture(scope="module")
def split_model() -> tuple[keras.Model, DenseParts]:
    keras.utils.set_random_seed(0)
    pixels = keras.Input((32, 32, 3), name="pixels")
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1)(pixels)
    feature_map = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(scaled)
    features = keras.Model(pixels, feature_map)
    pooled = keras.Input((4,))
    dense = keras.layers.Dense(3, activation="softmax")
    head = keras.Model(pooled, dense(pooled))
    model = keras.Model(pixels, dense(keras.layers.GlobalAveragePooling2D()(feature_map)))
    return model, DenseParts(features=features, head=head, stride=2)


@pytest.fixture(scope="module")
def small_model(split_model: tuple[keras.Model, DenseParts]) -> keras.Model:
    return split_model[0]


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)


def card() -> ModelCard:
    return ModelCard(
        name="small", version="1", labels=["a", "b", "c"], preprocessing=SPEC, backbone="conv"
    )


def test_export_writes_a_verified_artifact_with_parity(
    small_model: keras.Model, inputs: np.ndarray, tmp_path: Path
) -> None:
    exported = export(small_model, card(), inputs, "noise", tmp_path)
    assert verify_artifact(tmp_path) == exported
    assert exported.parity is not None
    assert exported.parity.max_abs_diff <= 1e-5 and exported.parity.top1_agreement == 1.0
    assert exported.parity.images == 6
    assert ModelCard.from_onnx(tmp_path / ONNX_FILENAME).parity == exported.parity
    onnx_out = OnnxModel.load(tmp_path / ONNX_FILENAME).run(inputs)
    keras_out = np.asarray(small_model(inputs.astype(np.float32)))
    assert np.abs(onnx_out - keras_out).max() <= 1e-5


def test_export_refuses_when_parity_is_out_of_tolerance(
    small_model: keras.Model, inputs: np.ndarray, tmp_path: Path
) -> None:
    with pytest.raises(ParityError, match="ONNX differs from Keras"):
        export(small_model, card(), inputs, "noise", tmp_path / "out", tolerance=-1.0)
    assert not (tmp_path / "out").exists()


def test_dense_parts_are_exported_and_reproduce_the_model(
    split_model: tuple[keras.Model, DenseParts], inputs: np.ndarray, tmp_path: Path
) -> None:
    model, parts = split_model
    exported = export(model, card(), inputs, "noise", tmp_path, dense=parts)
    assert exported.dense is not None and exported.dense.stride == 2
    backbone = OnnxModel.load(tmp_path / BACKBONE_FILENAME)
    head = OnnxModel.load(tmp_path / HEAD_FILENAME)
    larger = np.random.default_rng(1).integers(0, 256, (1, 48, 40, 3), dtype=np.uint8)
    assert backbone.run(larger).shape == (1, 24, 20, 4)
    pooled = backbone.run(inputs).mean(axis=(1, 2))
    assert (
        np.abs(head.run(pooled) - OnnxModel.load(tmp_path / ONNX_FILENAME).run(inputs)).max() < 1e-5
    )
