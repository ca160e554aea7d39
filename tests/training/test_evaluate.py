"""Test-split metrics and the over-fitting warning."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import classification_metrics, confusion_matrix, overfitting_warning


def test_metrics_of_a_known_prediction() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 1, 1])
    probabilities = np.full((6, 3), 0.1)
    probabilities[np.arange(6), predicted] = 0.8

    metrics = classification_metrics(probabilities, labels, ["a", "b", "c"])

    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["confusion_matrix"]["matrix"] == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    a, b, c = (metrics["per_class"][name] for name in "abc")
    assert (a["precision"], a["recall"], a["support"]) == (1.0, pytest.approx(2 / 3), 3)
    assert a["f1"] == pytest.approx(0.8)
    assert (b["precision"], b["recall"]) == (pytest.approx(0.5), 1.0)
    assert c == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    expected_loss = -(4 * np.log(0.8) + 2 * np.log(0.1)) / 6
    assert metrics["loss"] == pytest.approx(expected_loss)


def test_confusion_matrix_counts_rows_as_truth() -> None:
    matrix = confusion_matrix(np.array([1, 1, 0]), np.array([0, 1, 0]), 2)

    assert matrix.tolist() == [[1, 0], [1, 1]]


def test_rising_validation_loss_with_falling_training_loss_warns() -> None:
    history = {
        "loss": [0.9, 0.6, 0.4, 0.3, 0.2, 0.1],
        "val_loss": [0.8, 0.5, 0.4, 0.45, 0.5, 0.6],
    }

    warning = overfitting_warning(history, window=3)

    assert warning is not None
    assert "epoch 3" in warning and "over-fitting" in warning


@pytest.mark.parametrize(
    "history",
    [
        {"loss": [0.9, 0.6, 0.4, 0.3, 0.2, 0.1], "val_loss": [0.8, 0.6, 0.5, 0.4, 0.35, 0.3]},
        # validation got worse, but so did training: not over-fitting
        {"loss": [0.9, 0.6, 0.4, 0.5, 0.6, 0.7], "val_loss": [0.8, 0.5, 0.4, 0.45, 0.5, 0.6]},
        # the best validation loss is within the window
        {"loss": [0.9, 0.6, 0.4, 0.3, 0.2, 0.1], "val_loss": [0.8, 0.5, 0.45, 0.4, 0.5, 0.6]},
        # too short to tell
        {"loss": [0.9, 0.6], "val_loss": [0.8, 0.9]},
    ],
)
def test_no_warning_without_the_pattern(history: dict[str, list[float]]) -> None:
    assert overfitting_warning(history, window=3) is None
