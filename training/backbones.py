"""The ImageNet backbones a classifier can stand on, and the input scaling each one needs.

Every Argos graph takes raw RGB pixels (0..255), so a backbone's own preprocessing lives
inside the model as a Keras layer that tf2onnx converts: see :attr:`Backbone.scaling`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras

IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="argos")
class CaffeScaling(keras.layers.Layer):
    """RGB 0..255 → BGR minus the ImageNet channel means: Caffe-style ``preprocess_input``.

    The same arithmetic as ``keras.applications.resnet50.preprocess_input``, as a channel
    gather and a subtraction, which convert to plain ONNX ``Gather`` and ``Sub``.
    """

    def call(self, pixels):
        bgr = keras.ops.take(pixels, [2, 1, 0], axis=-1)
        return bgr - keras.ops.convert_to_tensor(IMAGENET_MEAN_BGR, dtype=pixels.dtype)


def _unit_range() -> keras.layers.Layer:
    return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale_to_unit")


def _caffe() -> keras.layers.Layer:
    return CaffeScaling(name="caffe_scaling")


@dataclass(frozen=True)
class Backbone:
    """A ``keras.applications`` constructor and what Argos needs to know about it."""

    name: str
    constructor: Callable[..., keras.Model]
    input_size: int = 224
    scaling: Callable[[], keras.layers.Layer] | None = None
    stride: int = 32
    min_size: int = 32

    def build(self, input_size: int, weights: str | Path | None) -> keras.Model:
        """The backbone without its top: pixels (already scaled) → feature map."""
        if input_size < self.min_size:
            raise ValueError(f"{self.name} needs an input of at least {self.min_size} pixels")
        if weights not in (None, "imagenet") and not Path(weights).is_file():
            raise FileNotFoundError(f"{self.name} weights file {weights} does not exist")
        return self.constructor(
            include_top=False,
            weights=None if weights is None else str(weights),
            input_shape=(input_size, input_size, 3),
        )


BACKBONES: dict[str, Backbone] = {
    backbone.name: backbone
    for backbone in (
        # Scales pixels to [-1, 1].
        Backbone("MobileNetV2", keras.applications.MobileNetV2, scaling=_unit_range),
        # Rescaling and normalisation are part of the Keras model already.
        Backbone("EfficientNetB0", keras.applications.EfficientNetB0),
        # Caffe-style: BGR, ImageNet means subtracted, no scaling.
        Backbone("ResNet50", keras.applications.ResNet50, scaling=_caffe),
        Backbone("VGG16", keras.applications.VGG16, scaling=_caffe),
    )
}


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise KeyError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}") from None


def normalize_weights(weights: str | None) -> str | None:
    """``imagenet``, a weights file path, or ``None`` (also spelled ``none``)."""
    if weights is None or weights.lower() == "none":
        return None
    return "imagenet" if weights.lower() == "imagenet" else weights
