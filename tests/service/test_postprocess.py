"""Probabilities → ranked labels and label-group scores."""

from __future__ import annotations

import numpy as np

from service.postprocess import group_scores, top_k
from tests.service.tiny_model import make_card


def test_top_k_is_sorted_and_capped() -> None:
    labels = ["a", "b", "c", "d"]
    ranked = top_k(np.array([0.1, 0.4, 0.4, 0.1]), labels, k=3)
    assert [(p.label, p.index) for p in ranked] == [("b", 1), ("c", 2), ("a", 0)]
    assert len(top_k(np.array([0.1, 0.4, 0.4, 0.1]), labels, k=10)) == 4


def test_group_scores_sum_their_members() -> None:
    card = make_card(label_groups={"warm": [0], "cool": [1, 2]})
    scores = group_scores(np.array([0.2, 0.3, 0.5]), card)
    assert [(g.name, round(g.score, 6)) for g in scores] == [("cool", 0.8), ("warm", 0.2)]
