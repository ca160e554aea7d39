"""The BentoML services: ``Argos`` (HTTP API, preprocessing) over ``Inference`` (onnxruntime).

Run with ``bentoml serve service.service:Argos``. Requests are decoded and preprocessed
in the API workers; concurrent requests then meet in ``Inference.classify``, a batchable
method, so that BentoML's adaptive batching hands onnxruntime one batch for many requests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import bentoml
import numpy as np

from service.card import ONNX_FILENAME, ModelCard, verify_artifact
from service.detection.dense import feature_cells, pool_cells
from service.http.app import app
from service.inference.sessions import OnnxModel
from service.settings import Settings, get_settings

T = TypeVar("T")
logger = logging.getLogger("argos.service")
settings = get_settings()


def _log_through_bentoml() -> None:
    """Send ``argos.*`` log records to the handlers BentoML set up for this worker."""
    argos_logger = logging.getLogger("argos")
    argos_logger.setLevel(logging.INFO)
    argos_logger.propagate = False
    for handler in logging.getLogger("bentoml").handlers:
        if handler not in argos_logger.handlers:
            argos_logger.addHandler(handler)


# BentoML 1.4.3x replaces its client session to a dependency every 100 requests and closes
# the old one with requests still in flight, which fail with 500s under concurrency; keep
# one session for the life of the worker instead.
_ONE_SESSION = {"max_requests": 1_000_000_000, "max_age": 1e9}


@bentoml.service(
    name="argos-inference",
    workers=1,
    traffic={"timeout": 120},
    runner_connection=_ONE_SESSION,
)
class Inference:
    """One onnxruntime session per process, fed by adaptive batches."""

    artifact = bentoml.models.BentoModel(settings.model)

    def __init__(self) -> None:
        _log_through_bentoml()
        directory = Path(self.artifact.path)
        self.card: ModelCard = verify_artifact(directory)
        self.model = OnnxModel.load(
            directory / ONNX_FILENAME,
            providers=settings.providers,
            threads=settings.onnxruntime_threads,
        )
        self.backbone = self.head = None
        if self.card.dense is not None:
            self.backbone, self.head = (
                OnnxModel.load(
                    directory / name,
                    providers=settings.providers,
                    threads=settings.onnxruntime_threads,
                )
                for name in (self.card.dense.backbone_file, self.card.dense.head_file)
            )
        spec = self.card.preprocessing
        self.model.run(np.zeros((1, spec.height, spec.width, 3), dtype=np.uint8))
        logger.info("serving %s on %s", self.card.tag, self.model.providers)

    @bentoml.api(
        batchable=True,
        batch_dim=0,
        max_batch_size=settings.batch_max_size,
        max_latency_ms=settings.batch_max_latency_ms,
    )
    def classify(self, pixels: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 pixels → (N, labels) probabilities."""
        return self.model.run(pixels)

    @bentoml.api
    def classify_windows(self, pixels: np.ndarray) -> np.ndarray:
        """Many window crops of one request, in onnxruntime calls of a fixed chunk size."""
        return self.model.run_chunked(pixels, settings.detect_chunk_size)

    @bentoml.api
    def dense_windows(self, image: np.ndarray, regions: np.ndarray) -> np.ndarray:
        """Backbone once over a (1, H, W, 3) image, then the head on each region's pooled cells."""
        if self.backbone is None or self.head is None or self.card.dense is None:
            raise ValueError(f"{self.card.tag} has no dense graphs")
        feature_map = self.backbone.run(image)[0]
        cells = feature_cells(regions, self.card.dense.stride, feature_map.shape[:2])
        return self.head.run_chunked(pool_cells(feature_map, cells), settings.detect_chunk_size)


@bentoml.asgi_app(app, path="/")
@bentoml.service(name="argos", workers=settings.api_workers, traffic={"timeout": 120})
class Argos:
    """The public service; see :mod:`service.http.app` for its routes."""

    inference = bentoml.depends(Inference)
    artifact = bentoml.models.BentoModel(settings.model)

    def __init__(self) -> None:
        self.settings: Settings = settings
        self.card: ModelCard = verify_artifact(Path(self.artifact.path))
        self._threads = anyio.CapacityLimiter(settings.api_threads)

    async def in_worker_thread(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run CPU-bound work (Pillow releases the GIL) off the event loop."""
        return await anyio.to_thread.run_sync(lambda: func(*args, **kwargs), limiter=self._threads)

    async def classify(self, pixels: np.ndarray) -> np.ndarray:
        return await self.inference.to_async.classify(pixels)

    async def classify_windows(self, pixels: np.ndarray) -> np.ndarray:
        return await self.inference.to_async.classify_windows(pixels)

    async def dense_windows(self, image: np.ndarray, regions: np.ndarray) -> np.ndarray:
        return await self.inference.to_async.dense_windows(image=image, regions=regions)
