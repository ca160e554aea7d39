"""What a trained model's card says about trusting its answers: calibration and familiarity.

Both are measured on held-out predictions: a cross-validation of the same recipe when one
is given (out-of-fold, every image of the folder), otherwise the run's own test split.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from service.card import Calibration, Familiarity, Preprocessing
from training.config import TrainConfig
from training.data import ImageFolder, Split, read_unknown
from training.familiarity import FeatureBank, distance_quantiles, flagged, pooled_features
from training.model import Classifier, divide_logits

logger = logging.getLogger("argos.training.trust")


def calibrate(
    classifier: Classifier, cross_validation: dict[str, Any] | None
) -> Calibration | None:
    """Divide the head's logits by the cross-validated temperature; ``None`` without one."""
    report = (cross_validation or {}).get("calibration")
    if report is None:
        return None
    divide_logits(classifier, report["temperature"])
    logger.info("scores calibrated: logits divided by %.3f", report["temperature"])
    return Calibration(
        method=report["method"],
        temperature=report["temperature"],
        source=f"out-of-fold predictions of {cross_validation['command']}",
        images=report["images"],
        bins=report["bins"],
        **{key: report[key] for key in ("ece_before", "ece_after")},
        **{key: report[key] for key in ("log_loss_before", "log_loss_after")},
    )


def familiarity(
    classifier: Classifier,
    folder: ImageFolder,
    spec: Preprocessing,
    config: TrainConfig,
    cross_validation: dict[str, Any] | None,
) -> tuple[Familiarity, FeatureBank]:
    """The features of every image the model trained on, and the held-out distances that
    set the threshold: out-of-fold when cross-validated, else the test split's."""
    trained = Split(
        np.concatenate([folder.train.images, folder.val.images]),
        np.concatenate([folder.train.labels, folder.val.labels]),
        [*folder.train.files, *folder.val.files],
    )
    features = classifier.features
    bank = FeatureBank.fit(pooled_features(features, trained, config.batch_size))
    report = (cross_validation or {}).get("familiarity")
    if report is not None:
        quantiles, images = report["held_out_distances"], report["held_out_images"]
        held_out = f"out-of-fold distances of {cross_validation['command']}"
        measured = _measured_in_cv(report)
    else:
        test = bank.distances(pooled_features(features, folder.test, config.batch_size))
        quantiles, images = distance_quantiles(test), len(test)
        held_out = f"the {images} test-split images of {config.data}"
        measured = {}
    card = Familiarity(
        method=bank.method,
        training_images=bank.images,
        held_out=held_out,
        held_out_images=images,
        held_out_distances=quantiles,
        flag_rate=config.unknown_rate,
        measured=measured,
    )
    if config.unknown_images:
        unknown = read_unknown(Path(config.unknown_images), spec, config.unknown_skip)
        distances = bank.distances(pooled_features(features, unknown, config.batch_size))
        final = {
            "folder": config.unknown_images,
            "skipped": config.unknown_skip,
            "images": len(unknown),
            "flagged": flagged(distances, card.threshold),
        }
        card = card.model_copy(update={"measured": {**measured, "final_model": final}})
        logger.info("unknown for %.1f %% of %s", 100 * final["flagged"], config.unknown_images)
    return card, bank


def _measured_in_cv(report: dict[str, Any]) -> dict[str, Any]:
    measured: dict[str, Any] = {"held_out_flagged": report["held_out_flagged"]}
    if "unknown_images" in report:
        measured["cross_validation"] = {
            **report["unknown_images"],
            "flagged": report["unknown_images_flagged"],
            "per_fold": [fold.get("unknown_images_flagged") for fold in report["per_fold"]],
        }
    return measured
