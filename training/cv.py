"""Stratified k-fold cross-validation of a training config, with the training pipeline unchanged.

Each image of the folder is a test image exactly once. For fold ``k`` the other folds are
split into train and validation (``val_split`` of each class) and trained exactly as
``python -m training train`` would; the fold's test images are then predicted. Pooling
the out-of-fold predictions gives an accuracy on every image of the folder, with a 95 %
Wilson interval narrow enough to compare recipes (about ±0.5 points on 2,000 images at
99 %), where a 300-image test split cannot.

The same held-out predictions judge how far the scores can be trusted: a temperature is
fitted on them (calibration), and each fold's test images get their familiarity distance
to that fold's training images, which sets the threshold of "unknown" at
``unknown_rate`` of real images; photos of other things (``unknown_images``) measure how
many of them it catches. Each fold's model is also exported (``fold-<k>/model``), so that
a variant of the recipe (a quantized one) can be judged on the same folds.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from service.card import ModelCard
from training.config import TrainConfig
from training.data import (
    LabelledImages,
    Split,
    read_folder,
    read_unknown,
    split_folder,
    stratified_folds,
    stratified_holdout,
)
from training.evaluate import classification_metrics, misclassified, wilson_interval
from training.export import export
from training.familiarity import (
    NEIGHBOURS,
    FeatureBank,
    distance_quantiles,
    flagged,
    pooled_features,
)
from training.model import Classifier
from training.plots import confusion_matrix_png, cross_validation_png, errors_png
from training.temperature import calibration_report
from training.train import (
    CONFIG_FILENAME,
    fit_classifier,
    predict,
    preprocessing_for,
    resolve,
    spread,
)

logger = logging.getLogger("argos.training.cv")

CV_JSON = "cv.json"
PREDICTIONS_CSV = "predictions.csv"
CV_PNG = "cv.png"
CONFUSION_PNG = "confusion_matrix.png"
ERRORS_PNG = "errors.png"
FOLD_MODEL = "model"
FOLD_PARITY_IMAGES = 100


@dataclass(frozen=True)
class CrossValidation:
    """The report written to ``cv.json`` and the folder it lies in."""

    report: dict[str, object]
    out_dir: Path

    @property
    def accuracy(self) -> float:
        return float(self.report["accuracy"])

    @property
    def interval(self) -> tuple[float, float]:
        low, high = self.report["interval_95"]
        return float(low), float(high)


def cross_validate(
    config: TrainConfig, folds: int, out_root: Path, *, command: str | None = None
) -> CrossValidation:
    """Train and test ``config`` on ``folds`` stratified folds; reports in the run folder.

    The run folder ``<out_root>/<name>-cv/<version>`` gets ``cv.json`` (per-fold and
    pooled metrics, the misclassified files), ``cv.png``, ``confusion_matrix.png``,
    ``errors.png``, ``predictions.csv`` (every image's out-of-fold probabilities),
    ``config.yaml`` and one ``fold-<k>`` folder per fold with its history and its exported
    model. The reports are rewritten after every fold (``folds_done`` in ``cv.json``).
    """
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    started = time.monotonic()
    config, backbone = resolve(config)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    spec = preprocessing_for(config)
    data = read_folder(Path(config.data), spec)
    unknown = (
        read_unknown(Path(config.unknown_images), spec, config.unknown_skip)
        if config.unknown_images
        else None
    )
    version = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir = Path(out_root) / f"{config.name}-cv" / version
    out_dir.mkdir(parents=True)
    config.save(out_dir / CONFIG_FILENAME)
    logger.info("cross-validation in %s: %d folds, %d images", out_dir, folds, len(data.labels))

    probabilities = np.zeros((len(data.labels), len(data.classes)), dtype=np.float32)
    single_view = np.zeros_like(probabilities)  # test_time_flip: the unflipped view alone
    fold_of = np.zeros(len(data.labels), dtype=np.int32)
    distances = np.zeros(len(data.labels))
    unknown_distances: list[np.ndarray] = []
    fold_reports = []
    for fold, test in enumerate(stratified_folds(data.labels, folds, config.seed), start=1):
        rest = np.setdiff1d(np.arange(len(data.labels)), test)
        kept, held = stratified_holdout(data.labels[rest], config.val_split, config.seed)
        folder = split_folder(data, rest[kept], rest[held], test)
        fold_dir = out_dir / f"fold-{fold}"
        fold_dir.mkdir()
        logger.info(
            "fold %d/%d: train %d, val %d, test %d",
            fold,
            folds,
            len(folder.train),
            len(folder.val),
            len(folder.test),
        )
        keras.backend.clear_session()
        fitted = fit_classifier(config, backbone, folder, fold_dir)
        probabilities[test] = predict(fitted.classifier.predictor, folder.test, config.batch_size)
        if config.test_time_flip:
            single_view[test] = predict(fitted.classifier.model, folder.test, config.batch_size)
        fold_of[test] = fold
        bank = _fold_bank(fitted.classifier, data.take(rest), config.batch_size)
        distances[test] = _distances(fitted.classifier, bank, folder.test, config.batch_size)
        if unknown is not None:
            unknown_distances.append(
                _distances(fitted.classifier, bank, unknown, config.batch_size)
            )
        _export_fold(fitted.classifier, config, data.classes, folder.test, fold, fold_dir)
        metrics = classification_metrics(probabilities[test], folder.test.labels, data.classes)
        logger.info("fold %d/%d: accuracy %.4f", fold, folds, metrics["accuracy"])
        fold_reports.append(
            {
                "fold": fold,
                "images": metrics["images"],
                "accuracy": metrics["accuracy"],
                "loss": metrics["loss"],
                "epochs": len(fitted.history["loss"]),
                "time_s": fitted.timings,
                "test_indices": test,
            }
        )

        report = _report(data, probabilities, fold_of, fold_reports, folds, out_dir)
        tested = fold_of > 0
        report["calibration"] = calibration_report(
            probabilities[tested], data.labels[tested], fold_of[tested]
        )
        report["familiarity"] = _familiarity_report(
            distances[tested], fold_of[tested], unknown_distances, config
        )
        if config.test_time_flip:
            hits = np.argmax(single_view[tested], axis=1) == data.labels[tested]
            report["single_view_accuracy"] = float(np.mean(hits))
        report |= {
            "command": command,
            "time_s": round(time.monotonic() - started, 1),
            "config": config.model_dump(),
        }
        (out_dir / CV_JSON).write_text(json.dumps(report, indent=2) + "\n")

    calibration, familiarity = report["calibration"], report["familiarity"]
    logger.info(
        "temperature %.3f: expected calibration error %.4f -> %.4f, log-loss %.4f -> %.4f",
        calibration["temperature"],
        calibration["ece_before"],
        calibration["ece_after"],
        calibration["log_loss_before"],
        calibration["log_loss_after"],
    )
    logger.info(
        "unknown at %.1f %% of held-out images: %s",
        100 * config.unknown_rate,
        familiarity.get("unknown_images_flagged", "no unknown_images to measure it on"),
    )
    logger.info(
        "cross-validated accuracy %.4f (95 %% interval %.4f to %.4f) on %d images; folds %s",
        report["accuracy"],
        *report["interval_95"],
        report["images"],
        ", ".join(f"{fold['accuracy']:.4f}" for fold in fold_reports),
    )
    return CrossValidation(report, out_dir)


def _fold_bank(classifier: Classifier, train: Split, batch_size: int) -> FeatureBank:
    """The features of the images a fold's model trained on."""
    return FeatureBank.fit(pooled_features(classifier.features, train, batch_size))


def _distances(
    classifier: Classifier, bank: FeatureBank, split: Split, batch_size: int
) -> np.ndarray:
    return bank.distances(pooled_features(classifier.features, split, batch_size))


def _familiarity_report(
    held_out: np.ndarray,
    fold_of: np.ndarray,
    unknown_distances: list[np.ndarray],
    config: TrainConfig,
) -> dict[str, object]:
    """The held-out distances' percentiles, the threshold at ``unknown_rate`` of them, and
    the share flagged per fold: of the fold's real images, and of the unknown photos."""
    threshold = float(np.quantile(held_out, 1 - config.unknown_rate))
    per_fold = []
    for index, fold in enumerate(np.unique(fold_of)):
        row = {"fold": int(fold), "held_out_flagged": flagged(held_out[fold_of == fold], threshold)}
        if index < len(unknown_distances):
            row["unknown_images_flagged"] = flagged(unknown_distances[index], threshold)
        per_fold.append(row)
    report: dict[str, object] = {
        "method": f"cosine distance of the pooled features to the {NEIGHBOURS}th nearest of "
        "each fold's training images",
        "unknown_rate": config.unknown_rate,
        "threshold": round(threshold, 4),
        "held_out_images": len(held_out),
        "held_out_distances": distance_quantiles(held_out),
        "held_out_flagged": flagged(held_out, threshold),
        "per_fold": per_fold,
    }
    if unknown_distances:
        pooled = np.concatenate(unknown_distances)
        report["unknown_images"] = {
            "folder": config.unknown_images,
            "skipped": config.unknown_skip,
            "images": len(unknown_distances[0]),
        }
        report["unknown_images_flagged"] = flagged(pooled, threshold)
    return report


def _export_fold(
    classifier: Classifier,
    config: TrainConfig,
    classes: list[str],
    test: Split,
    fold: int,
    fold_dir: Path,
) -> None:
    """The fold's model as an artifact (not registered), for judging variants on the fold."""
    card = ModelCard(
        name=f"{config.name}-fold-{fold}",
        version=fold_dir.parent.name,
        labels=classes,
        preprocessing=preprocessing_for(config),
        backbone=config.backbone,
        training={"config": config.model_dump(), "fold": fold, "test_files": test.files},
    )
    picked = spread(len(test), min(config.parity_images, FOLD_PARITY_IMAGES))
    source = f"{len(picked)} of the fold's {len(test)} test images"
    export(classifier.predictor, card, test.images[picked], source, fold_dir / FOLD_MODEL)


def _report(
    data: LabelledImages,
    probabilities: np.ndarray,
    fold_of: np.ndarray,
    fold_reports: list[dict[str, object]],
    folds: int,
    out_dir: Path,
) -> dict[str, object]:
    """Pooled metrics over the folds done so far; writes the PNGs and ``predictions.csv``.

    Called after every fold, so an interrupted run still leaves a report of its first folds.
    """
    tested = np.sort(np.concatenate([fold["test_indices"] for fold in fold_reports]))
    done = data.take(tested)
    pooled = classification_metrics(probabilities[tested], done.labels, data.classes)
    correct = int(round(pooled["accuracy"] * pooled["images"]))
    interval = wilson_interval(correct, pooled["images"])
    accuracies = [fold["accuracy"] for fold in fold_reports]
    mistakes = misclassified(probabilities[tested], done, data.classes)
    _write_predictions(
        out_dir / PREDICTIONS_CSV,
        done.files,
        done.labels,
        fold_of[tested],
        data.classes,
        probabilities[tested],
    )
    matrix = np.asarray(pooled["confusion_matrix"]["matrix"])
    confusion_matrix_png(
        matrix, data.classes, out_dir / CONFUSION_PNG, "out-of-fold confusion matrix"
    )
    cross_validation_png(
        accuracies, pooled["accuracy"], interval, pooled["per_class"], out_dir / CV_PNG
    )
    errors_png(mistakes, out_dir / ERRORS_PNG)
    return {
        "folds": folds,
        "folds_done": len(fold_reports),
        "images": pooled["images"],
        "accuracy": pooled["accuracy"],
        "interval_95": list(interval),
        "interval_method": "Wilson score interval on the pooled out-of-fold predictions",
        "fold_accuracy_mean": float(np.mean(accuracies)),
        "fold_accuracy_std": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else None,
        "loss": pooled["loss"],
        "per_class": pooled["per_class"],
        "confusion_matrix": pooled["confusion_matrix"],
        "per_fold": [
            {key: value for key, value in fold.items() if key != "test_indices"}
            for fold in fold_reports
        ],
        "misclassified": [mistake.to_json() for mistake in mistakes],
        "skipped": data.skipped,
    }


TRUST_SECTIONS = ("single_view_accuracy", "calibration", "familiarity")
"""Figures a final model takes from its cross-validation when the run recorded them."""

# Keys that change where or how a run is reported, not what it learns.
NOT_RECIPE = {
    "name",
    "data",
    "parity_images",
    "strategy",
    "verbose",
    "overfit_window",
    "unknown_rate",
    "unknown_images",
    "unknown_skip",
}


def card_summary(report_path: Path, config: TrainConfig) -> dict[str, object]:
    """The cross-validated figures of ``cv.json`` for a model card trained with ``config``.

    Raises ``ValueError`` naming the keys in which the cross-validated recipe differs.
    """
    report = json.loads(Path(report_path).read_text())
    resolved, _ = resolve(config)
    trained = resolved.model_dump()
    differs = sorted(
        key
        for key, value in report["config"].items()
        if key not in NOT_RECIPE and trained.get(key) != value
    )
    if differs:
        raise ValueError(f"{report_path} cross-validated another recipe: {differs} differ")
    return {
        "accuracy": report["accuracy"],
        "interval_95": report["interval_95"],
        "folds": report["folds"],
        "images": report["images"],
        "fold_accuracies": [fold["accuracy"] for fold in report["per_fold"]],
        **{key: report[key] for key in TRUST_SECTIONS if key in report},
        "command": report["command"],
    }


def _write_predictions(
    path: Path,
    files: list[str],
    labels: np.ndarray,
    folds: np.ndarray,
    classes: list[str],
    probabilities: np.ndarray,
) -> None:
    """One row per image: file, true label, its fold, then the out-of-fold probability of
    each class."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "fold", *classes])
        for file, label, fold, row in zip(files, labels, folds, probabilities, strict=True):
            writer.writerow([file, classes[label], int(fold), *(f"{p:.6f}" for p in row)])
