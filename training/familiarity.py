"""Familiarity: how far an image's features lie from everything the model was trained on.

A classifier answers one of its labels for any image. The pooled backbone features of its
training images say what it has seen; an image whose features lie far from all of them is
unlike the training data, whatever label wins the softmax. The distance is the cosine
distance to the ``k``-th nearest training image (Sun et al., 2022: deep nearest
neighbours), which needs no assumption about the shape of each class's cloud. It is
computed inside the exported graph, as a second output beside the probabilities, from
the training images' normalised features stored in the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from training.data import Split, evaluation_pipeline
from training.model import Classifier

DISTANCE_OUTPUT = "distance"
NEIGHBOURS = 10
"""Which nearest training image the distance is measured to."""
QUANTILES = 101
"""Held-out distances are stored as their 0th, 1st, ..., 100th percentiles."""


@dataclass(frozen=True)
class FeatureBank:
    """The unit-length pooled features of every training image."""

    features: np.ndarray
    """(M, C) float32, each row of length 1."""
    neighbours: int = NEIGHBOURS

    @classmethod
    def fit(cls, features: np.ndarray, neighbours: int = NEIGHBOURS) -> FeatureBank:
        """The bank of (M, C) pooled training features; with fewer than ``neighbours``
        images, the distance is to the farthest of them."""
        if len(features) == 0:
            raise ValueError("familiarity needs training images, got none")
        unit = _unit(features.astype(np.float64)).astype(np.float32)
        return cls(unit, min(neighbours, len(features)))

    @property
    def images(self) -> int:
        return len(self.features)

    @property
    def method(self) -> str:
        """What the distance is, for the card."""
        return (
            f"cosine distance of the pooled features to the {self.neighbours}th nearest of "
            f"{self.images} training images"
        )

    def distances(self, features: np.ndarray) -> np.ndarray:
        """(N,) cosine distance of each feature row to its ``k``-th nearest training image."""
        similarities = _unit(features.astype(np.float64)) @ self.features.T.astype(np.float64)
        kth = np.sort(similarities, axis=1)[:, -self.neighbours]
        return 1.0 - kth

    def layer(self) -> NearestNeighbourDistance:
        """The same distance as a Keras layer, for the exported graph."""
        return NearestNeighbourDistance(self.features, self.neighbours)


def _unit(features: np.ndarray) -> np.ndarray:
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


class NearestNeighbourDistance(keras.layers.Layer):
    """Pooled features (N, C) → cosine distance to the k-th nearest bank row (N,)."""

    def __init__(self, bank: np.ndarray, neighbours: int, **kwargs) -> None:
        super().__init__(name=DISTANCE_OUTPUT, trainable=False, **kwargs)
        self._bank, self.neighbours = bank, neighbours

    def build(self, input_shape) -> None:
        self.bank = self.add_weight(
            name="bank",
            shape=self._bank.T.shape,
            initializer=keras.initializers.Constant(self._bank.T),
            trainable=False,
        )

    def call(self, pooled):
        norms = keras.ops.sqrt(keras.ops.sum(pooled * pooled, axis=1, keepdims=True))
        similarities = keras.ops.matmul(pooled / keras.ops.maximum(norms, 1e-12), self.bank)
        nearest, _ = keras.ops.top_k(similarities, self.neighbours)
        return 1.0 - nearest[:, self.neighbours - 1]


def pooled_features(features: keras.Model, split: Split, batch_size: int) -> np.ndarray:
    """(N, C): the feature map of each image averaged over its cells, as the head sees it."""
    pooled = keras.Model(
        features.input, keras.layers.GlobalAveragePooling2D()(features.output), name="pooled"
    )
    return pooled.predict(evaluation_pipeline(split, batch_size), verbose=0)


def with_distance(classifier: Classifier, bank: FeatureBank) -> tuple[keras.Model, keras.Model]:
    """The predictor and the pooled head, each also returning the familiarity distance."""
    distance = bank.layer()
    pixels = keras.Input(classifier.predictor.input.shape[1:], dtype="float32", name="pixels")
    pooled = keras.layers.GlobalAveragePooling2D()(classifier.features(pixels))
    predictor = keras.Model(pixels, [classifier.pooled_head(pooled), distance(pooled)])
    features = keras.Input(classifier.pooled_head.input.shape[1:], name="pooled")
    head = keras.Model(features, [classifier.pooled_head(features), distance(features)])
    return predictor, head


def distance_quantiles(held_out: np.ndarray) -> list[float]:
    """The 0th to 100th percentiles of held-out distances, as the card stores them."""
    return [round(float(q), 4) for q in np.quantile(held_out, np.linspace(0, 1, QUANTILES))]


def flagged(distances: np.ndarray, threshold: float) -> float:
    """Share of ``distances`` beyond ``threshold``: what would be answered unknown."""
    return float(np.mean(distances > threshold)) if len(distances) else 0.0
