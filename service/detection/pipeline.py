"""Detection's inference path: one upload in, scored windows and merged boxes out.

Built on the worker's :class:`~service.inference.pipeline.Pipeline`: the same admission
(one place per detection job), limits, preprocessing threads and metrics as
classification.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from service.detection.merge import Detection, WindowScores, class_scores, select
from service.detection.params import DetectParams
from service.detection.plan import plan, targets, work_in_images
from service.detection.scoring import dense_steps, exact_steps
from service.errors import InvalidParameter
from service.inference.model import ServedModel
from service.inference.pipeline import Pipeline, StageTimes


@dataclass(frozen=True)
class Detected:
    rgb: Image.Image
    """The upright image the boxes refer to."""
    windows: WindowScores
    detections: list[Detection]
    times: StageTimes


async def detect(
    pipeline: Pipeline, model: ServedModel, data: bytes, params: DetectParams
) -> Detected:
    """Find ``params.classes`` in one encoded image by classifying overlapping windows."""
    settings = pipeline.settings
    card, spec = model.card, model.card.preprocessing
    if params.mode == "dense" and model.dense is None:
        raise InvalidParameter(f"{card.tag} has no dense backbone/head graphs; use mode=exact")
    wanted = targets(card, params.classes)
    started = time.perf_counter()
    image = await pipeline.open(data)
    # The window count and the work are known from the header's size (the same upright).
    planned = plan(image.width, image.height, params, spec, settings.detect_max_windows)
    work = work_in_images(planned, image.width, image.height, params.mode, spec)
    with pipeline.admitted(model, 1, work):
        rgb = await pipeline.decode(image)
        scales = plan(rgb.width, rgb.height, params, spec, settings.detect_max_windows)
        boxes = np.concatenate([scale.boxes for scale in scales])
        queued = time.perf_counter()
        if params.mode == "exact":
            steps = exact_steps(rgb, boxes, spec, model.classifier, settings.detect_chunk_size)
        else:
            assert model.dense is not None
            steps = dense_steps(rgb, scales, spec, model.dense, settings.detect_chunk_size)
        probabilities = await model.run_job(steps)
    inference_s = time.perf_counter() - queued
    windows = WindowScores(boxes, class_scores(probabilities, wanted), list(wanted))
    detections = await pipeline.in_thread(select, windows, params)
    times = StageTimes(time.perf_counter() - started - inference_s, inference_s)
    pipeline.observe(f"detect_{params.mode}", times)
    return Detected(rgb, windows, detections, times)
