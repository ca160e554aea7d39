"""Offline pet-door check: how many images of each class of a folder would open the door.

Every image goes through the service's preprocessing and the model's ONNX graph; its top-k
labels and label-group scores become a ``/classify`` reply, and the pet-door client's own
``judge`` and ``DoorLogic`` decide. Each image is one frame seen by a fresh door, so with
``debounce_frames`` 1 a single photo is enough to open it: the strictest reading.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clients.http import ClassifyResult, GroupScore, ModelInfo, Prediction
from clients.petdoor.logic import DoorLogic
from clients.petdoor.policy import Policy, frame_verdict
from service.card import ONNX_FILENAME, ModelCard, verify_artifact
from service.inference.sessions import OnnxModel
from service.postprocess import DEFAULT_TOP_K, group_scores, top_k
from training.data import list_classes, read_image
from training.temperature import rescale

BATCH = 32


@dataclass(frozen=True)
class ClassOutcome:
    """How many images of one class opened the door, and which."""

    images: int
    admitted: list[str]
    unknown: list[str] = field(default_factory=list)
    """Images the model answers unknown (for models with familiarity statistics)."""

    @property
    def rate(self) -> float:
        return len(self.admitted) / self.images if self.images else 0.0


def classify_reply(
    probabilities: np.ndarray, card: ModelCard, k: int, distance: float | None = None
) -> ClassifyResult:
    """The ``/classify?groups=true`` reply the service gives for one image's probabilities
    (and familiarity distance, for a model with familiarity statistics)."""
    familiar = {}
    if card.familiarity is not None and distance is not None:
        familiarity = card.familiarity.familiarity(np.array([distance]))
        familiar = {
            "familiarity": round(float(familiarity[0]), 4),
            "unknown": bool(card.familiarity.is_unknown(familiarity)[0]),
        }
    return ClassifyResult(
        model=ModelInfo(name=card.name, version=card.version),
        predictions=[
            Prediction(label=p.label, index=p.index, score=p.score)
            for p in top_k(probabilities, card.labels, k)
        ],
        groups=[GroupScore(name=g.name, score=g.score) for g in group_scores(probabilities, card)],
        **familiar,
    )


def opens_door(
    probabilities: np.ndarray, card: ModelCard, policy: Policy, distance: float | None = None
) -> bool:
    """Whether one frame with these probabilities (and distance) leaves a fresh door open."""
    k = policy.top_k or DEFAULT_TOP_K  # what the server lists when the policy asks for none
    verdict = frame_verdict(policy, classify_reply(probabilities, card, k, distance))
    return DoorLogic(policy, clock=lambda: 0.0).observe(verdict).state == "open"


@dataclass(frozen=True)
class Predicted:
    """What the classifier graph says about every readable file of a list."""

    files: list[str]
    probabilities: np.ndarray
    distances: list[float | None]


def predict_files(model_dir: Path, files: Iterable[Path]) -> Predicted:
    """Scores of every readable file (preprocessed as the card says)."""
    card = verify_artifact(model_dir)
    model = OnnxModel.load(Path(model_dir) / ONNX_FILENAME)
    pixels, read = [], []
    for path in files:
        image = read_image(path, card.preprocessing)
        if image is not None:
            pixels.append(image)
            read.append(str(path))
    if not pixels:
        return Predicted(read, np.zeros((0, len(card.labels)), np.float32), [])
    outputs = [card.preprocessing.output_name]
    if card.familiarity is not None:
        outputs.append(card.familiarity.output_name)
    batch = np.stack(pixels)
    parts = [model.run_outputs(batch[i : i + BATCH], outputs) for i in range(0, len(batch), BATCH)]
    probabilities = np.concatenate([part[0] for part in parts])
    if card.familiarity is None:
        return Predicted(read, probabilities, [None] * len(read))
    distances = np.concatenate([part[1] for part in parts])
    return Predicted(read, probabilities, [float(d) for d in distances])


def admitted_files(model_dir: Path, policy: Policy, files: Iterable[Path]) -> ClassOutcome:
    """Which of ``files`` open a fresh door, each as a single frame."""
    card = verify_artifact(model_dir)
    predicted = predict_files(model_dir, files)
    admitted, unknown = [], []
    k = policy.top_k or DEFAULT_TOP_K
    for file, p, d in zip(
        predicted.files, predicted.probabilities, predicted.distances, strict=True
    ):
        if opens_door(p, card, policy, d):
            admitted.append(file)
        if classify_reply(p, card, k, d).unknown:
            unknown.append(file)
    return ClassOutcome(len(predicted.files), admitted, unknown)


def door_outcomes(model_dir: Path, policy: Policy, data: Path) -> dict[str, ClassOutcome]:
    """For each class folder of ``data``: its readable images and those that open the door."""
    return {
        name: admitted_files(model_dir, policy, files) for name, files in list_classes(data).items()
    }


def outcomes_from_predictions(
    path: Path, card: ModelCard, policy: Policy
) -> dict[str, ClassOutcome]:
    """The same count from a cross-validation's ``predictions.csv``: every image judged by
    the probabilities of a model that never saw it (``card`` gives labels and groups, and
    the temperature its served scores are calibrated with)."""
    admitted: dict[str, list[str]] = {}
    images: dict[str, int] = {}
    with Path(path).open(newline="") as handle:
        for row in csv.DictReader(handle):
            probabilities = np.array([[float(row[label]) for label in card.labels]])
            if card.calibration is not None:
                probabilities = rescale(probabilities, card.calibration.temperature)
            probabilities = probabilities[0]
            images[row["label"]] = images.get(row["label"], 0) + 1
            opened = admitted.setdefault(row["label"], [])
            if opens_door(probabilities, card, policy):
                opened.append(row["file"])
    return {name: ClassOutcome(images[name], admitted[name]) for name in sorted(images)}
