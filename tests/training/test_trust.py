"""Temperature scaling and familiarity statistics: the numbers a card's trust sections hold."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training.familiarity import FeatureBank, distance_quantiles, flagged
from training.temperature import (
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    log_loss,
    rescale,
)


def overconfident(n: int = 4000, temperature: float = 2.5, seed: int = 0):  # noqa: ANN201
    """Labels drawn from softmax(z), scores reported as softmax(z * temperature): a model
    exactly ``temperature`` times too sure of itself."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, 3))
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in truth])
    scores = np.exp(logits * temperature)
    return scores / scores.sum(axis=1, keepdims=True), labels


def test_the_fitted_temperature_undoes_overconfidence() -> None:
    scores, labels = overconfident()
    temperature = fit_temperature(scores, labels)
    assert temperature == pytest.approx(2.5, rel=0.1)
    calibrated = rescale(scores, temperature)
    assert expected_calibration_error(calibrated, labels) < 0.02
    assert expected_calibration_error(scores, labels) > 0.1
    assert log_loss(calibrated, labels) < log_loss(scores, labels)
    assert (calibrated.argmax(axis=1) == scores.argmax(axis=1)).all(), "ranking unchanged"


def test_ece_is_the_weighted_gap_between_confidence_and_accuracy() -> None:
    # Half the images at 0.9 confidence, all right; half at 0.6, half right.
    scores = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 4)
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    assert expected_calibration_error(scores, labels) == pytest.approx(0.5 * 0.1 + 0.5 * 0.1)


def test_the_report_cross_fits_each_fold() -> None:
    scores, labels = overconfident(n=3000)
    folds = np.repeat([1, 2, 3], 1000)
    report = calibration_report(scores, labels, folds)
    assert report["ece_after"] < 0.03 < report["ece_before"]
    assert [fold["fold"] for fold in report["per_fold"]] == [1, 2, 3]
    fitted = {fold["temperature"] for fold in report["per_fold"]}
    assert len(fitted) == 3, "each fold gets the temperature of the other two"
    assert report["temperature"] == pytest.approx(fit_temperature(scores, labels), abs=1e-3)


def test_the_distance_is_to_the_kth_nearest_training_image() -> None:
    bank = FeatureBank.fit(np.eye(12) * 3.0, neighbours=2)  # 12 orthogonal directions
    probe = np.array([[5.0] + [0.0] * 11, [1.0, 1.0] + [0.0] * 10, [1.0] * 12])
    # On a bank row: its 2nd nearest is orthogonal (distance 1); between two rows: both at
    # 45 degrees; along the diagonal: every row at the same angle.
    expected = [1.0, 1 - np.sqrt(0.5), 1 - 1 / np.sqrt(12)]
    np.testing.assert_allclose(bank.distances(probe), expected, atol=1e-6)
    few = FeatureBank.fit(np.eye(3), neighbours=10)
    assert few.neighbours == 3 and few.distances(np.eye(3)).tolist() == [1.0, 1.0, 1.0]


def test_the_keras_layer_computes_the_same_distances() -> None:
    rng = np.random.default_rng(0)
    bank = FeatureBank.fit(rng.random((200, 32)))
    probe = rng.random((17, 32)).astype(np.float32) * 5
    in_graph = keras.ops.convert_to_numpy(bank.layer()(keras.ops.convert_to_tensor(probe)))
    np.testing.assert_allclose(in_graph, bank.distances(probe), atol=1e-5)


def test_other_things_are_flagged_at_the_held_out_rate() -> None:
    rng = np.random.default_rng(2)
    directions = rng.normal(size=(2, 64))
    seen = np.repeat(directions, 300, axis=0) + rng.normal(scale=0.3, size=(600, 64))
    bank = FeatureBank.fit(seen[::2])
    held_out = bank.distances(seen[1::2])
    quantiles = distance_quantiles(held_out)
    assert len(quantiles) == 101 and quantiles == sorted(quantiles)
    threshold = float(np.quantile(held_out, 0.98))
    assert flagged(held_out, threshold) == pytest.approx(0.02, abs=0.005)
    other = rng.normal(size=(100, 64)) + rng.normal(size=64)
    assert flagged(bank.distances(other), threshold) == 1.0
