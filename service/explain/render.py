"""A picture of an explanation: the map over the part of the image it covers, labelled."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from service.explain.pipeline import Explained
from service.preprocessing import Box

RAMP = ("#08306b", "#fdd835", "#d32f2f")
"""The colour ramp, low to high (the page draws the same)."""
_OPACITY = (0.25, 0.7)
"""Opacity of the map's lowest and highest values."""
_INK = (255, 255, 255)


def draw(rgb: Image.Image, explained: Explained, labels: list[str]) -> bytes:
    """A PNG of the upright upload ``rgb`` with its top label's map and name."""
    cam = explained.cam
    caption = f"{labels[cam.index]} {cam.probabilities[cam.index]:.2f}"
    return overlay(rgb, explained.box, cam.grid, caption)


def overlay(rgb: Image.Image, box: Box, grid: np.ndarray, caption: str) -> bytes:
    """A PNG of ``rgb`` with ``grid`` over ``box`` (its pixels): bilinearly upsampled,
    scaled to the map's largest value, in :data:`RAMP`, semi-transparent; and ``caption``."""
    x0, y0, x1, y1 = (round(value) for value in box)
    size = (max(1, x1 - x0), max(1, y1 - y0))
    values = grid.astype(np.float32) / max(float(grid.max()), 1e-12)
    smooth = Image.fromarray(values).resize(size, Image.Resampling.BILINEAR)
    grey = Image.fromarray(np.clip(np.asarray(smooth) * 255, 0, 255).astype(np.uint8))
    faint, strong = (round(255 * opacity) for opacity in _OPACITY)
    alpha = grey.point(lambda level: faint + (strong - faint) * level // 255)
    low, mid, high = RAMP
    picture = rgb.copy()
    picture.paste(ImageOps.colorize(grey, black=low, mid=mid, white=high), (x0, y0), mask=alpha)

    pen = ImageDraw.Draw(picture)
    pen.rectangle((x0, y0, x0 + size[0] - 1, y0 + size[1] - 1), outline=_INK, width=1)
    font = ImageFont.load_default(size=max(12, round(min(rgb.size) / 20)))
    corner = (max(0, x0) + 4, max(0, y0) + 4)
    pen.rectangle(pen.textbbox(corner, caption, font=font), fill=RAMP[0])
    pen.text(corner, caption, fill=_INK, font=font)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
