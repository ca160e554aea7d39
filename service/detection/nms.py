"""Greedy non-maximum suppression over ``[x0, y0, x1, y1]`` boxes, vectorised with numpy.

Box area is ``(x1 - x0) * (y1 - y0)`` (exclusive corners, as in :mod:`service.detection.windows`).

Two overlap metrics:

- ``"iou"``: intersection over union, the usual detection metric.
- ``"ios"``: intersection over the smaller box's area. A box lying entirely inside
  another scores 1.0 whatever their sizes, so with sliding windows of several sizes
  the small windows inside a higher-scoring large window (or a large window around a
  higher-scoring small one) are suppressed, where IoU would keep both.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Metric = Literal["iou", "ios"]


def _areas(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _intersections(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    width = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    height = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    return np.clip(width, 0.0, None) * np.clip(height, 0.0, None)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, 0 where the denominator is 0 (degenerate boxes)."""
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def overlap(box: np.ndarray, boxes: np.ndarray, metric: Metric = "iou") -> np.ndarray:
    """Overlap of one box ``(4,)`` with each of ``boxes`` ``(N, 4)`` under ``metric``."""
    box = np.asarray(box, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    inter = _intersections(box, boxes)
    box_area = (box[2] - box[0]) * (box[3] - box[1])
    areas = _areas(boxes)
    if metric == "iou":
        return _ratio(inter, box_area + areas - inter)
    if metric == "ios":
        return _ratio(inter, np.minimum(box_area, areas))
    raise ValueError(f"metric must be 'iou' or 'ios', got {metric!r}")


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box ``(4,)`` with each of ``boxes`` ``(N, 4)``."""
    return overlap(box, boxes, "iou")


def ios(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over the smaller area of one box ``(4,)`` with each of ``boxes``."""
    return overlap(box, boxes, "ios")


def _check_inputs(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_detections: int | None
) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.asarray(boxes, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {boxes.shape}")
    if scores.shape != (len(boxes),):
        raise ValueError(f"scores must have shape ({len(boxes)},), got {scores.shape}")
    if not np.isfinite(boxes).all() or not np.isfinite(scores).all():
        raise ValueError("boxes and scores must be finite")
    if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        raise ValueError("boxes must satisfy x0 <= x1 and y0 <= y1")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold!r}")
    if max_detections is not None and max_detections < 0:
        raise ValueError(f"max_detections must be >= 0 or None, got {max_detections!r}")
    return boxes, scores


def _greedy(boxes: np.ndarray, order: np.ndarray, threshold: float, metric: Metric) -> list[int]:
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        order = rest[overlap(boxes[best], boxes[rest], metric) <= threshold]
    return keep


def _by_score(indices: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``indices`` sorted by descending score, ties by ascending index."""
    return indices[np.lexsort((indices, -scores[indices]))]


def non_max_suppression(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    max_detections: int | None = None,
    metric: Metric = "iou",
) -> np.ndarray:
    """Greedy NMS: indices of the kept boxes, highest score first (ties: lower index first).

    Going down the scores, a box is dropped when its overlap (``metric``) with an
    already kept box is strictly greater than ``iou_threshold`` (which applies to
    either metric). At most ``max_detections`` indices are returned when it is set.
    """
    boxes, scores = _check_inputs(boxes, scores, iou_threshold, max_detections)
    if metric not in ("iou", "ios"):
        raise ValueError(f"metric must be 'iou' or 'ios', got {metric!r}")
    order = _by_score(np.arange(len(boxes)), scores)
    keep = np.asarray(_greedy(boxes, order, iou_threshold, metric), dtype=np.int64)
    return keep[:max_detections]


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    max_detections: int | None = None,
    metric: Metric = "iou",
) -> np.ndarray:
    """Per-class NMS: boxes of different classes never suppress each other.

    Returns the kept indices over all classes, highest score first (ties: lower index
    first), at most ``max_detections`` of them when it is set.
    """
    boxes, scores = _check_inputs(boxes, scores, iou_threshold, max_detections)
    class_ids = np.asarray(class_ids)
    if class_ids.shape != scores.shape:
        raise ValueError(f"class_ids must have shape {scores.shape}, got {class_ids.shape}")
    kept = [
        members[non_max_suppression(boxes[members], scores[members], iou_threshold, None, metric)]
        for members in (np.flatnonzero(class_ids == c) for c in np.unique(class_ids))
    ]
    merged = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    return _by_score(merged.astype(np.int64), scores)[:max_detections]
