"""Test-split metrics, the misclassified images, and the over-fitting check on the history."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

Z_95 = 1.959964  # two-sided 95 % quantile of the standard normal distribution


class Labelled(Protocol):
    """Images with their class indices and source files (a split)."""

    images: np.ndarray
    labels: np.ndarray
    files: list[str]


@dataclass(frozen=True)
class Mistake:
    """One misclassified image: the pixels the model saw, its file, truth and prediction."""

    image: np.ndarray
    file: str
    true: str
    predicted: str
    score: float

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "true": self.true,
            "predicted": self.predicted,
            "score": round(self.score, 4),
        }


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``matrix[true, predicted]`` counts."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def classification_metrics(
    probabilities: np.ndarray, labels: np.ndarray, classes: Sequence[str]
) -> dict[str, object]:
    """Accuracy, cross-entropy, per-class precision/recall/F1 and the confusion matrix.

    Precision, recall or F1 of a class with nothing to divide by is 0.
    """
    labels = np.asarray(labels)
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, len(classes))
    per_class = {}
    for i, name in enumerate(classes):
        true_positive = matrix[i, i]
        precision = _ratio(true_positive, matrix[:, i].sum())
        recall = _ratio(true_positive, matrix[i, :].sum())
        per_class[name] = {
            "precision": precision,
            "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall),
            "support": int(matrix[i, :].sum()),
        }
    picked = probabilities[np.arange(len(labels)), labels]
    return {
        "images": len(labels),
        "accuracy": float(np.mean(predicted == labels)),
        "loss": float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(classes), "matrix": matrix.tolist()},
    }


def misclassified(
    probabilities: np.ndarray, split: Labelled, classes: Sequence[str]
) -> list[Mistake]:
    """The images whose top class is wrong, most confident mistake first."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(split.labels))
    mistakes = [
        Mistake(
            split.images[i],
            split.files[i],
            classes[split.labels[i]],
            classes[predicted[i]],
            float(probabilities[i, predicted[i]]),
        )
        for i in wrong
    ]
    return sorted(mistakes, key=lambda mistake: -mistake.score)


def wilson_interval(successes: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default)."""
    if total == 0:
        return 0.0, 1.0
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def overfitting_warning(history: Mapping[str, Sequence[float]], window: int) -> str | None:
    """A message when validation loss stopped improving while training loss kept falling.

    Over-fitting is reported when the best validation loss is older than the last
    ``window`` epochs, the last validation loss is above it, and the training loss fell
    over those epochs (last value below the one ``window`` epochs before).
    """
    train, val = list(history.get("loss", [])), list(history.get("val_loss", []))
    epochs = len(val)
    if epochs <= window or len(train) != epochs:
        return None
    best = int(np.argmin(val))
    if best >= epochs - window or val[-1] <= val[best]:
        return None
    if train[-1] >= train[-1 - window]:
        return None
    return (
        f"possible over-fitting: validation loss was lowest at epoch {best + 1} "
        f"({val[best]:.4f}) and is {val[-1]:.4f} after epoch {epochs}, while training loss "
        f"kept falling ({train[-1 - window]:.4f} → {train[-1]:.4f} over the last {window} epochs)"
    )
