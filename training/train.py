"""One training run: image folder → two-phase transfer learning → reports → ONNX → store.

Phase 1 trains the head on the frozen backbone; phase 2 unfreezes the top of the backbone
(BatchNormalization stays frozen) and continues at a low learning rate. The best
checkpoint by ``monitor`` over both phases is evaluated on the test split and exported.
Everything lands in ``<out>/<name>/<version>/``.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from service.card import ModelCard, Preprocessing
from training import trust
from training.augment import augmentation
from training.backbones import Backbone, get_backbone, normalize_weights
from training.config import TrainConfig, default_name
from training.data import (
    ImageFolder,
    Split,
    class_weights,
    evaluation_pipeline,
    load_folder,
    training_pipeline,
)
from training.evaluate import classification_metrics, misclassified, overfitting_warning
from training.export import DenseParts, export
from training.familiarity import with_distance
from training.model import (
    Classifier,
    LearningRate,
    Optimisation,
    build_classifier,
    freeze,
    unfreeze,
)
from training.plots import confusion_matrix_png, curves_png, errors_png
from training.strategy import distribution_strategy

logger = logging.getLogger("argos.training")

CONFIG_FILENAME = "config.yaml"
HISTORY_FILENAME = "history.csv"
METRICS_FILENAME = "metrics.json"
CONFUSION_JSON = "confusion_matrix.json"
CONFUSION_PNG = "confusion_matrix.png"
CURVES_PNG = "curves.png"
ERRORS_PNG = "errors.png"
CHECKPOINT = Path("checkpoint") / "best.weights.h5"


@dataclass(frozen=True)
class Fitted:
    """A classifier after both phases, with its best weights, and how it got there."""

    classifier: Classifier
    history: dict[str, list[float]]
    frozen_epochs: int
    timings: dict[str, float]
    class_weights: dict[int, float] | None
    strategy: tf.distribute.Strategy


@dataclass(frozen=True)
class Run:
    """What a run produced: the exported card, its folder, the Keras classifier, the tag."""

    card: ModelCard
    out_dir: Path
    classifier: Classifier
    tag: str | None


def resolve(config: TrainConfig) -> tuple[TrainConfig, Backbone]:
    """Fill in what the config leaves to defaults: name, input size, weights spelling."""
    if config.data is None:
        raise ValueError("no data folder: set `data` in the config or pass --data")
    backbone = get_backbone(config.backbone)
    resolved = config.model_copy(
        update={
            "name": config.name or default_name(config.data),
            "input_size": config.input_size or backbone.input_size,
            "weights": normalize_weights(config.weights),
        }
    )
    return resolved, backbone


def preprocessing_for(config: TrainConfig) -> Preprocessing:
    """Squash to the square input: what training used and what the card declares."""
    return Preprocessing(input_size=(config.input_size, config.input_size), resize="squash")


def keras_verbosity(setting: str | int, stream=None) -> int:
    """Keras' ``verbose`` for a config value: ``auto`` is a bar on a terminal, else 2.

    Keras draws its progress bar with terminal control characters whenever it runs on
    POSIX, which fills a log file or CI output with redrawn bars; one line per epoch
    reads better there.
    """
    if setting != "auto":
        return int(setting)
    stream = sys.stdout if stream is None else stream
    return 1 if hasattr(stream, "isatty") and stream.isatty() else 2


def fit_classifier(
    config: TrainConfig, backbone: Backbone, folder: ImageFolder, out_dir: Path
) -> Fitted:
    """Build the classifier for a resolved config and train both phases on ``folder``.

    The random seed is set first, so the same config and folder give the same run.
    """
    keras.utils.set_random_seed(config.seed)
    strategy = distribution_strategy(config.strategy)
    with strategy.scope():
        classifier = build_classifier(
            backbone,
            len(folder.classes),
            config.input_size,
            config.weights,
            config.dropout,
            test_time_flip=config.test_time_flip,
        )
    weights = (
        class_weights(folder.train.labels, len(folder.classes)) if config.class_weights else None
    )
    history, frozen_epochs, timings = _fit_two_phases(
        classifier, folder, config, weights, strategy, out_dir
    )
    return Fitted(classifier, history, frozen_epochs, timings, weights, strategy)


def train(
    config: TrainConfig,
    out_root: Path,
    *,
    register: bool = True,
    cross_validation: dict[str, object] | None = None,
) -> Run:
    """Run training end to end; ``register`` adds the artifact to the BentoML store.

    ``cross_validation`` (the figures of a cross-validation of the same recipe) goes into
    the card's metrics beside the test-split ones.
    """
    started = time.monotonic()
    config, backbone = resolve(config)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    spec = preprocessing_for(config)
    folder = load_folder(Path(config.data), spec, config.val_split, config.test_split, config.seed)

    version = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir = Path(out_root) / config.name / version
    out_dir.mkdir(parents=True)
    config.save(out_dir / CONFIG_FILENAME)
    logger.info("run folder %s", out_dir)

    fitted = fit_classifier(config, backbone, folder, out_dir)
    classifier, history, weights = fitted.classifier, fitted.history, fitted.class_weights
    frozen_epochs = fitted.frozen_epochs
    calibration = trust.calibrate(classifier, cross_validation)
    metrics = _evaluate_and_report(classifier, folder, config, history, frozen_epochs, out_dir)
    familiarity, bank = trust.familiarity(classifier, folder, spec, config, cross_validation)
    timings = {**fitted.timings, "total_s": round(time.monotonic() - started, 1)}
    if cross_validation is not None:
        metrics["cross_validation"] = {
            key: value
            for key, value in cross_validation.items()
            if key not in ("calibration", "familiarity")
        }

    card = ModelCard(
        name=config.name,
        version=version,
        labels=folder.classes,
        preprocessing=spec,
        backbone=backbone.name,
        training={
            "config": config.model_dump(),
            "data": folder.summary(),
            "class_weights": (
                dict(zip(folder.classes, weights.values(), strict=True)) if weights else None
            ),
            "epochs": {
                "frozen": fitted.frozen_epochs,
                "finetune": len(history["loss"]) - fitted.frozen_epochs,
                "best": _best_epoch(history, config.monitor),
            },
            "fine_tuned": len(history["loss"]) > fitted.frozen_epochs,
            "strategy": type(fitted.strategy).__name__,
            "replicas": fitted.strategy.num_replicas_in_sync,
            "time_s": timings,
        },
        metrics=metrics,
        calibration=calibration,
        familiarity=familiarity,
    )
    picked = spread(len(folder.test), config.parity_images)
    source = f"{len(picked)} of the {len(folder.test)} test-split images of {config.data}"
    predictor, head = with_distance(classifier, bank)
    dense = DenseParts(classifier.features, head, classifier.stride)
    card = export(predictor, card, folder.test.images[picked], source, out_dir, dense=dense)
    tag = None
    if register:
        from training import store

        tag = store.register(out_dir)
    return Run(card, out_dir, classifier, tag)


def predict(model: keras.Model, split: Split, batch_size: int) -> np.ndarray:
    """Class probabilities (N, classes) of a split's images, in order."""
    return model.predict(evaluation_pipeline(split, batch_size), verbose=0)


def _fit_two_phases(
    classifier: Classifier,
    folder: ImageFolder,
    config: TrainConfig,
    weights: dict[int, float] | None,
    strategy: tf.distribute.Strategy,
    out_dir: Path,
) -> tuple[dict[str, list[float]], int, dict[str, float]]:
    """Phase 1 (frozen backbone), then phase 2 (top layers unfrozen); best weights kept.

    Without a validation split (a final fit), every epoch runs and the last weights stay.
    """
    batch_size = config.batch_size * strategy.num_replicas_in_sync
    train_data = training_pipeline(folder.train, batch_size, config.seed, augmentation(config))
    validated = len(folder.val) > 0
    val_data = evaluation_pipeline(folder.val, batch_size) if validated else None
    checkpoint = out_dir / CHECKPOINT
    across_phases: list[keras.callbacks.Callback] = [
        keras.callbacks.CSVLogger(out_dir / HISTORY_FILENAME, append=True)
    ]
    if validated:
        checkpoint.parent.mkdir()
        across_phases.append(
            keras.callbacks.ModelCheckpoint(
                checkpoint, monitor=config.monitor, save_best_only=True, save_weights_only=True
            )
        )

    steps_per_epoch = math.ceil(len(folder.train) / batch_size)

    def fit(initial_epoch: int, epochs: int) -> dict[str, list[float]]:
        result = classifier.model.fit(
            train_data,
            validation_data=val_data,
            initial_epoch=initial_epoch,
            epochs=initial_epoch + epochs,
            class_weight=weights,
            shuffle=False,  # the pipeline reshuffles the training split every epoch itself
            # Phase callbacks first: ReduceLROnPlateau adds the learning rate to the logs that
            # CSVLogger writes.
            callbacks=[*(_phase_callbacks(config) if validated else []), *across_phases],
            verbose=keras_verbosity(config.verbose),
        )
        return result.history

    start = time.monotonic()
    logger.info("phase 1: head on the frozen %s, %d epochs", config.backbone, config.epochs_frozen)
    with strategy.scope():
        freeze(
            classifier,
            _optimisation(config, config.learning_rate, config.epochs_frozen, steps_per_epoch),
        )
    history = fit(0, config.epochs_frozen)
    frozen_epochs = len(history["loss"])
    timings = {"frozen_s": round(time.monotonic() - start, 1)}
    if config.epochs_finetune:
        start = time.monotonic()
        logger.info(
            "phase 2: top %d layers of %s unfrozen, lr %g, %d epochs",
            config.finetune_layers,
            config.backbone,
            config.finetune_learning_rate,
            config.epochs_finetune,
        )
        optimisation = _optimisation(
            config, config.finetune_learning_rate, config.epochs_finetune, steps_per_epoch
        )
        with strategy.scope():
            unfreeze(classifier, config.finetune_layers, optimisation)
        for key, values in fit(frozen_epochs, config.epochs_finetune).items():
            history.setdefault(key, []).extend(values)
        timings["finetune_s"] = round(time.monotonic() - start, 1)
    if not validated:
        logger.info("no validation split: keeping the weights of the last epoch")
    elif checkpoint.exists():
        with warnings.catch_warnings():
            # The checkpoint may hold phase 1's optimizer state, which phase 2's does not need.
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            classifier.model.load_weights(checkpoint)
    else:
        logger.warning(
            "no checkpoint was saved (%s never improved); keeping the last weights", config.monitor
        )
    return history, frozen_epochs, timings


def _optimisation(
    config: TrainConfig, peak: float, epochs: int, steps_per_epoch: int
) -> Optimisation:
    """One phase's optimiser settings: a constant rate, or warm-up and cosine decay."""
    learning_rate: LearningRate = peak
    if config.schedule == "cosine":
        steps = epochs * steps_per_epoch
        warmup = min(config.warmup_epochs, epochs - 1) * steps_per_epoch
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else peak,
            decay_steps=max(1, steps - warmup),
            warmup_target=peak if warmup else None,
            warmup_steps=warmup,
        )
    return Optimisation(learning_rate, config.label_smoothing, config.weight_decay)


def _phase_callbacks(config: TrainConfig) -> list[keras.callbacks.Callback]:
    """Callbacks whose state starts afresh in each phase."""
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.EarlyStopping(monitor=config.monitor, patience=config.patience)
    ]
    if config.schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=config.monitor,
                factor=config.lr_factor,
                patience=config.lr_patience,
                min_lr=config.min_learning_rate,
            )
        )
    return callbacks


def spread(total: int, count: int) -> np.ndarray:
    """Up to ``count`` indices spread evenly over ``range(total)`` (the split is class-sorted)."""
    return np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(int))


def _best_epoch(history: dict[str, list[float]], monitor: str) -> int | None:
    values = history.get(monitor)
    if not values:
        return None
    pick = np.argmax if monitor.endswith("accuracy") else np.argmin
    return int(pick(values)) + 1


def _evaluate_and_report(
    classifier: Classifier,
    folder: ImageFolder,
    config: TrainConfig,
    history: dict[str, list[float]],
    frozen_epochs: int,
    out_dir: Path,
) -> dict[str, object]:
    """Test-split metrics, the over-fitting check, and their JSON and PNG reports."""
    probabilities = predict(classifier.predictor, folder.test, config.batch_size)
    metrics = {
        "split": "test",
        **classification_metrics(probabilities, folder.test.labels, folder.classes),
    }
    mistakes = misclassified(probabilities, folder.test, folder.classes)
    metrics["misclassified"] = [mistake.to_json() for mistake in mistakes]
    warning = overfitting_warning(history, config.overfit_window)
    if warning:
        logger.warning(warning)
    metrics["overfitting_warning"] = warning
    (out_dir / METRICS_FILENAME).write_text(json.dumps(metrics, indent=2) + "\n")
    confusion = metrics["confusion_matrix"]
    (out_dir / CONFUSION_JSON).write_text(json.dumps(confusion, indent=2) + "\n")
    confusion_matrix_png(np.asarray(confusion["matrix"]), folder.classes, out_dir / CONFUSION_PNG)
    curves_png(history, frozen_epochs, out_dir / CURVES_PNG)
    errors_png(mistakes, out_dir / ERRORS_PNG)
    logger.info(
        "test accuracy %.4f on %d images; %s",
        metrics["accuracy"],
        metrics["images"],
        ", ".join(
            f"{name}: P {m['precision']:.3f} R {m['recall']:.3f} F1 {m['f1']:.3f}"
            for name, m in metrics["per_class"].items()
        ),
    )
    return metrics
