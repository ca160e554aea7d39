"""A backbone small enough that a whole ``cv`` or ``train`` run takes seconds.

Tracing a real backbone's train, predict and export graphs costs tens of seconds per fold
while the tiny folders these tests train on cost nothing, so the tests of what surrounds
the backbone (folds, phases, export, quantization) stand on five convolutions instead;
``test_smoke`` and ``test_model`` exercise the ``keras.applications`` backbones.
"""

from __future__ import annotations

import keras
import pytest

from training.backbones import BACKBONES, Backbone


def tiny_convnet(
    include_top: bool = False, weights: str | None = None, input_shape: tuple = (32, 32, 3)
) -> keras.Model:
    """Pixels scaled to 0..1, then five stride-2 convolutions, each with batch normalisation
    and a ReLU: stride 32 like the ``keras.applications`` backbones, called as they are."""
    assert not include_top and weights is None, "the tiny backbone has no top and no weights"
    pixels = keras.Input(input_shape, name="pixels")
    features = keras.layers.Rescaling(1 / 255, name="scale")(pixels)
    for block, channels in enumerate((8, 8, 16, 16, 16)):
        features = keras.layers.Conv2D(
            channels, 3, strides=2, padding="same", use_bias=False, name=f"conv{block}"
        )(features)
        features = keras.layers.BatchNormalization(name=f"norm{block}")(features)
        features = keras.layers.ReLU(name=f"relu{block}")(features)
    return keras.Model(pixels, features, name="tiny_convnet")


TINY = Backbone("TinyConvNet", tiny_convnet, input_size=32)


@pytest.fixture()
def tiny_backbone(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tiny backbone registered for one test: the command-line arguments that select it
    (with its phase 2 unfreezing its top two blocks)."""
    monkeypatch.setitem(BACKBONES, TINY.name, TINY)
    return ["--backbone", TINY.name, "--finetune-layers", "6"]
