"""Training-time augmentation: Keras preprocessing layers on batches of 0..255 pixels.

The layers run in the ``tf.data`` training pipeline only; they are never part of the
exported model, and they are the identity outside training anyway.
"""

from __future__ import annotations

import keras

from training.config import TrainConfig

VALUE_RANGE = (0, 255)


def augmentation(config: TrainConfig) -> keras.Sequential | None:
    """The augmentation the config asks for, or ``None`` when every option is off.

    Each layer gets its own seed derived from ``config.seed``, so runs repeat.
    """
    seed = config.seed
    layers: list[keras.layers.Layer] = []
    if config.flip:
        layers.append(keras.layers.RandomFlip(config.flip, seed=seed + 1))
    if config.rotation:
        layers.append(keras.layers.RandomRotation(config.rotation, seed=seed + 2))
    if config.zoom:
        layers.append(keras.layers.RandomZoom(config.zoom, seed=seed + 3))
    if config.translation:
        layers.append(
            keras.layers.RandomTranslation(config.translation, config.translation, seed=seed + 4)
        )
    if config.contrast:
        layers.append(
            keras.layers.RandomContrast(config.contrast, value_range=VALUE_RANGE, seed=seed + 5)
        )
    if config.brightness:
        layers.append(
            keras.layers.RandomBrightness(config.brightness, value_range=VALUE_RANGE, seed=seed + 6)
        )
    return keras.Sequential(layers, name="augmentation") if layers else None
