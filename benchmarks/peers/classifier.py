"""The model as the peer servers serve it: Argos's verified card, preprocessing, onnxruntime
session and top-k, and nothing of its server (no BentoML), so that the peers run in an
environment of their own."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service.card import ONNX_FILENAME, verify_artifact
from service.inference.sessions import OnnxModel
from service.postprocess import DEFAULT_TOP_K, Prediction, top_k
from service.preprocessing import prepare_bytes, stack
from service.settings import Settings

MAX_IMAGE_PIXELS: int = Settings.model_fields["max_image_pixels"].default


class Classifier:
    """One onnxruntime session of ``model.onnx`` with ``threads`` intra-op threads, as an
    Argos worker opens it."""

    def __init__(self, artifact: Path, *, threads: int) -> None:
        self.card = verify_artifact(artifact)
        self.model = OnnxModel.load(artifact / ONNX_FILENAME, threads=threads)

    @property
    def name(self) -> str:
        return self.card.name

    def prepare(self, data: bytes) -> np.ndarray:
        """Encoded image → (H, W, 3) uint8 model input, exactly as Argos prepares uploads."""
        return prepare_bytes(data, self.card.preprocessing, max_pixels=MAX_IMAGE_PIXELS)

    def classify(self, images: Sequence[np.ndarray]) -> list[list[Prediction]]:
        """Prepared images → the top labels of each, in one onnxruntime call."""
        probabilities = self.model.run(stack(images))
        return [top_k(row, self.card.labels, DEFAULT_TOP_K) for row in probabilities]

    def warm_up(self, max_batch_size: int) -> None:
        """Run every batch size up to ``max_batch_size`` once, so the first requests do not
        pay for onnxruntime's first runs."""
        spec = self.card.preprocessing
        for size in range(1, max_batch_size + 1):
            self.model.run(np.zeros((size, spec.height, spec.width, 3), dtype=np.uint8))
