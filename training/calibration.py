"""The images that calibrate a quantized variant and the images that judge it.

Both are preprocessed by the service's own code as the float model's card declares, so
calibration sees what serving sees. The two sets never share an image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service.card import ModelCard, Preprocessing
from service.formats import is_image_path
from training.export import load_inputs
from training.quantize import Images


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


def split_training_data(
    card: ModelCard, data: Path | None, calibration_images: int, seed: int
) -> tuple[Images, Images]:
    """A trained model's own split, rebuilt from its card's config: a seeded sample of the
    training split calibrates, the labelled test split judges."""
    from training.data import load_folder

    config = card.training.get("config")
    if not config:
        raise ValueError(f"{card.tag} has no training config in its card: pass --calibration")
    root = Path(data or config["data"])
    folder = load_folder(
        root, card.preprocessing, config["val_split"], config["test_split"], config["seed"]
    )
    if folder.classes != card.labels:
        raise ValueError(f"{root} has classes {folder.classes}, the card {card.labels}")
    count = min(calibration_images, len(folder.train))
    taken = np.sort(np.random.default_rng(seed).permutation(len(folder.train))[:count])
    calibration = Images(
        folder.train.images[taken],
        f"{count} of the {len(folder.train)} training-split images of {root} (seed {seed})",
    )
    judged = Images(
        folder.test.images,
        f"the {len(folder.test)} test-split images of {root}",
        labels=folder.test.labels,
    )
    return calibration, judged
