"""Probabilities → ranked labels and label-group scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import Field

from service.card import ModelCard

DEFAULT_TOP_K = 5
"""Labels a classification reply lists unless asked for another number."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """One label of a classification and its probability."""

    label: str
    index: int
    score: float


@dataclass(frozen=True, slots=True)
class GroupScore:
    """A label group of the card and its probability."""

    name: str
    score: Annotated[float, Field(description="sum of the member labels' probabilities")]


def top_k(probabilities: np.ndarray, labels: list[str], k: int) -> list[Prediction]:
    """The ``k`` most probable labels of one image, highest first (ties by index)."""
    k = min(k, len(labels))
    order = np.lexsort((np.arange(len(probabilities)), -probabilities))[:k]
    return [Prediction(labels[i], int(i), float(probabilities[i])) for i in order]


def group_scores(probabilities: np.ndarray, card: ModelCard) -> list[GroupScore]:
    """Each label group's probability (the sum over its members), highest first."""
    scores = [
        GroupScore(name, float(probabilities[indices].sum()))
        for name, indices in card.label_groups.items()
    ]
    return sorted(scores, key=lambda group: group.score, reverse=True)
