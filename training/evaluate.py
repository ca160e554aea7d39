"""Test-split metrics and the over-fitting check on the training history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


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
