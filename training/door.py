"""Offline pet-door check: how many images of each class of a folder would open the door.

Every image goes through the service's preprocessing and the model's ONNX graph; its top-k
labels and label-group scores become a ``/classify`` reply, and the pet-door client's own
``judge`` and ``DoorLogic`` decide. Each image is one frame seen by a fresh door, so with
``debounce_frames`` 1 a single photo is enough to open it: the strictest reading.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clients.http import ClassifyResult, GroupScore, ModelInfo, Prediction
from clients.petdoor.logic import DoorLogic
from clients.petdoor.policy import Policy, frame_scores, judge
from service.card import ONNX_FILENAME, ModelCard, verify_artifact
from service.inference.sessions import OnnxModel
from service.postprocess import DEFAULT_TOP_K, group_scores, top_k
from training.data import list_classes, read_image

BATCH = 32


@dataclass(frozen=True)
class ClassOutcome:
    """How many images of one class opened the door, and which."""

    images: int
    admitted: list[str]

    @property
    def rate(self) -> float:
        return len(self.admitted) / self.images if self.images else 0.0


def classify_reply(probabilities: np.ndarray, card: ModelCard, k: int) -> ClassifyResult:
    """The ``/classify?groups=true`` reply the service gives for one image's probabilities."""
    return ClassifyResult(
        model=ModelInfo(name=card.name, version=card.version),
        predictions=[
            Prediction(label=p.label, index=p.index, score=p.score)
            for p in top_k(probabilities, card.labels, k)
        ],
        groups=[GroupScore(name=g.name, score=g.score) for g in group_scores(probabilities, card)],
    )


def opens_door(probabilities: np.ndarray, card: ModelCard, policy: Policy) -> bool:
    """Whether one frame with these probabilities leaves a fresh door open."""
    k = policy.top_k or DEFAULT_TOP_K  # what the server lists when the policy asks for none
    verdict = judge(policy, frame_scores(classify_reply(probabilities, card, k)))
    return DoorLogic(policy, clock=lambda: 0.0).observe(verdict).state == "open"


def predict_files(model_dir: Path, files: Iterable[Path]) -> tuple[np.ndarray, list[str]]:
    """Probabilities of every readable file (preprocessed as the card says), and the files."""
    card = verify_artifact(model_dir)
    model = OnnxModel.load(Path(model_dir) / ONNX_FILENAME)
    pixels, read = [], []
    for path in files:
        image = read_image(path, card.preprocessing)
        if image is not None:
            pixels.append(image)
            read.append(str(path))
    if not pixels:
        return np.zeros((0, len(card.labels)), np.float32), read
    return model.run_chunked(np.stack(pixels), BATCH), read


def door_outcomes(model_dir: Path, policy: Policy, data: Path) -> dict[str, ClassOutcome]:
    """For each class folder of ``data``: its readable images and those that open the door."""
    card = verify_artifact(model_dir)
    outcomes = {}
    for name, files in list_classes(data).items():
        probabilities, read = predict_files(model_dir, files)
        admitted = [
            f for f, p in zip(read, probabilities, strict=True) if opens_door(p, card, policy)
        ]
        outcomes[name] = ClassOutcome(len(read), admitted)
    return outcomes


def outcomes_from_predictions(
    path: Path, card: ModelCard, policy: Policy
) -> dict[str, ClassOutcome]:
    """The same count from a cross-validation's ``predictions.csv``: every image judged by
    the probabilities of a model that never saw it (``card`` gives labels and groups)."""
    admitted: dict[str, list[str]] = {}
    images: dict[str, int] = {}
    with Path(path).open(newline="") as handle:
        for row in csv.DictReader(handle):
            probabilities = np.array([float(row[label]) for label in card.labels])
            images[row["label"]] = images.get(row["label"], 0) + 1
            opened = admitted.setdefault(row["label"], [])
            if opens_door(probabilities, card, policy):
                opened.append(row["file"])
    return {name: ClassOutcome(images[name], admitted[name]) for name in sorted(images)}
