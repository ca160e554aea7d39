"""``POST /detect`` and ``POST /detect/render``: sliding-window detection."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from PIL import Image

from service import metrics
from service.card import Preprocessing
from service.detection.merge import Detection, WindowScores, class_scores, select
from service.detection.params import DetectParams
from service.detection.plan import Scale, plan, targets
from service.detection.render import draw
from service.detection.scoring import dense_steps, exact_steps
from service.errors import InvalidParameter
from service.http.backend import MODEL_HEADER, Backend, CurrentBackend, LeasedModel, admitted
from service.http.openapi import DETECT_EXAMPLE, IMAGE_UPLOAD, upload_responses
from service.http.schemas import Detection as DetectionBody
from service.http.schemas import DetectResponse, ImageSize, ModelRef, Timing, ms
from service.http.uploads import read_image_upload
from service.inference.model import ServedModel
from service.preprocessing import load_rgb, open_image

router = APIRouter(dependencies=[Depends(admitted)])
Params = Annotated[DetectParams, Query()]


@dataclass(frozen=True)
class _Result:
    rgb: Image.Image
    windows: WindowScores
    detections: list[Detection]
    inference_s: float


@router.post(
    "/detect",
    response_model=DetectResponse,
    responses=upload_responses(DETECT_EXAMPLE),
    openapi_extra=IMAGE_UPLOAD,
)
async def detect(
    request: Request, backend: CurrentBackend, model: LeasedModel, params: Params
) -> DetectResponse:
    """Find the requested classes in one image by classifying overlapping windows."""
    started = time.perf_counter()
    result = await _run(request, backend, model, params)
    card = model.card
    return DetectResponse(
        model=ModelRef(name=card.name, version=card.version),
        mode=params.mode,
        image=ImageSize(width=result.rgb.width, height=result.rgb.height),
        detections=[
            DetectionBody(label=d.label, score=d.score, box=d.box) for d in result.detections
        ],
        windows=len(result.windows.boxes),
        timing_ms=Timing(
            preprocess=ms(time.perf_counter() - started - result.inference_s),
            inference=ms(result.inference_s),
            total=ms(time.perf_counter() - started),
        ),
    )


@router.post(
    "/detect/render",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}} | upload_responses(),
    openapi_extra=IMAGE_UPLOAD,
)
async def detect_render(
    request: Request, backend: CurrentBackend, model: LeasedModel, params: Params
) -> Response:
    """The same detection, drawn: boxes on the image beside a heatmap of window scores."""
    result = await _run(request, backend, model, params)
    png = await backend.in_thread(draw, result.rgb, result.windows, result.detections)
    return Response(content=png, media_type="image/png", headers={MODEL_HEADER: model.card.tag})


async def _run(
    request: Request, backend: Backend, model: ServedModel, params: DetectParams
) -> _Result:
    settings = backend.settings
    card, spec = model.card, model.card.preprocessing
    if params.mode == "dense" and model.dense is None:
        raise InvalidParameter(f"{card.tag} has no dense backbone/head graphs; use mode=exact")
    wanted = targets(card, params.classes)
    data = await read_image_upload(request, settings.max_upload_bytes)
    started = time.perf_counter()
    rgb, scales = await backend.in_thread(_open_and_plan, data, params, backend, spec)
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
    detections = await backend.in_thread(select, windows, params)
    metrics.observe_stages(
        f"detect_{params.mode}",
        preprocess=time.perf_counter() - started - inference_s,
        inference=inference_s,
    )
    return _Result(rgb, windows, detections, inference_s)


def _open_and_plan(
    data: bytes, params: DetectParams, backend: Backend, spec: Preprocessing
) -> tuple[Image.Image, list[Scale]]:
    """Decode the upload and lay out its windows, off the event loop. The window count is
    checked on the header's size before any pixel is decoded (it is the same upright)."""
    settings = backend.settings
    image = open_image(data, max_pixels=settings.max_image_pixels)
    plan(image.width, image.height, params, spec, settings.detect_max_windows)
    rgb = load_rgb(image, max_decoded_bytes=settings.max_decoded_bytes)
    return rgb, plan(rgb.width, rgb.height, params, spec, settings.detect_max_windows)
