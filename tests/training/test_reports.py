"""Misclassified images, their gallery, and Keras' progress output."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import Split
from training.evaluate import misclassified
from training.plots import errors_png
from training.train import keras_verbosity

CLASSES = ["cat", "dog"]


def split_of(labels: list[int]) -> Split:
    images = np.stack([np.full((8, 8, 3), 25 * i, np.uint8) for i in range(len(labels))])
    return Split(images, np.array(labels), [f"img{i}.jpg" for i in range(len(labels))])


def test_misclassified_lists_the_wrong_images_most_confident_first() -> None:
    split = split_of([0, 0, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.95, 0.05]])

    mistakes = misclassified(probabilities, split, CLASSES)

    assert [(m.file, m.true, m.predicted) for m in mistakes] == [
        ("img3.jpg", "dog", "cat"),
        ("img1.jpg", "cat", "dog"),
    ]
    assert [m.score for m in mistakes] == [pytest.approx(0.95), pytest.approx(0.6)]
    assert np.array_equal(mistakes[0].image, split.images[3])
    assert mistakes[1].to_json() == {
        "file": "img1.jpg",
        "true": "cat",
        "predicted": "dog",
        "score": 0.6,
    }


def test_gallery_grows_with_the_mistakes_and_has_a_page_for_none(tmp_path: Path) -> None:
    split = split_of([0] * 9)
    sizes = []
    for count in (0, 2, 9):
        probabilities = np.array([[0.2, 0.8]] * count + [[0.8, 0.2]] * (9 - count))
        path = errors_png(misclassified(probabilities, split, CLASSES), tmp_path / "e.png")
        with Image.open(path) as image:
            assert image.format == "PNG"
            sizes.append(image.size)

    (none_w, none_h), (two_w, two_h), (nine_w, nine_h) = sizes
    assert two_w > none_w and nine_w > two_w  # one column per mistake, up to six
    assert nine_h > two_h  # a second row


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_one_line_per_epoch_elsewhere() -> None:
    assert keras_verbosity("auto", Terminal()) == 1
    assert keras_verbosity("auto", io.StringIO()) == 2
    assert keras_verbosity(0, Terminal()) == 0
    assert keras_verbosity(1, io.StringIO()) == 1
