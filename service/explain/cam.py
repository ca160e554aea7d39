"""Class activation maps: the classifier's head on each cell of the backbone's feature map.

A model with dense graphs (``card.dense``) is ``head(mean of backbone cells)``, so the
backbone's feature map gives the classification and the map together: the head on the
mean-pooled cells is the classification, the head on each cell alone says how much that
part of the image shows the top label.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from service.inference.model import DenseGraphs
from service.inference.sessions import OnnxModel


@dataclass(frozen=True, slots=True)
class ActivationMap:
    probabilities: np.ndarray
    """(labels,): the head on the mean-pooled features, i.e. the classification."""
    index: int
    """The top label."""
    grid: np.ndarray
    """(h, w): the top label's probability from each feature-map cell alone."""
    distance: float | None
    """The familiarity distance of the mean-pooled features, if the head gives one."""


def activation_map(features: np.ndarray, head: OnnxModel) -> ActivationMap:
    """An (h, w, c) feature map → its classification and map, in one head call of
    1 + h * w rows (the mean first, then the cells)."""
    rows, cols, channels = features.shape
    cells = features.reshape(rows * cols, channels)
    rows_in = np.concatenate([features.mean(axis=(0, 1))[np.newaxis], cells])
    outputs, *distances = head.run_outputs(rows_in, head.output_names)
    probabilities = outputs[0]
    index = int(np.argmax(probabilities))
    distance = float(distances[0][0]) if distances else None
    return ActivationMap(probabilities, index, outputs[1:, index].reshape(rows, cols), distance)


def explain_steps(pixels: np.ndarray, graphs: DenseGraphs) -> Generator[None, None, ActivationMap]:
    """A runner job for one (H, W, 3) model input: the backbone, then the head."""
    features = graphs.backbone.run(pixels[np.newaxis])[0]
    yield
    return activation_map(features, graphs.head)
