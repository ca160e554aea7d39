"""The classifier: pixels → scaling → backbone → pooling → dropout → softmax, and its freezing.

The feature extractor and the head are separate Keras models that share their weights
with the whole, so the backbone and the head can also be exported on their own (dense
sliding-window inference runs the backbone once and the head per window).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras

from training.backbones import Backbone


@dataclass(frozen=True)
class Classifier:
    """A classifier and its parts; all of them share the same weights.

    ``model``: pixels (N, H, W, 3), raw 0..255 RGB → probabilities (N, classes); what trains.
    ``features``: pixels → feature map (N, H / stride, W / stride, channels), scaling included.
    ``head``: feature map → probabilities (global average pooling, dropout, dense softmax).
    ``pooled_head``: pooled features (N, channels) → probabilities (dropout, dense softmax).
    ``base``: the ``keras.applications`` backbone inside ``features`` (what phases freeze).
    ``predictor``: pixels → probabilities as evaluated and exported, ``head(features(x))``.

    With ``test_time_flip``, ``features`` averages the feature map of the image with the
    mirrored feature map of its mirror image, so ``predictor`` and dense sliding windows
    see both views (twice the backbone's cost); ``model`` still trains on one view.
    """

    model: keras.Model
    features: keras.Model
    head: keras.Model
    pooled_head: keras.Model
    base: keras.Model
    backbone: Backbone
    predictor: keras.Model

    @property
    def stride(self) -> int:
        """Input pixels per feature-map cell."""
        return self.backbone.stride


def build_classifier(
    backbone: Backbone,
    num_classes: int,
    input_size: int,
    weights: str | Path | None,
    dropout: float,
    name: str = "classifier",
    *,
    test_time_flip: bool = False,
) -> Classifier:
    """Build a classifier on ``backbone`` (its top replaced by a ``num_classes`` softmax)."""
    base = backbone.build(input_size, weights)
    pixels = keras.Input((input_size, input_size, 3), dtype="float32", name="pixels")
    scaled = backbone.scaling()(pixels) if backbone.scaling is not None else pixels
    one_view = keras.Model(pixels, base(scaled), name="features")
    features = _flip_averaged(one_view) if test_time_flip else one_view

    channels = features.output.shape[-1]
    pooled = keras.Input((channels,), name="pooled")
    dropped = keras.layers.Dropout(dropout, name="dropout")(pooled)
    probabilities = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")
    pooled_head = keras.Model(pooled, probabilities(dropped), name="pooled_head")

    feature_map = keras.Input(features.output.shape[1:], name="feature_map")
    average = keras.layers.GlobalAveragePooling2D(name="average_pool")(feature_map)
    head = keras.Model(feature_map, pooled_head(average), name="head")

    inputs = keras.Input((input_size, input_size, 3), dtype="float32", name="pixels")
    model = keras.Model(inputs, head(one_view(inputs)), name=name)
    predictor = model
    if test_time_flip:
        predictor = keras.Model(inputs, head(features(inputs)), name=f"{name}_flip_averaged")
    return Classifier(model, features, head, pooled_head, base, backbone, predictor)


def _flip_averaged(features: keras.Model) -> keras.Model:
    """``(f(x) + mirror(f(mirror(x)))) / 2``: the feature map of both views, aligned."""
    pixels = keras.Input(features.input.shape[1:], dtype="float32", name="pixels")
    mirrored = features(keras.ops.flip(pixels, axis=2))
    both = (features(pixels) + keras.ops.flip(mirrored, axis=2)) * 0.5
    return keras.Model(pixels, both, name="features_flip_averaged")


def divide_logits(classifier: Classifier, temperature: float) -> None:
    """Temperature scaling inside the graph: the head's logits divided by ``temperature``."""
    dense = classifier.pooled_head.get_layer("probabilities")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel / temperature, bias / temperature])


LearningRate = float | keras.optimizers.schedules.LearningRateSchedule


@dataclass(frozen=True)
class Optimisation:
    """How a phase compiles: learning rate (or schedule), label smoothing, weight decay."""

    learning_rate: LearningRate
    label_smoothing: float = 0.0
    weight_decay: float = 0.0


@keras.saving.register_keras_serializable(package="argos")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy on class indices with label smoothing (which Keras' sparse loss lacks)."""

    def __init__(self, label_smoothing: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        indices = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        one_hot = keras.ops.one_hot(indices, keras.ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            one_hot, y_pred, label_smoothing=self.label_smoothing
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def compile_classifier(model: keras.Model, optimisation: Optimisation | float) -> None:
    """Adam (AdamW with weight decay) on cross-entropy over class indices, with accuracy."""
    if not isinstance(optimisation, Optimisation):
        optimisation = Optimisation(optimisation)
    if optimisation.weight_decay:
        optimizer = keras.optimizers.AdamW(
            learning_rate=optimisation.learning_rate, weight_decay=optimisation.weight_decay
        )
    else:
        optimizer = keras.optimizers.Adam(learning_rate=optimisation.learning_rate)
    if optimisation.label_smoothing:
        loss = SmoothedSparseCrossentropy(optimisation.label_smoothing)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])


def freeze(classifier: Classifier, optimisation: Optimisation | float) -> None:
    """Phase 1: the whole backbone frozen, only the head trains; recompiles."""
    classifier.base.trainable = False
    compile_classifier(classifier.model, optimisation)


def unfreeze(
    classifier: Classifier, layers_to_unfreeze: int, optimisation: Optimisation | float
) -> None:
    """Phase 2: unfreeze the top ``layers_to_unfreeze`` backbone layers and recompile.

    Like keras-io's ``unfreeze_model``: the last ``layers_to_unfreeze`` layers of the base
    become trainable, except every ``BatchNormalization`` layer, which stays frozen so that
    it keeps using its ImageNet statistics (a trainable BN layer would switch to batch
    statistics during ``fit``, which wrecks small-batch fine-tuning). Use a low learning
    rate (about 1e-5) so that the pretrained features are adjusted, not overwritten.
    """
    layers = classifier.base.layers
    if not 0 <= layers_to_unfreeze <= len(layers):
        raise ValueError(
            f"cannot unfreeze {layers_to_unfreeze} layers: {classifier.backbone.name} has "
            f"{len(layers)}"
        )
    classifier.base.trainable = True
    first = len(layers) - layers_to_unfreeze
    for index, layer in enumerate(layers):
        is_batch_norm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = index >= first and not is_batch_norm
    compile_classifier(classifier.model, optimisation)
