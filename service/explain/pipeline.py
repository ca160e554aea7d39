"""``explain=true``: one upload in, its classification and class activation map out.

Built on the worker's :class:`~service.inference.pipeline.Pipeline`: the same admission,
limits, preprocessing threads and metrics as a plain classification, and the same model
input; the backbone and head run as one runner job that takes turns with batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from service import metrics
from service.card import Preprocessing
from service.errors import InvalidParameter
from service.explain.cam import ActivationMap, explain_steps
from service.inference.model import ServedModel
from service.inference.pipeline import Familiar, Pipeline, StageTimes, judge_familiarity
from service.preprocessing import Box, Prepared, model_region, prepare_upload

WORK_IN_IMAGES = 1.2
"""An explanation's runner work in classifications, as admission counts it: the backbone
costs about one, the head on 1 + 7 x 7 rows about a sixth of one."""


@dataclass(frozen=True, slots=True)
class Explained:
    prepared: Prepared
    cam: ActivationMap
    box: Box
    """The part of the upright upload that the map covers, in its pixels."""
    familiar: Familiar | None
    times: StageTimes


def covered(size: tuple[int, int], spec: Preprocessing) -> Box:
    """The part of a (width, height) image that the model input, and so the map, covers."""
    return model_region((0.0, 0.0, float(size[0]), float(size[1])), spec)


async def explain(
    pipeline: Pipeline, model: ServedModel, data: bytes, *, endpoint: str
) -> Explained:
    """Classify one encoded image and map where its top label is seen."""
    card = model.card
    if model.dense is None:
        raise InvalidParameter(
            "explain=true needs a model exported with its backbone and head as separate "
            f"graphs (card.dense), and {card.tag} has none; ask without explain, or name "
            "such a model with model="
        )
    settings = pipeline.settings
    started = time.perf_counter()
    with pipeline.admitted(model, 1, WORK_IN_IMAGES):
        prepared = await pipeline.in_thread(
            prepare_upload,
            data,
            card.preprocessing,
            max_pixels=settings.max_image_pixels,
            max_decoded_bytes=settings.max_decoded_bytes,
        )
        preprocessed = time.perf_counter()
        cam = await model.run_job(explain_steps(prepared.pixels, model.dense))
    times = StageTimes(preprocessed - started, time.perf_counter() - preprocessed)
    metrics.TOP1.labels(model=card.tag, label=card.labels[cam.index]).inc()
    pipeline.observe(endpoint, times)
    familiar = judge_familiarity(card, [cam.distance])
    box = covered(prepared.size, card.preprocessing)
    return Explained(prepared, cam, box, familiar[0] if familiar else None, times)
