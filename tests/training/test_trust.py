"""Temperature scaling and familiarity statistics: the numbers a card's trust sections hold."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training.familiarity import ClassStatistics, distance_quantiles, flagged
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


def two_clouds(seed: int = 0):  # noqa: ANN201
    """Two classes of correlated 6-dimensional features around different means."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(6, 6))
    means = np.array([[3.0] * 6, [-3.0] * 6])
    labels = np.repeat([0, 1], 400)
    features = means[labels] + rng.normal(size=(800, 6)) @ mixing
    return features, labels, means, mixing


def test_distances_are_mahalanobis_to_the_nearest_class_mean() -> None:
    features, labels, means, _ = two_clouds()
    statistics = ClassStatistics.fit(features, labels)
    assert 0 <= statistics.shrinkage < 0.05, "800 samples in 6 dimensions need little shrinkage"
    sample_means = np.stack([features[labels == k].mean(axis=0) for k in (0, 1)])
    within = features - sample_means[labels]
    sample = within.T @ within / len(within)
    shrunk = (1 - statistics.shrinkage) * sample + statistics.shrinkage * np.trace(
        sample
    ) / 6 * np.eye(6)
    inverse = np.linalg.inv(shrunk)
    probe = np.array([means[0], [0.0] * 6, [30, -30, 30, -30, 30, -30]])
    expected = [min(np.sqrt((x - m) @ inverse @ (x - m)) for m in sample_means) for x in probe]
    np.testing.assert_allclose(statistics.distances(probe), expected, rtol=1e-4)
    assert statistics.distances(probe)[0] < statistics.distances(probe)[1] < 20


def test_shrinkage_grows_as_samples_get_few_for_their_dimensions() -> None:
    rng = np.random.default_rng(1)
    few = ClassStatistics.fit(rng.normal(size=(40, 200)), np.repeat([0, 1], 20))
    many = ClassStatistics.fit(
        rng.normal(size=(4000, 5)) * [1, 2, 3, 4, 5], np.repeat([0, 1], 2000)
    )
    assert few.shrinkage > 0.8 and many.shrinkage < 0.05


def test_the_keras_layer_computes_the_same_distances() -> None:
    features, labels, *_ = two_clouds()
    statistics = ClassStatistics.fit(features, labels)
    probe = features[::37].astype(np.float32) * 1.5
    layer = statistics.layer()
    in_graph = keras.ops.convert_to_numpy(layer(keras.ops.convert_to_tensor(probe)))
    np.testing.assert_allclose(in_graph, statistics.distances(probe), rtol=1e-3)


def test_far_features_are_flagged_at_the_held_out_rate() -> None:
    features, labels, *_ = two_clouds()
    statistics = ClassStatistics.fit(features[::2], labels[::2])
    held_out = statistics.distances(features[1::2])
    quantiles = distance_quantiles(held_out)
    assert len(quantiles) == 101 and quantiles == sorted(quantiles)
    threshold = float(np.quantile(held_out, 0.98))
    assert flagged(held_out, threshold) == pytest.approx(0.02, abs=0.005)
    far = statistics.distances(features[1::2] * 4 + 20)
    assert flagged(far, threshold) == 1.0
