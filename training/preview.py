"""A PNG grid of augmented training images, to see what an augmentation config does."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from training.augment import augmentation
from training.config import TrainConfig
from training.data import list_classes, read_image
from training.plots import image_grid_png
from training.train import preprocessing_for, resolve


def sample_images(config: TrainConfig, count: int) -> list[np.ndarray]:
    """``count`` readable images, taken from the classes in turn, in seeded order."""
    spec = preprocessing_for(config)
    rng = np.random.default_rng(config.seed)
    queues = [list(rng.permutation(files)) for files in list_classes(Path(config.data)).values()]
    picked: list[np.ndarray] = []
    while len(picked) < count and any(queues):
        for queue in queues:
            while queue and len(picked) < count:
                pixels = read_image(Path(queue.pop(0)), spec)
                if pixels is not None:
                    picked.append(pixels)
                    break
    return picked


def preview(config: TrainConfig, out: Path, images: int = 4, variants: int = 5) -> Path:
    """Each sampled image as preprocessed, then ``variants`` random augmentations of it."""
    config, _ = resolve(config)
    keras.utils.set_random_seed(config.seed)
    augment = augmentation(config)
    rows = []
    for pixels in sample_images(config, images):
        batch = np.repeat(pixels[None].astype(np.float32), variants, axis=0)
        augmented = np.asarray(augment(batch, training=True)) if augment else batch
        rows.append([pixels, *augmented])
    if not rows:
        raise ValueError(f"no readable images in {config.data}")
    titles = ["preprocessed", *(f"augmented {i + 1}" for i in range(variants))]
    return image_grid_png(rows, titles, Path(out))
