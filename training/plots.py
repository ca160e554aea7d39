"""PNG reports: confusion matrix, training curves, augmentation preview.

Figures are drawn with ``matplotlib.figure.Figure`` directly (no pyplot, no GUI backend).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def confusion_matrix_png(matrix: np.ndarray, labels: Sequence[str], path: Path) -> Path:
    """Counts with true labels down and predicted labels across."""
    matrix = np.asarray(matrix)
    size = 1.2 + 0.9 * len(labels)
    figure = Figure(figsize=(size + 1.5, size))
    axes = figure.subplots()
    shown = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(shown, ax=axes)
    ticks = range(len(labels))
    axes.set_xticks(ticks, labels, rotation=45, ha="right")
    axes.set_yticks(ticks, labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("test-split confusion matrix")
    middle = matrix.max() / 2 if matrix.size else 0
    for (row, column), count in np.ndenumerate(matrix):
        colour = "white" if count > middle else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=colour)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def curves_png(history: Mapping[str, Sequence[float]], frozen_epochs: int, path: Path) -> Path:
    """Loss and accuracy of both phases, with the start of fine-tuning marked."""
    figure = Figure(figsize=(11, 4))
    for axes, metric in zip(figure.subplots(1, 2), ("loss", "accuracy"), strict=True):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = history.get(key, [])
            axes.plot(range(1, len(values) + 1), values, marker="o", label=label)
        if 0 < frozen_epochs < len(history.get(metric, [])):
            axes.axvline(frozen_epochs + 0.5, color="grey", linestyle="--", label="fine-tuning")
        axes.set_xlabel("epoch")
        axes.set_title(metric)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def image_grid_png(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str], path: Path) -> Path:
    """A grid of 0..255 RGB images, one row per sequence, ``titles`` over the columns."""
    columns = max(len(row) for row in rows)
    figure = Figure(figsize=(2 * columns, 2 * len(rows)))
    grid = np.atleast_2d(figure.subplots(len(rows), columns, squeeze=False))
    for r, row in enumerate(rows):
        for c in range(columns):
            axes = grid[r, c]
            axes.axis("off")
            if c < len(row):
                axes.imshow(np.clip(np.asarray(row[c]), 0, 255).astype(np.uint8))
            if r == 0 and c < len(titles):
                axes.set_title(titles[c], fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path
