"""Sliding-window geometry: which crops of an image a detection pass classifies.

Pure numpy, no model. Boxes are integer ``[x0, y0, x1, y1]`` pixel rectangles with
``x1``/``y1`` exclusive, so a box selects ``image[y0:y1, x0:x1]``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import numpy as np


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, got {number}")
    return number


def _starts(side: int, window: int, stride: int) -> np.ndarray:
    """Window start offsets along one axis; the last window ends exactly at ``side``."""
    size = min(window, side)
    starts = np.arange(0, side - size + 1, stride, dtype=np.int64)
    if starts[-1] != side - size:
        starts = np.append(starts, side - size)
    return starts


def _check_geometry(height: int, width: int, window: int, stride: int) -> tuple[int, ...]:
    height = _positive_int("height", height)
    width = _positive_int("width", width)
    window = _positive_int("window", window)
    stride = _positive_int("stride", stride)
    if stride > window:
        raise ValueError(
            f"stride ({stride}) must not exceed window ({window}): pixels between "
            "windows would never be looked at"
        )
    return height, width, window, stride


def window_boxes(height: int, width: int, window: int, stride: int) -> np.ndarray:
    """Square windows of side ``window`` every ``stride`` pixels, covering the whole image.

    In each row and column the last window is shifted back so that it ends exactly on
    the border; no window leaves the image. A window larger than a side is clamped to
    that side. Boxes come row by row (top to bottom, left to right), without duplicates.

    Returns an ``(N, 4)`` int64 array of ``[x0, y0, x1, y1]``.
    """
    height, width, window, stride = _check_geometry(height, width, window, stride)
    xs = _starts(width, window, stride)
    ys = _starts(height, window, stride)
    y0, x0 = (grid.ravel() for grid in np.meshgrid(ys, xs, indexing="ij"))
    x1 = x0 + min(window, width)
    y1 = y0 + min(window, height)
    return np.stack([x0, y0, x1, y1], axis=1)


def window_count(height: int, width: int, window: int, stride: int) -> int:
    """Number of boxes ``window_boxes`` returns, in closed form: nothing is allocated."""
    height, width, window, stride = _check_geometry(height, width, window, stride)
    return _start_count(height, window, stride) * _start_count(width, window, stride)


def _start_count(side: int, window: int, stride: int) -> int:
    """``len(_starts(side, window, stride))``: regular starts, plus the border one if any."""
    travel = side - min(window, side)
    return travel // stride + 1 + (travel % stride != 0)


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def window_specs(
    height: int, width: int, window_fractions: Sequence[float], overlap: float
) -> list[tuple[int, int]]:
    """Distinct ``(window, stride)`` pairs in pixels for a sliding-window request.

    Each window side is ``fraction * min(height, width)`` rounded half up (at least 1),
    and its stride is ``window * (1 - overlap)`` rounded half up (at least 1). Fractions
    must lie in (0, 1] and ``overlap`` in [0, 1). Fractions that round to the same
    window size yield one pair, in order of first appearance.
    """
    height = _positive_int("height", height)
    width = _positive_int("width", width)
    fractions = list(window_fractions)
    if not fractions:
        raise ValueError("window_fractions must hold at least one fraction")
    for fraction in fractions:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"window fractions must be in (0, 1], got {fraction!r}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
    short_side = min(height, width)
    windows = dict.fromkeys(max(1, _round_half_up(f * short_side)) for f in fractions)
    return [(w, max(1, _round_half_up(w * (1.0 - overlap)))) for w in windows]
