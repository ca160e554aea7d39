"""Per-window class scores → one box per object: threshold, suppression, box voting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import Field

from service.detection.nms import batched_nms, overlap
from service.detection.params import DetectParams


@dataclass(frozen=True, slots=True)
class Detection:
    """One object found: the class, its merged score and its box."""

    label: Annotated[str, Field(description="label or label group")]
    score: float
    box: Annotated[tuple[int, int, int, int], Field(description="[x0, y0, x1, y1] in image pixels")]


@dataclass(frozen=True, slots=True)
class WindowScores:
    """Every window of a request with its score for each target class."""

    boxes: np.ndarray  # (N, 4) int, original image pixels
    scores: np.ndarray  # (N, classes)
    classes: list[str]


def class_scores(probabilities: np.ndarray, target_indices: dict[str, list[int]]) -> np.ndarray:
    """(N, labels) probabilities → (N, classes) scores; a group scores the sum of its labels."""
    return np.stack(
        [probabilities[:, indices].sum(axis=1) for indices in target_indices.values()], axis=1
    )


def select(windows: WindowScores, params: DetectParams) -> list[Detection]:
    """Windows above the threshold, merged per class into one box per object.

    Non-maximum suppression picks the peaks; each peak's box then becomes the
    score-weighted mean of the candidate windows it overlaps (box voting), which turns
    the fragments of one object into one box around it; a second suppression removes
    voted boxes that now coincide.
    """
    window_index, class_index = np.nonzero(windows.scores >= params.threshold)
    if len(window_index) == 0:
        return []
    boxes = windows.boxes[window_index].astype(float)
    scores = windows.scores[window_index, class_index]
    merge = {"iou_threshold": params.iou_threshold, "metric": params.merge_metric}
    peaks = batched_nms(boxes, scores, class_index, **merge)
    voted = np.stack([_vote(boxes, scores, class_index, peak, params) for peak in peaks])
    kept = batched_nms(
        voted, scores[peaks], class_index[peaks], max_detections=params.max_detections, **merge
    )
    return [
        Detection(
            label=windows.classes[class_index[peaks[k]]],
            score=float(scores[peaks[k]]),
            box=tuple(int(round(v)) for v in voted[k]),
        )
        for k in kept
    ]


def _vote(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, peak: int, params: DetectParams
) -> np.ndarray:
    """Score-weighted mean of the same-class candidates that overlap the peak's box."""
    same = np.flatnonzero(classes == classes[peak])
    near = same[overlap(boxes[peak], boxes[same], params.merge_metric) > params.iou_threshold]
    members = np.union1d(near, [peak])
    weights = scores[members]
    return (boxes[members] * weights[:, np.newaxis]).sum(axis=0) / weights.sum()
