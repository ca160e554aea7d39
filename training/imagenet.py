"""The default model: Keras' stock ImageNet MobileNetV2, exported as an Argos artifact."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np

from service.card import ModelCard, Preprocessing
from service.formats import is_image_path
from service.settings import DEFAULT_MODEL
from training.backbones import get_backbone
from training.export import DenseParts, export, load_inputs

logger = logging.getLogger("argos.imagenet")

BACKBONE = get_backbone("MobileNetV2")
# ImageNet class indices: 151..268 are the dog breeds; 281..285 the domestic cats and
# 286..293 the wild cats (cougar, lynx, leopard, snow leopard, jaguar, lion, tiger,
# cheetah), which the model often names for a house cat's photo: `cat` is the whole family.
IMAGENET_GROUPS = {
    "dog": list(range(151, 269)),
    "cat": list(range(281, 294)),
}
# The standard ImageNet evaluation protocol, under which Keras reports the model's
# accuracy: shorter side to input / 0.875, centre crop, bilinear.
IMAGENET_PREPROCESSING = Preprocessing(
    input_size=(BACKBONE.input_size, BACKBONE.input_size),
    resize="center_crop",
    crop_pct=0.875,
    interpolation="bilinear",
)
FEATURE_LAYER = "out_relu"


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names from Keras' class index, in index order."""
    decoded = keras.applications.imagenet_utils.decode_predictions(np.eye(1000), top=1)
    return [row[0][1] for row in decoded]


def build_model() -> tuple[keras.Model, DenseParts]:
    """MobileNetV2 with its input scaling inside the graph, and its dense split."""
    size = BACKBONE.input_size
    base = BACKBONE.constructor(weights="imagenet", include_top=True)
    pixels = keras.Input((size, size, 3), dtype="float32", name="pixels")
    scaled = BACKBONE.scaling()(pixels)
    model = keras.Model(pixels, base(scaled), name="imagenet_mobilenetv2")
    feature_map = keras.Model(base.input, base.get_layer(FEATURE_LAYER).output)
    features = keras.Model(pixels, feature_map(scaled), name="features")
    pooled = keras.Input((feature_map.output.shape[-1],), name="pooled")
    head = keras.Model(pooled, base.get_layer("predictions")(pooled), name="head")
    return model, DenseParts(features=features, head=head, stride=BACKBONE.stride)


def default_card(version: str) -> ModelCard:
    return ModelCard(
        name=DEFAULT_MODEL,
        version=version,
        labels=imagenet_labels(),
        label_groups=IMAGENET_GROUPS,
        preprocessing=IMAGENET_PREPROCESSING,
        backbone=BACKBONE.name,
        training={
            "data": "ImageNet-1k (ILSVRC 2012), 1000 classes",
            "weights": f"keras.applications.{BACKBONE.name}(weights='imagenet'), alpha 1.0, "
            f"{BACKBONE.input_size}",
            "fine_tuned": False,
        },
        metrics={},
    )


def parity_images(folder: Path | None) -> list[Path]:
    if folder is None:
        return []
    return sorted(p for p in Path(folder).iterdir() if is_image_path(p))


def build_default_model(out_root: Path, images: Path | None) -> tuple[ModelCard, Path]:
    """Export the default model to ``out_root/<name>/<version>``.

    Parity is measured on the photos in ``images``; without them, on seeded noise
    images (recorded as such in the card).
    """
    version = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    card = default_card(version)
    spec = card.preprocessing
    paths = parity_images(images)
    if paths:
        inputs, source = load_inputs(paths, spec), f"{len(paths)} photos from {images}"
    else:
        logger.warning("no parity photos given: comparing Keras and ONNX on noise images")
        rng = np.random.default_rng(0)
        inputs = rng.integers(0, 256, (16, spec.height, spec.width, 3), dtype=np.uint8)
        source = "16 seeded noise images"
    out_dir = Path(out_root) / card.name / version
    model, dense = build_model()
    return export(model, card, inputs, source, out_dir, dense=dense), out_dir
