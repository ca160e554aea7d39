"""Image folders → validated, preprocessed, stratified splits → ``tf.data`` pipelines.

Every image is decoded once with :func:`service.preprocessing.prepare`, the function the
service uses, so training sees exactly the pixels that serving will see. Files Pillow cannot
read are skipped with a warning that names them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from service.card import Preprocessing
from service.errors import ArgosError
from service.preprocessing import prepare

logger = logging.getLogger("argos.training.data")

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Preprocessed images (N, H, W, 3) uint8, their class indices (N,) and source files."""

    images: np.ndarray
    labels: np.ndarray
    files: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self, classes: Sequence[str]) -> dict[str, int]:
        return {name: int(np.sum(self.labels == i)) for i, name in enumerate(classes)}


@dataclass(frozen=True)
class ImageFolder:
    """A folder with one sub-folder per class, split into train, validation and test."""

    root: Path
    classes: list[str]
    train: Split
    val: Split
    test: Split
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """Counts per class per split and the skipped files: recorded in the card."""
        return {
            "folder": str(self.root),
            "classes": self.classes,
            "counts": {name: getattr(self, name).counts(self.classes) for name in SPLITS},
            "skipped": self.skipped,
        }


def list_classes(root: Path) -> dict[str, list[Path]]:
    """Class name → its files (sorted), for every non-hidden sub-folder of ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        raise ValueError(f"{root} needs at least two class sub-folders, found {len(folders)}")
    return {folder.name: sorted(p for p in folder.iterdir() if p.is_file()) for folder in folders}


def read_image(path: Path, spec: Preprocessing) -> np.ndarray | None:
    """One file → the model input as the service computes it, or ``None`` if unreadable."""
    try:
        with Image.open(path) as image:
            return prepare(image, spec)
    except (OSError, ValueError, SyntaxError, ArgosError) as error:
        logger.warning("skipping %s: not a readable image (%s)", path, error)
        return None


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Indices of the train, val and test splits, the same fractions from every class.

    Every class gets at least one test image, at least one validation image unless
    ``val_fraction`` is 0, and keeps at least one for training; each split's indices are
    in ascending order.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = max(1, round(len(members) * test_fraction))
        n_val = max(1, round(len(members) * val_fraction)) if val_fraction else 0
        if len(members) - n_test - n_val < 1:
            raise ValueError(f"class {label} has {len(members)} images: too few to split")
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


@dataclass(frozen=True)
class LabelledImages:
    """Every readable image of a class folder, in class order, before any split."""

    root: Path
    classes: list[str]
    images: np.ndarray
    labels: np.ndarray
    files: list[str]
    skipped: list[str]

    def take(self, indices: np.ndarray) -> Split:
        return Split(self.images[indices], self.labels[indices], [self.files[i] for i in indices])


def read_folder(root: Path, spec: Preprocessing) -> LabelledImages:
    """Read and validate every file of every class folder; unreadable files are skipped."""
    files_by_class = list_classes(root)
    classes = list(files_by_class)
    images, labels, files, skipped = [], [], [], []
    for index, name in enumerate(classes):
        for path in files_by_class[name]:
            pixels = read_image(path, spec)
            if pixels is None:
                skipped.append(str(path))
                continue
            images.append(pixels)
            labels.append(index)
            files.append(str(path))
    all_images = np.stack(images) if images else np.zeros((0, *spec.input_size, 3), np.uint8)
    all_labels = np.asarray(labels, dtype=np.int32)
    empty = [name for i, name in enumerate(classes) if not np.any(all_labels == i)]
    if empty:
        raise ValueError(f"{root}: no readable images for classes {empty}")
    return LabelledImages(Path(root), classes, all_images, all_labels, files, skipped)


def skip_positions(skip: str | None) -> set[int]:
    """``"151-293,7"`` → the positions it names."""
    positions: set[int] = set()
    for part in filter(None, (skip or "").split(",")):
        first, _, last = part.partition("-")
        positions.update(range(int(first), int(last or first) + 1))
    return positions


def read_unknown(root: Path, spec: Preprocessing, skip: str | None = None) -> Split:
    """Photos of none of the model's classes (a flat folder), to measure "unknown".

    ``skip`` names positions in sorted file order to leave out, e.g. ``"151-293"``: the
    ImageNet sample photos of dogs, wolves, foxes and cats, for a cat/dog model.
    """
    files = sorted(path for path in Path(root).iterdir() if path.is_file())
    left_out = skip_positions(skip)
    kept = [path for position, path in enumerate(files) if position not in left_out]
    pairs = [(pixels, str(path)) for path in kept if (pixels := read_image(path, spec)) is not None]
    if not pairs:
        raise ValueError(f"{root}: no readable images")
    images = np.stack([pixels for pixels, _ in pairs])
    return Split(images, np.zeros(len(pairs), np.int32), [file for _, file in pairs])


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Indices of ``folds`` disjoint folds covering every image, each class spread evenly.

    Every class needs at least ``folds`` images; each fold's indices are in ascending order.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(folds)]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < folds:
            raise ValueError(f"class {label} has {len(members)} images: fewer than {folds} folds")
        for fold, chunk in enumerate(np.array_split(members, folds)):
            parts[fold].append(chunk)
    return [np.sort(np.concatenate(chunks)) for chunks in parts]


def stratified_holdout(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(kept, held_out)``: ``fraction`` of each class held out (at least one
    unless ``fraction`` is 0)."""
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = max(1, round(len(members) * fraction)) if fraction else 0
        if len(members) - count < 1:
            raise ValueError(f"class {label} has {len(members)} images: too few to split")
        held.append(members[:count])
        kept.append(members[count:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def split_folder(
    data: LabelledImages, train: np.ndarray, val: np.ndarray, test: np.ndarray
) -> ImageFolder:
    """An :class:`ImageFolder` made of the given indices of ``data``."""
    parts = {"train": data.take(train), "val": data.take(val), "test": data.take(test)}
    return ImageFolder(data.root, data.classes, skipped=data.skipped, **parts)


def load_folder(
    root: Path, spec: Preprocessing, val_fraction: float, test_fraction: float, seed: int
) -> ImageFolder:
    """Read, validate and split an image folder (every readable file of every class)."""
    data = read_folder(root, spec)
    splits = stratified_split(data.labels, val_fraction, test_fraction, seed)
    folder = split_folder(data, splits["train"], splits["val"], splits["test"])
    logger.info(
        "%s: %s (%d unreadable files skipped)",
        root,
        ", ".join(f"{name} {len(getattr(folder, name))}" for name in SPLITS),
        len(data.skipped),
    )
    return folder


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Inverse-frequency weights, ``n / (classes * n_class)``: balanced classes weigh 1."""
    counts = np.bincount(labels, minlength=num_classes)
    if np.any(counts == 0):
        raise ValueError(f"every class needs training images; counts are {counts.tolist()}")
    return {i: float(len(labels) / (num_classes * c)) for i, c in enumerate(counts)}


def training_pipeline(
    split: Split,
    batch_size: int,
    seed: int,
    augment: Callable[..., tf.Tensor] | None = None,
) -> tf.data.Dataset:
    """Shuffled anew every epoch, batched, augmented (training batches only), prefetched."""
    dataset = (
        tf.data.Dataset.from_tensor_slices((split.images, split.labels))
        .cache()
        .shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
    )

    def to_float(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        pixels = tf.cast(images, tf.float32)
        return (augment(pixels, training=True) if augment else pixels), labels

    return dataset.map(to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def evaluation_pipeline(split: Split, batch_size: int) -> tf.data.Dataset:
    """In order, batched, as float pixels, prefetched."""
    return (
        tf.data.Dataset.from_tensor_slices((split.images, split.labels))
        .cache()
        .batch(batch_size)
        .map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
