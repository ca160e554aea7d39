"""Planning a detection: which windows, at which scale, and the inputs each needs.

The windows are scored in one of two ways (:mod:`service.detection.scoring`):

- ``exact``: every window is cropped and preprocessed like a ``/classify`` upload and goes
  through the full classifier (in fixed-size chunks);
- ``dense``: per window size, the whole image is scaled so that a window becomes one model
  input, the backbone runs once, and each window's feature-map cells are average-pooled
  and fed to the classifier head (the Fast R-CNN idea).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from service.card import ModelCard, Preprocessing
from service.detection.params import DetectParams
from service.detection.windows import window_boxes, window_count, window_specs
from service.errors import InvalidParameter
from service.preprocessing import model_region, resize_to_input


@dataclass(frozen=True, slots=True)
class Scale:
    """One window size: its windows, and the factor that scales the image so that one of
    them becomes one model input (dense mode)."""

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
    """Windows for each requested size.

    The windows are counted in closed form first, and a request over ``max_windows`` is
    refused before any box is built, so the cost of a refusal does not grow with the image.
    """
    try:
        specs = window_specs(height, width, params.window_sizes, params.overlap)
        count = sum(window_count(height, width, window, stride) for window, stride in specs)
    except ValueError as error:
        raise InvalidParameter(str(error)) from None
    if count > max_windows:
        raise InvalidParameter(
            f"these parameters need {count} windows on a {width}x{height} image; the limit is "
            f"{max_windows}. Use larger window_sizes or a smaller overlap"
        )
    return [
        Scale(window_boxes(height, width, window, stride), _factor(window, spec))
        for window, stride in specs
    ]


def _factor(window: int, spec: Preprocessing) -> float:
    """Scale at which a ``window``-pixel square becomes one model input."""
    short = min(spec.height, spec.width)
    kept = spec.crop_pct if spec.resize == "center_crop" else 1.0
    return short / (window * kept)


def window_inputs(rgb: Image.Image, boxes: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """Exact mode: each window preprocessed exactly like an uploaded image."""
    return np.stack([resize_to_input(rgb, spec, tuple(map(float, box))) for box in boxes])


def box_chunks(boxes: np.ndarray, chunk_size: int) -> Iterator[np.ndarray]:
    """Exact mode in bounded memory: ``boxes`` in consecutive slices of ``chunk_size``.

    Cropping one slice at a time with :func:`window_inputs` holds at most ``chunk_size``
    model inputs, instead of one per window of the request.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    for start in range(0, len(boxes), chunk_size):
        yield boxes[start : start + chunk_size]


def input_regions(boxes: np.ndarray, factor: float, spec: Preprocessing) -> np.ndarray:
    """Dense mode: the part of each window the model input covers, in scaled-image pixels."""
    regions = [model_region((x0, y0, x1, y1), spec) for x0, y0, x1, y1 in boxes.tolist()]
    return np.array(regions, dtype=np.float64).reshape(-1, 4) * factor


def work_in_images(
    scales: list[Scale], width: int, height: int, mode: str, spec: Preprocessing
) -> float:
    """A detection's inference work on a ``width`` x ``height`` image, in model inputs'
    worth of backbone: one per window in exact mode; in dense mode each scaled image's area
    over one input's (the head's work is small beside it)."""
    if mode == "exact":
        return float(sum(len(scale.boxes) for scale in scales))
    scaled_area = sum(width * height * scale.factor**2 for scale in scales)
    return scaled_area / (spec.width * spec.height)
