"""The images that calibrate a quantized variant and the images that judge it.

All are preprocessed by the service's own code as the float model's card declares, so
calibration sees what serving sees. Calibration and judging never share an image: a
trained model calibrates on its training split and is judged on its test split; on the
folds of a cross-validation, each fold's model calibrates on the images outside its fold
and is judged on its fold.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from service.card import ModelCard, Preprocessing, verify_artifact
from service.formats import is_image_path
from training.cv import CV_JSON, FOLD_MODEL, NOT_RECIPE, PREDICTIONS_CSV
from training.data import LabelledImages, read_folder, split_folder, stratified_split
from training.export import load_inputs
from training.quantize import Fold, Folds, Images


def photos(folder: Path, spec: Preprocessing) -> Images:
    """Every photo directly in ``folder``."""
    paths = sorted(p for p in Path(folder).iterdir() if is_image_path(p))
    return Images(load_inputs(paths, spec), f"{len(paths)} photos in {folder}")


def seeded_split(count: int, take: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(taken, rest)``: ``take`` of ``count`` drawn with ``seed``, both sorted."""
    if not 0 < take < count:
        raise ValueError(f"cannot take {take} of {count} images and keep some to judge on")
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[:take]), np.sort(order[take:])


def split_photos(
    folder: Path, spec: Preprocessing, calibration_images: int, seed: int
) -> tuple[Images, Images]:
    """A seeded sample of the photos in ``folder`` calibrates; all the others judge."""
    pixels = photos(folder, spec).pixels
    taken, rest = seeded_split(len(pixels), calibration_images, seed)
    calibration = Images(
        pixels[taken], f"{len(taken)} of the {len(pixels)} photos in {folder} (seed {seed})"
    )
    judged = Images(
        pixels[rest], f"the other {len(rest)} photos in {folder}, not used for calibration"
    )
    return calibration, judged


def calibration_sample(pixels: np.ndarray, calibration_images: int, seed: int, what: str) -> Images:
    """A seeded sample of at most ``calibration_images`` of ``pixels``, kept in their order;
    the final variant and every fold's variant draw theirs this way."""
    count = min(calibration_images, len(pixels))
    taken = np.sort(np.random.default_rng(seed).permutation(len(pixels))[:count])
    return Images(pixels[taken], f"{count} of the {len(pixels)} {what} (seed {seed})")


def read_data(card: ModelCard, data: Path | None) -> tuple[dict[str, Any], LabelledImages]:
    """A trained model's config (from its card) and every readable image of its data
    folder (``data`` if it has moved), preprocessed as the card declares."""
    config = card.training.get("config")
    if not config:
        raise ValueError(f"{card.tag} has no training config in its card: pass --calibration")
    images = read_folder(Path(data or config["data"]), card.preprocessing)
    if images.classes != card.labels:
        raise ValueError(f"{images.root} has classes {images.classes}, the card {card.labels}")
    return config, images


def split_training_data(
    config: dict[str, Any], images: LabelledImages, calibration_images: int, seed: int
) -> tuple[Images, Images]:
    """The model's own split, rebuilt from its config: a seeded sample of the training
    split calibrates, the labelled test split judges."""
    parts = stratified_split(
        images.labels, config["val_split"], config["test_split"], config["seed"]
    )
    folder = split_folder(images, parts["train"], parts["val"], parts["test"])
    calibration = calibration_sample(
        folder.train.images, calibration_images, seed, f"training-split images of {images.root}"
    )
    judged = Images(
        folder.test.images,
        f"the {len(folder.test)} test-split images of {images.root}",
        labels=folder.test.labels,
    )
    return calibration, judged


def cross_validation_folds(
    run: Path, card: ModelCard, images: LabelledImages, calibration_images: int, seed: int
) -> Folds:
    """The folds of the cross-validation in ``run`` of the recipe of ``card``, on ``images``
    (its data folder, read by :func:`read_data`).

    Fold ``k``'s float model is ``fold-<k>/model``; its test images are the files its card
    lists, its calibration a seeded sample of the other images of the folder (drawn as
    the final variant draws from its training split); ``predictions.csv`` gives the
    probabilities the cross-validation recorded for them. Raises ``ValueError`` for a run
    that is unfinished, of another recipe or of other images.
    """
    run = Path(run)
    if not (run / CV_JSON).is_file():
        raise ValueError(f"{run} has no {CV_JSON}: not a cross-validation run")
    report = json.loads((run / CV_JSON).read_text())
    if report["folds_done"] != report["folds"]:
        raise ValueError(f"{run} is unfinished: {report['folds_done']} of {report['folds']} folds")
    differs = sorted(
        key
        for key, value in report["config"].items()
        if key not in NOT_RECIPE and card.training["config"].get(key) != value
    )
    if differs:
        raise ValueError(f"{run} cross-validated another recipe: {differs} differ")
    recorded_root = PurePath(report["config"]["data"])
    position = {
        PurePath(file).relative_to(images.root).as_posix(): index
        for index, file in enumerate(images.files)
    }
    recorded = _recorded_predictions(run / PREDICTIONS_CSV, recorded_root, images.classes)
    folds = []
    for number in range(1, report["folds"] + 1):
        model_dir = run / f"fold-{number}" / FOLD_MODEL
        fold_card = verify_artifact(model_dir)
        if (fold_card.labels, fold_card.preprocessing) != (card.labels, card.preprocessing):
            raise ValueError(f"{model_dir} has other labels or preprocessing than {card.tag}")
        files = fold_card.training["test_files"]
        keys = [PurePath(file).relative_to(recorded_root).as_posix() for file in files]
        missing = [key for key in keys if key not in position]
        if missing:
            raise ValueError(
                f"{len(missing)} test images of fold {number} are not in {images.root}, "
                f"e.g. {missing[0]}"
            )
        if sorted(keys) != sorted(key for key, (fold, _) in recorded.items() if fold == number):
            raise ValueError(f"{model_dir}'s test files are not fold {number} of {PREDICTIONS_CSV}")
        test = np.array([position[key] for key in keys])
        rest = np.setdiff1d(np.arange(len(images.labels)), test)
        folds.append(
            Fold(
                number=number,
                model_dir=model_dir,
                calibration=calibration_sample(
                    images.images[rest], calibration_images, seed, f"images outside fold {number}"
                ),
                test=Images(
                    images.images[test],
                    f"the {len(test)} images of fold {number}",
                    labels=images.labels[test],
                ),
                recorded=np.stack([recorded[key][1] for key in keys]),
            )
        )
    tested = sum(len(fold.test) for fold in folds)
    source = f"the {tested} images of {images.root} in the {len(folds)} folds of {run}"
    return Folds(source, folds)


def _recorded_predictions(
    path: Path, root: PurePath, classes: list[str]
) -> dict[str, tuple[int, np.ndarray]]:
    """``predictions.csv``: each file (relative to ``root``) → its fold and probabilities."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {
        PurePath(row["file"]).relative_to(root).as_posix(): (
            int(row["fold"]),
            np.array([float(row[name]) for name in classes], dtype=np.float32),
        )
        for row in rows
    }
