"""Window scoring as runner jobs: generators that do one bounded piece of inference per
step (a chunk of windows, or one backbone pass), so that a detection request takes turns
with classification batches instead of stalling them, and holds one chunk of crops at a
time."""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
from PIL import Image

from service.card import Preprocessing
from service.detection.dense import feature_cells, pool_cells
from service.detection.plan import Scale, box_chunks, input_regions, window_inputs
from service.inference.model import DenseGraphs
from service.inference.sessions import OnnxModel
from service.preprocessing import scale_image

Steps = Generator[None, None, np.ndarray]


def exact_steps(
    rgb: Image.Image, boxes: np.ndarray, spec: Preprocessing, model: OnnxModel, chunk_size: int
) -> Steps:
    """Each window cropped and preprocessed like an upload, classified ``chunk_size`` at a
    time; returns (windows, labels) probabilities."""
    parts = []
    for chunk in box_chunks(boxes, chunk_size):
        parts.append(model.run(window_inputs(rgb, chunk, spec)))
        yield
    return np.concatenate(parts)


def dense_steps(
    rgb: Image.Image,
    scales: list[Scale],
    spec: Preprocessing,
    graphs: DenseGraphs,
    chunk_size: int,
) -> Steps:
    """Per window size, the backbone once over the scaled image, then the head on each
    window's pooled cells, ``chunk_size`` windows at a time."""
    parts = []
    for scale in scales:
        feature_map = graphs.backbone.run(scale_image(rgb, scale.factor, spec))[0]
        yield
        regions = input_regions(scale.boxes, scale.factor, spec)
        pooled = pool_cells(
            feature_map, feature_cells(regions, graphs.stride, feature_map.shape[:2])
        )
        for start in range(0, len(pooled), chunk_size):
            parts.append(graphs.head.run(pooled[start : start + chunk_size]))
            yield
    return np.concatenate(parts)
