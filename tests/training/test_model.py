"""The classifier's parts, the backbone registry and the two-phase freezing."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import keras
import numpy as np
import pytest

from service.card import Preprocessing
from training.backbones import BACKBONES, Backbone, CaffeScaling, get_backbone
from training.export import export
from training.model import Classifier, build_classifier, freeze, unfreeze

SIZE = 64


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    keras.utils.set_random_seed(0)
    return build_classifier(get_backbone("MobileNetV2"), 3, SIZE, None, 0.2)


def pixels(count: int, size: int = SIZE) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, size, size, 3)).astype(np.float32)


def batch_norms(base: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]


def test_parts_share_weights_and_compose_to_the_model(classifier: Classifier) -> None:
    x = pixels(2)
    feature_map = classifier.features(x)
    pooled = np.asarray(feature_map).mean(axis=(1, 2))

    assert feature_map.shape == (2, SIZE // classifier.stride, SIZE // classifier.stride, 1280)
    np.testing.assert_allclose(classifier.head(feature_map), classifier.model(x), atol=1e-6)
    np.testing.assert_allclose(classifier.pooled_head(pooled), classifier.model(x), atol=1e-6)
    dense = classifier.pooled_head.get_layer("probabilities")
    assert any(w is dense.kernel for w in classifier.model.weights)
    assert classifier.base in classifier.features.layers


def conv_backbone(include_top: bool, weights: None, input_shape: tuple[int, ...]) -> keras.Model:
    """A one-convolution stand-in for a keras.applications backbone: not mirror-symmetric."""
    pixels = keras.Input(input_shape)
    return keras.Model(pixels, keras.layers.Conv2D(8, 3, strides=4, activation="relu")(pixels))


def test_flip_averaged_predictor_sees_both_views_and_keeps_the_dense_contract() -> None:
    keras.utils.set_random_seed(0)
    scaling = partial(keras.layers.Rescaling, 1 / 255)
    backbone = Backbone("conv", conv_backbone, SIZE, scaling, stride=4, min_size=8)
    flipped = build_classifier(backbone, 3, SIZE, None, 0.2, test_time_flip=True)
    x = pixels(2)
    mirror = x[:, :, ::-1]

    prediction = np.asarray(flipped.predictor(x))
    assert not np.allclose(flipped.model(x), flipped.model(mirror), atol=1e-4)
    np.testing.assert_allclose(flipped.predictor(mirror), prediction, atol=1e-6)
    pooled = np.asarray(flipped.features(x)).mean(axis=(1, 2))
    np.testing.assert_allclose(flipped.pooled_head(pooled), prediction, atol=1e-6)
    assert flipped.model.count_params() == flipped.predictor.count_params()


def test_phase_one_trains_only_the_head(classifier: Classifier) -> None:
    freeze(classifier, 1e-3)

    assert classifier.base.trainable_weights == []
    trainable = {id(w) for w in classifier.model.trainable_weights}
    assert trainable == {id(w) for w in classifier.pooled_head.weights}


@pytest.mark.parametrize("count", [0, 1, 30, 154])
def test_phase_two_unfreezes_exactly_the_top_layers_without_batch_norm(
    classifier: Classifier, count: int
) -> None:
    freeze(classifier, 1e-3)
    unfreeze(classifier, count, 1e-5)

    layers = classifier.base.layers
    top = layers[len(layers) - count :] if count else []
    for layer in layers:
        is_batch_norm = isinstance(layer, keras.layers.BatchNormalization)
        assert layer.trainable == (layer in top and not is_batch_norm), layer.name
    assert all(not bn.trainable and not bn.trainable_weights for bn in batch_norms(classifier.base))
    weighted_top = [
        layer for layer in top if layer.weights and layer not in batch_norms(classifier.base)
    ]
    expected = {id(w) for layer in weighted_top for w in layer.trainable_weights}
    expected |= {id(w) for w in classifier.pooled_head.weights}
    assert {id(w) for w in classifier.model.trainable_weights} == expected
    assert classifier.model.optimizer.learning_rate.numpy() == pytest.approx(1e-5)


def test_unfreeze_refuses_more_layers_than_the_base_has(classifier: Classifier) -> None:
    with pytest.raises(ValueError, match="cannot unfreeze 1000 layers"):
        unfreeze(classifier, 1000, 1e-5)


def test_batch_norm_stays_in_inference_mode_while_fine_tuning(classifier: Classifier) -> None:
    freeze(classifier, 1e-3)
    unfreeze(classifier, 30, 1e-5)
    before = [np.array(bn.moving_mean) for bn in batch_norms(classifier.base)]

    classifier.model.fit(pixels(4), np.array([0, 1, 2, 0]), epochs=1, verbose=0)

    after = [np.array(bn.moving_mean) for bn in batch_norms(classifier.base)]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_and_runs_on_raw_pixels(name: str) -> None:
    backbone = get_backbone(name)
    built = build_classifier(backbone, 2, 32, None, 0.1)

    probabilities = np.asarray(built.model(pixels(1, 32)))

    assert probabilities.shape == (1, 2)
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert built.features.output.shape[1:3] == (32 // backbone.stride, 32 // backbone.stride)


def test_backbones_scale_as_their_keras_preprocess_input_does() -> None:
    x = pixels(2, 8)
    ours = {
        "MobileNetV2": get_backbone("MobileNetV2").scaling()(x),
        "ResNet50": get_backbone("ResNet50").scaling()(x),
        "VGG16": get_backbone("VGG16").scaling()(x),
    }
    keras_preprocess = {
        "MobileNetV2": keras.applications.mobilenet_v2.preprocess_input,
        "ResNet50": keras.applications.resnet50.preprocess_input,
        "VGG16": keras.applications.vgg16.preprocess_input,
    }
    for name, scaled in ours.items():
        np.testing.assert_allclose(scaled, keras_preprocess[name](x.copy()), atol=1e-4)
    assert get_backbone("EfficientNetB0").scaling is None


def test_unknown_backbone_names_the_choices() -> None:
    with pytest.raises(KeyError, match="EfficientNetB0"):
        get_backbone("AlexNet")


def test_missing_weights_file_is_reported() -> None:
    with pytest.raises(FileNotFoundError, match="no-such.weights.h5"):
        get_backbone("VGG16").build(32, "no-such.weights.h5")


def test_caffe_scaling_converts_to_onnx_with_parity(tmp_path: Path) -> None:
    spec = Preprocessing(input_size=(16, 16), resize="squash")
    inputs = keras.Input((16, 16, 3), name="pixels")
    x = CaffeScaling()(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    from service.card import ModelCard

    card = ModelCard(
        name="caffe", version="1", labels=["a", "b"], preprocessing=spec, backbone="test"
    )
    exported = export(model, card, pixels(4, 16).astype(np.uint8), "noise", tmp_path)

    assert exported.parity is not None and exported.parity.max_abs_diff <= 1e-5
