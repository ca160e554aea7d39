"""Dense sliding-window scoring: the backbone runs once per window size over the whole
image, and each window's feature-map cells are average-pooled into the classifier head
(the Fast R-CNN idea)."""

from __future__ import annotations

import numpy as np


def feature_cells(regions: np.ndarray, stride: int, grid: tuple[int, int]) -> np.ndarray:
    """Dense mode: the feature-map cells ``[x0, y0, x1, y1)`` under each region.

    A region as large as one model input spans exactly the cells of one model input
    (7 × 7 for a 224-pixel input at stride 32); every region gets at least one cell.
    """
    rows, cols = grid
    starts = np.floor(regions[:, :2] / stride + 0.5)
    sizes = np.maximum(1, np.rint((regions[:, 2:] - regions[:, :2]) / stride))
    limits = np.array([cols, rows])
    starts = np.clip(starts, 0, limits - 1)
    ends = np.clip(starts + sizes, starts + 1, limits)
    return np.concatenate([starts, ends], axis=1).astype(np.int64)


def pool_cells(features: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Average each window's cells of an (h, w, c) feature map, via an integral image."""
    integral = np.zeros((features.shape[0] + 1, features.shape[1] + 1, features.shape[2]))
    integral[1:, 1:] = features.cumsum(axis=0).cumsum(axis=1)
    x0, y0, x1, y1 = cells.T
    sums = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    areas = ((x1 - x0) * (y1 - y0))[:, np.newaxis]
    return (sums / areas).astype(np.float32)
