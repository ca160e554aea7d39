"""Which devices a run trains on: one by default, all local GPUs when there are several."""

from __future__ import annotations

import logging

import tensorflow as tf

logger = logging.getLogger("argos.training.strategy")


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """``auto``: MirroredStrategy when several GPUs are visible, else the default strategy.

    ``mirrored`` always uses MirroredStrategy (all visible GPUs, or the CPU); ``default``
    always the default one-device strategy. Build and compile the model inside
    ``strategy.scope()``; Keras splits each batch across the replicas.
    """
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    logger.info(
        "training with %s on %d replica(s) (%d GPU(s) visible)",
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
        len(gpus),
    )
    return strategy
