"""Sliding-window detection: windows → per-window class scores → merged boxes.

Two ways to score windows, one result format:

- ``exact``: every window is cropped and preprocessed like a ``/classify`` upload and goes
  through the full classifier (in fixed-size chunks);
- ``dense``: per window size, the whole image is scaled so that a window becomes one model
  input, the backbone runs once, and each window's feature-map cells are average-pooled
  and fed to the classifier head (the Fast R-CNN idea).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field, field_validator

from service.card import ModelCard, Preprocessing
from service.errors import InvalidParameter
from service.nms import Metric, batched_nms, overlap
from service.preprocessing import center_crop_box, resize_to_input
from service.windows import window_boxes, window_specs

Mode = Literal["exact", "dense"]


class DetectParams(BaseModel):
    """Query parameters of ``/detect``."""

    mode: Mode = Field("exact", description="exact: classify every crop; dense: backbone once")
    window_sizes: list[float] = Field(
        [0.4, 0.55],
        min_length=1,
        max_length=8,
        description="window sides as fractions (0, 1] of the image's short side; one scale each",
    )
    overlap: float = Field(0.75, ge=0, le=0.9, description="overlap of neighbouring windows")
    threshold: float = Field(0.6, gt=0, le=1, description="lowest class score kept")
    classes: list[str] | None = Field(
        None, description="labels or label groups to look for; default: the card's groups"
    )
    iou_threshold: float = Field(0.3, ge=0, le=1, description="overlap above which boxes merge")
    merge_metric: Metric = Field(
        "ios", description="iou, or ios (intersection over the smaller box) to merge nested boxes"
    )
    max_detections: int = Field(10, ge=1, le=100)

    @field_validator("window_sizes")
    @classmethod
    def _fractions(cls, sizes: list[float]) -> list[float]:
        bad = [size for size in sizes if not 0 < size <= 1]
        if bad:
            raise ValueError(f"window sizes must be fractions in (0, 1], got {bad}")
        return sizes


@dataclass(frozen=True, slots=True)
class Detection:
    label: str
    score: float
    box: tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class WindowScores:
    """Every window of a request with its score for each target class."""

    boxes: np.ndarray  # (N, 4) int, original image pixels
    scores: np.ndarray  # (N, classes)
    classes: list[str]


@dataclass(frozen=True, slots=True)
class Scale:
    """One window size: its windows, and for dense mode the scaled image and cells."""

    boxes: np.ndarray
    factor: float  # scaled-image pixels per original pixel


def targets(card: ModelCard, classes: list[str] | None) -> dict[str, list[int]]:
    """The label indices behind each requested class name."""
    names = classes or list(card.label_groups) or list(card.labels)
    try:
        return card.label_indices(names)
    except KeyError as error:
        raise InvalidParameter(
            f"unknown classes {error.args[0]}; use labels of the model or its groups "
            f"{sorted(card.label_groups)}"
        ) from None


def plan(
    width: int, height: int, params: DetectParams, spec: Preprocessing, max_windows: int
) -> list[Scale]:
    """Windows for each requested size, refusing requests over ``max_windows``."""
    try:
        specs = window_specs(height, width, params.window_sizes, params.overlap)
    except ValueError as error:
        raise InvalidParameter(str(error)) from None
    scales = [
        Scale(window_boxes(height, width, window, stride), _factor(window, spec))
        for window, stride in specs
    ]
    count = sum(len(scale.boxes) for scale in scales)
    if count > max_windows:
        raise InvalidParameter(
            f"these parameters need {count} windows on a {width}x{height} image; the limit is "
            f"{max_windows}. Use larger window_sizes or a smaller overlap"
        )
    return scales


def _factor(window: int, spec: Preprocessing) -> float:
    """Scale at which a ``window``-pixel square becomes one model input."""
    short = min(spec.height, spec.width)
    kept = spec.crop_pct if spec.resize == "center_crop" else 1.0
    return short / (window * kept)


def window_inputs(rgb: Image.Image, boxes: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """Exact mode: each window preprocessed exactly like an uploaded image."""
    return np.stack([resize_to_input(rgb, spec, tuple(map(float, box))) for box in boxes])


def input_regions(boxes: np.ndarray, factor: float, spec: Preprocessing) -> np.ndarray:
    """Dense mode: the part of each window the model input covers, in scaled-image pixels."""
    if spec.resize == "center_crop":
        boxes = np.array([center_crop_box(tuple(map(float, box)), spec) for box in boxes])
    return np.asarray(boxes, dtype=np.float64) * factor


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
