"""Pictures of a detection: the boxes drawn on the image, beside a heatmap of window scores."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from service.detection.merge import Detection, WindowScores

_HEATMAP_SIDE = 256
_BOX_COLOUR = (255, 40, 40)


def heatmap(size: tuple[int, int], windows: WindowScores) -> np.ndarray:
    """Per pixel, the mean best-class score of the windows covering it (coarse grid)."""
    width, height = size
    scale = min(1.0, _HEATMAP_SIDE / max(width, height))
    shape = (max(1, round(height * scale)), max(1, round(width * scale)))
    total, count = np.zeros(shape), np.zeros(shape)
    for (x0, y0, x1, y1), score in zip(
        windows.boxes * scale, windows.scores.max(axis=1), strict=True
    ):
        rows = slice(int(y0), max(int(y0) + 1, round(y1)))
        cols = slice(int(x0), max(int(x0) + 1, round(x1)))
        total[rows, cols] += score
        count[rows, cols] += 1
    return np.divide(total, count, out=np.zeros(shape), where=count > 0)


def draw(rgb: Image.Image, windows: WindowScores, detections: Sequence[Detection]) -> bytes:
    """A PNG: detections on the image (left) and the window-score heatmap over it (right)."""
    boxes = rgb.copy()
    pen = ImageDraw.Draw(boxes)
    line = max(2, round(min(rgb.size) / 150))
    for detection in detections:
        pen.rectangle(detection.box, outline=_BOX_COLOUR, width=line)
        caption = f"{detection.label} {detection.score:.2f}"
        x0, y0 = detection.box[0], detection.box[1]
        pen.rectangle(pen.textbbox((x0, y0), caption), fill=_BOX_COLOUR)
        pen.text((x0, y0), caption, fill=(255, 255, 255))

    grey = Image.fromarray((heatmap(rgb.size, windows) * 255).astype(np.uint8), mode="L")
    coloured = ImageOps.colorize(grey, black="#08306b", mid="#fdd835", white="#d32f2f")
    overlay = Image.blend(rgb, coloured.resize(rgb.size, Image.Resampling.BILINEAR), 0.55)

    canvas = Image.new("RGB", (rgb.width * 2, rgb.height))
    canvas.paste(boxes, (0, 0))
    canvas.paste(overlay, (rgb.width, 0))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()
