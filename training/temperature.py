"""Temperature scaling: one number that makes a classifier's scores mean what they say.

A softmax classifier's scores ``softmax(z)`` are rescaled to ``softmax(z / T)``; ``T`` is
fitted by minimising the log-loss of out-of-fold predictions (Guo et al., 2017). Since
``log softmax(z) = z - logsumexp(z)``, the rescaling needs only the probabilities. The
calibration is judged by the expected calibration error (ECE): the gap between the top-1
score and the top-1 accuracy, averaged over equal-width score bins, weighted by their size.
"""

from __future__ import annotations

import math

import numpy as np

BINS = 15
_SEARCH = (-3.0, 3.0)
"""Range of ``log T`` searched: ``T`` from 0.05 to 20."""
_FLOOR = 1e-12


def rescale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(p) / T)`` row by row: the scores the logits divided by ``T`` give."""
    logits = np.log(np.clip(probabilities, _FLOOR, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-probability of the true class."""
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, _FLOOR, None))))


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS
) -> float:
    """Top-1 ECE over ``bins`` equal-width confidence bins."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap = abs(confidence[members].mean() - correct[members].mean())
            error += members.mean() * gap
    return float(error)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` that minimises the log-loss of ``rescale(probabilities, T)``.

    The loss is convex in ``1 / T``, so a golden-section search over ``log T`` finds it.
    """
    ratio = (math.sqrt(5) - 1) / 2
    low, high = _SEARCH

    def loss(log_t: float) -> float:
        return log_loss(rescale(probabilities, math.exp(log_t)), labels)

    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    while high - low > 1e-4:
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return math.exp((low + high) / 2)


def calibration_report(
    probabilities: np.ndarray, labels: np.ndarray, folds: np.ndarray
) -> dict[str, object]:
    """Out-of-fold calibration, before and after temperature scaling, per fold and pooled.

    ``folds`` gives each prediction's fold. The temperature reported for the final model is
    fitted on every prediction; the "after" figures are cross-fitted (each fold rescaled
    with the temperature fitted on the other folds), so they do not flatter the method;
    with a single fold done, it is rescaled with its own.
    """
    temperature = fit_temperature(probabilities, labels)
    after = np.empty_like(probabilities)
    per_fold = []
    for fold in np.unique(folds):
        inside = folds == fold
        others = ~inside
        fitted = (
            fit_temperature(probabilities[others], labels[others]) if others.any() else temperature
        )
        after[inside] = rescale(probabilities[inside], fitted)
        per_fold.append(
            {
                "fold": int(fold),
                "temperature": round(fitted, 4),
                **_figures(probabilities[inside], after[inside], labels[inside]),
            }
        )
    return {
        "method": "temperature scaling of the logits, fitted on out-of-fold log-loss",
        "temperature": round(temperature, 4),
        "bins": BINS,
        "images": len(labels),
        **_figures(probabilities, after, labels),
        "after_is": "cross-fitted: each fold rescaled with the temperature of the other folds",
        "per_fold": per_fold,
    }


def _figures(before: np.ndarray, after: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {
        "ece_before": round(expected_calibration_error(before, labels), 5),
        "ece_after": round(expected_calibration_error(after, labels), 5),
        "log_loss_before": round(log_loss(before, labels), 5),
        "log_loss_after": round(log_loss(after, labels), 5),
    }
