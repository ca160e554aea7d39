"""PNG reports: confusion matrix, training curves, misclassified images, cross-validation,
augmentation preview.

Figures are drawn with ``matplotlib.figure.Figure`` directly (no pyplot, no GUI backend).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from training.evaluate import Mistake

GALLERY_COLUMNS = 6
GALLERY_LIMIT = 60


def confusion_matrix_png(
    matrix: np.ndarray,
    labels: Sequence[str],
    path: Path,
    title: str = "test-split confusion matrix",
) -> Path:
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
    axes.set_title(title)
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


def errors_png(mistakes: Sequence[Mistake], path: Path, limit: int = GALLERY_LIMIT) -> Path:
    """The misclassified images (most confident first), each titled with its file, true
    label, prediction and the predicted class's score."""
    shown = list(mistakes)[:limit]
    columns = min(GALLERY_COLUMNS, max(1, len(shown)))
    rows = max(1, -(-len(shown) // columns))
    figure = Figure(figsize=(2.4 * columns, 2.7 * rows + 0.4))
    grid = np.atleast_2d(figure.subplots(rows, columns, squeeze=False))
    for axes in grid.flat:
        axes.axis("off")
    for axes, mistake in zip(grid.flat, shown, strict=False):
        axes.imshow(np.clip(mistake.image, 0, 255).astype(np.uint8))
        axes.set_title(
            f"{Path(mistake.file).name}\ntrue {mistake.true}\n"
            f"predicted {mistake.predicted} {mistake.score:.2f}",
            fontsize=8,
        )
    heading = f"{len(mistakes)} misclassified image{'' if len(mistakes) == 1 else 's'}"
    if len(mistakes) > limit:
        heading += f" (the {limit} most confident shown)"
    figure.suptitle(heading if mistakes else "no misclassified images")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def cross_validation_png(
    fold_accuracies: Sequence[float],
    accuracy: float,
    interval: tuple[float, float],
    per_class: Mapping[str, Mapping[str, float]],
    path: Path,
) -> Path:
    """Accuracy per fold with the pooled accuracy and its 95 % interval, and per-class
    precision and recall over all folds."""
    figure = Figure(figsize=(11, 4))
    folds_axes, classes_axes = figure.subplots(1, 2)
    folds = np.arange(1, len(fold_accuracies) + 1)
    folds_axes.bar(folds, np.asarray(fold_accuracies) * 100, color="tab:blue", alpha=0.7)
    folds_axes.axhspan(interval[0] * 100, interval[1] * 100, color="tab:orange", alpha=0.25)
    folds_axes.axhline(accuracy * 100, color="tab:orange", label=f"all folds {accuracy:.2%}")
    low = min(min(fold_accuracies, default=accuracy), interval[0]) * 100
    folds_axes.set_ylim(max(0.0, low - 1.0), 100.0)
    folds_axes.set_xticks(folds)
    folds_axes.set_xlabel("fold")
    folds_axes.set_ylabel("accuracy (%)")
    folds_axes.set_title(f"accuracy, 95 % interval {interval[0]:.2%} to {interval[1]:.2%}")
    folds_axes.legend(loc="lower right")
    names = list(per_class)
    positions = np.arange(len(names))
    for offset, metric in ((-0.2, "precision"), (0.2, "recall")):
        values = [per_class[name][metric] * 100 for name in names]
        classes_axes.bar(positions + offset, values, width=0.4, label=metric)
    classes_axes.set_xticks(positions, names)
    lowest = min((per_class[n][m] for n in names for m in ("precision", "recall")), default=1)
    classes_axes.set_ylim(max(0.0, lowest * 100 - 1.0), 100.0)
    classes_axes.set_title("per class, all folds")
    classes_axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path
