"""A model as a worker serves it: its verified card, its onnxruntime sessions and runner."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from service.card import ONNX_FILENAME, ModelCard, verify_artifact
from service.devices import gpu_count
from service.inference.batcher import Scheduler
from service.inference.runner import OnTheWay, Runner
from service.inference.sessions import OnnxModel
from service.settings import Settings

logger = logging.getLogger("argos.model")


@dataclass(frozen=True)
class DenseGraphs:
    """The backbone and head graphs of dense sliding-window detection."""

    backbone: OnnxModel
    head: OnnxModel
    stride: int


@dataclass(frozen=True, slots=True)
class Scores:
    """What the classifier graph says about one image."""

    probabilities: np.ndarray
    """(labels,) probabilities."""
    distance: float | None
    """The familiarity distance, for models whose card has ``familiarity``."""


@dataclass
class ServedModel:
    """One model version's whole life in a worker: :meth:`load` (verify, open its sessions,
    start its runner, warm up), serve (:meth:`classify`, :meth:`run_job`), :meth:`close`."""

    card: ModelCard
    classifier: OnnxModel
    dense: DenseGraphs | None
    runner: Runner

    @classmethod
    def load(cls, directory: Path, settings: Settings, worker_index: int = 0) -> ServedModel:
        """Verify an artifact, open its sessions, start its runner and warm it up; on GPUs,
        worker ``i`` runs on GPU ``i mod count``."""
        card = verify_artifact(directory)
        spec = card.preprocessing
        if not spec.scaling_in_graph:
            raise ValueError(
                f"{card.tag}: Argos feeds raw 0..255 pixels; export the model with its "
                "input scaling inside the graph"
            )

        def session(filename: str, input_name: str, output_name: str) -> OnnxModel:
            model = OnnxModel.load(
                directory / filename,
                providers=settings.providers,
                threads=settings.onnxruntime_threads,
                device_id=worker_index % max(1, gpu_count()),
            )
            if (model.input_name, model.output_name) != (input_name, output_name):
                raise ValueError(
                    f"{card.tag}: {filename} maps {model.input_name!r} -> "
                    f"{model.output_name!r}; the card says {input_name!r} -> {output_name!r}"
                )
            return model

        classifier = session(ONNX_FILENAME, spec.input_name, spec.output_name)
        outputs = _outputs(card)
        if classifier.output_names[: len(outputs)] != outputs:
            raise ValueError(
                f"{card.tag}: {ONNX_FILENAME} has outputs {classifier.output_names}; the card "
                f"says {outputs}"
            )
        dense = None
        if card.dense is not None:
            graphs = card.dense
            dense = DenseGraphs(
                backbone=session(graphs.backbone_file, spec.input_name, graphs.feature_name),
                head=session(graphs.head_file, graphs.pooled_name, spec.output_name),
                stride=graphs.stride,
            )
        scheduler: Scheduler[Any] = Scheduler(
            max_batch_size=settings.batch_size,
            max_queue_delay_s=settings.queue_delay_s,
            max_queue_size=settings.max_inflight,
            timeout_s=settings.queue_timeout_ms / 1000,
        )
        batch_scores = partial(score, classifier, outputs)
        runner = Runner(card.tag, batch_scores, scheduler, instances=settings.instances)
        served = cls(card, classifier, dense, runner)
        served.warm_up(max(settings.batch_size, settings.detect_chunk_size))
        logger.info("serving %s on %s", card.tag, classifier.providers)
        return served

    def warm_up(self, max_batch_size: int) -> None:
        """Run a batch of one and the largest batch before the first request, so that
        onnxruntime's memory arena is sized for every batch in between; on CUDA, where each
        new batch shape picks its convolution algorithms, every power of two runs too. The
        last run, timed, gives admission its first cost per image."""
        spec = self.card.preprocessing
        sizes = {1, max_batch_size}
        if self.classifier.on_gpu:
            sizes |= {1 << i for i in range(max_batch_size.bit_length())}
        for size in sorted(sizes):
            started = time.perf_counter()
            pixels = np.zeros((size, spec.height, spec.width, 3), dtype=np.uint8)
            score(self.classifier, _outputs(self.card), pixels)
        self.runner.observe_batch(size, time.perf_counter() - started)

    async def classify(self, pixels: np.ndarray, announced: OnTheWay | None = None) -> Scores:
        """One (H, W, 3) uint8 input → its scores, batched with concurrent requests;
        ``announced`` if it was announced with ``runner.on_the_way``."""
        return await self.runner.infer(pixels, announced)

    async def run_job(self, steps: Iterator[Any]) -> Any:
        """A detection job, a bounded step per turn between classification batches."""
        return await self.runner.run_job(steps)

    def close(self, timeout_s: float) -> None:
        """Refuse new work, let queued work finish (up to ``timeout_s``), stop the runner."""
        self.runner.close()
        self.runner.join(timeout_s)


def score(classifier: OnnxModel, outputs: list[str], batch: np.ndarray) -> list[Scores]:
    """Run the classifier graph on a batch: each image's scores."""
    probabilities, *distances = classifier.run_outputs(batch, outputs)
    if not distances:
        return [Scores(row, None) for row in probabilities]
    return [Scores(row, float(d)) for row, d in zip(probabilities, distances[0], strict=True)]


def _outputs(card: ModelCard) -> list[str]:
    """The classifier graph's outputs Argos reads: probabilities, then the familiarity
    distance when the card has one."""
    names = [card.preprocessing.output_name]
    if card.familiarity is not None:
        names.append(card.familiarity.output_name)
    return names
