"""Familiarity: how far an image's features lie from everything the model was trained on.

A classifier answers one of its labels for any image. The pooled backbone features of the
training images of each class form a cloud; an image whose features lie far from every
class's cloud is unlike the training data, whatever label wins the softmax. The distance
is the Mahalanobis distance to the nearest class mean under the classes' shared
covariance (Lee et al., 2018), shrunk towards a multiple of the identity (Ledoit and Wolf,
2004) because 1,280 channels are many for a few thousand images. It is computed inside
the exported graph, as a second output beside the probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from training.data import Split, evaluation_pipeline
from training.model import Classifier

DISTANCE_OUTPUT = "distance"
QUANTILES = 101
"""Held-out distances are stored as their 0th, 1st, ..., 100th percentiles."""


@dataclass(frozen=True)
class ClassStatistics:
    """Per-class means and the whitening of the shared within-class covariance.

    ``distance(x) = min_k |(x - centre) @ whitening - whitened_means[k]|``.
    """

    centre: np.ndarray
    """(C,) mean of the class means, subtracted before whitening (float32 precision)."""
    whitening: np.ndarray
    """(C, C): ``x @ whitening`` has identity covariance within each class."""
    whitened_means: np.ndarray
    """(K, C) class means after centring and whitening."""
    shrinkage: float
    images: int

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray) -> ClassStatistics:
        """Statistics of (N, C) pooled features with class indices (N,)."""
        features = features.astype(np.float64)
        classes = np.unique(labels)
        means = np.stack([features[labels == k].mean(axis=0) for k in classes])
        within = features - means[np.searchsorted(classes, labels)]
        covariance, shrinkage = _ledoit_wolf(within)
        values, vectors = np.linalg.eigh(covariance)
        whitening = vectors / np.sqrt(np.maximum(values, 1e-12))
        centre = means.mean(axis=0)
        return cls(
            centre=centre.astype(np.float32),
            whitening=whitening.astype(np.float32),
            whitened_means=((means - centre) @ whitening).astype(np.float32),
            shrinkage=float(shrinkage),
            images=len(labels),
        )

    def distances(self, features: np.ndarray) -> np.ndarray:
        """(N,) distance of each feature row to its nearest class mean."""
        whitened = (features.astype(np.float64) - self.centre) @ self.whitening
        gaps = whitened[:, np.newaxis, :] - self.whitened_means[np.newaxis]
        return np.sqrt((gaps**2).sum(axis=2).min(axis=1))

    def layer(self) -> MahalanobisDistance:
        """The same distance as a Keras layer, for the exported graph."""
        return MahalanobisDistance(self.centre, self.whitening, self.whitened_means)


def _ledoit_wolf(centred: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrunk covariance of centred rows, and the shrinkage it chose."""
    n, p = centred.shape
    sample = centred.T @ centred / n
    mu = np.trace(sample) / p
    squared = centred**2
    beta = ((squared.T @ squared).sum() / n - (sample**2).sum()) / (p * n)
    delta = ((sample**2).sum() - 2 * mu * np.trace(sample) + p * mu**2) / p
    shrinkage = 0.0 if delta == 0 else min(beta, delta) / delta
    return (1 - shrinkage) * sample + shrinkage * mu * np.eye(p), shrinkage


class MahalanobisDistance(keras.layers.Layer):
    """Pooled features (N, C) → distance to the nearest class mean (N,); fixed weights."""

    def __init__(
        self, centre: np.ndarray, whitening: np.ndarray, whitened_means: np.ndarray, **kwargs
    ) -> None:
        super().__init__(name=DISTANCE_OUTPUT, trainable=False, **kwargs)
        self._values = (centre, whitening, whitened_means)

    def build(self, input_shape) -> None:
        centre, whitening, means = self._values

        def constant(name: str, value: np.ndarray) -> keras.Variable:
            return self.add_weight(
                name=name,
                shape=value.shape,
                initializer=keras.initializers.Constant(value),
                trainable=False,
            )

        self.offset = constant("offset", -centre @ whitening)
        self.whitening = constant("whitening", whitening)
        self.means = constant("means", means.T)
        self.mean_norms = constant("mean_norms", (means**2).sum(axis=1))

    def call(self, pooled):
        whitened = keras.ops.matmul(pooled, self.whitening) + self.offset
        squared = (
            keras.ops.sum(whitened * whitened, axis=1, keepdims=True)
            - 2 * keras.ops.matmul(whitened, self.means)
            + self.mean_norms
        )
        return keras.ops.sqrt(keras.ops.maximum(keras.ops.min(squared, axis=1), 0.0))


def pooled_features(features: keras.Model, split: Split, batch_size: int) -> np.ndarray:
    """(N, C): the feature map of each image averaged over its cells, as the head sees it."""
    pooled = keras.Model(
        features.input, keras.layers.GlobalAveragePooling2D()(features.output), name="pooled"
    )
    return pooled.predict(evaluation_pipeline(split, batch_size), verbose=0)


def with_distance(
    classifier: Classifier, statistics: ClassStatistics
) -> tuple[keras.Model, keras.Model]:
    """The predictor and the pooled head, each also returning the familiarity distance."""
    distance = statistics.layer()
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
