"""``POST /detect`` and ``POST /detect/render``: sliding-window detection."""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from PIL import Image

from service import metrics
from service.detection.merge import Detection, WindowScores, class_scores, select
from service.detection.params import DetectParams
from service.detection.plan import input_regions, plan, targets, window_inputs
from service.detection.render import draw
from service.errors import InvalidParameter
from service.http.backend import Backend, CurrentBackend
from service.http.schemas import Detection as DetectionBody
from service.http.schemas import DetectResponse, ImageSize, ModelRef, Timing, ms
from service.http.uploads import read_image_upload
from service.preprocessing import load_rgb, open_image, scale_image

router = APIRouter()
Params = Annotated[DetectParams, Query()]


@router.post("/detect", response_model=DetectResponse)
async def detect(request: Request, backend: CurrentBackend, params: Params) -> DetectResponse:
    """Find the requested classes in one image by classifying overlapping windows."""
    started = time.perf_counter()
    rgb, windows, detections, inference_s = await _run(request, backend, params)
    card = backend.card
    return DetectResponse(
        model=ModelRef(name=card.name, version=card.version),
        mode=params.mode,
        image=ImageSize(width=rgb.width, height=rgb.height),
        detections=[DetectionBody(label=d.label, score=d.score, box=d.box) for d in detections],
        windows=len(windows.boxes),
        timing_ms=Timing(
            preprocess=ms(time.perf_counter() - started - inference_s),
            inference=ms(inference_s),
            total=ms(time.perf_counter() - started),
        ),
    )


@router.post(
    "/detect/render",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
async def detect_render(request: Request, backend: CurrentBackend, params: Params) -> Response:
    """The same detection, drawn: boxes on the image beside a heatmap of window scores."""
    rgb, windows, detections, _ = await _run(request, backend, params)
    png = await backend.in_worker_thread(draw, rgb, windows, detections)
    return Response(content=png, media_type="image/png")


async def _run(
    request: Request, backend: Backend, params: DetectParams
) -> tuple[Image.Image, WindowScores, list[Detection], float]:
    card, settings = backend.card, backend.settings
    if params.mode == "dense" and card.dense is None:
        raise InvalidParameter(f"{card.tag} has no dense backbone/head graphs; use mode=exact")
    wanted = targets(card, params.classes)
    data = await read_image_upload(request, settings.max_upload_bytes)
    started = time.perf_counter()
    image = open_image(data, max_pixels=settings.max_image_pixels)
    rgb = await backend.in_worker_thread(load_rgb, image)
    windows, inference_s = await _score_windows(backend, rgb, params, wanted)
    detections = select(windows, params)
    metrics.observe_stages(
        f"detect_{params.mode}",
        preprocess=time.perf_counter() - started - inference_s,
        inference=inference_s,
    )
    return rgb, windows, detections, inference_s


async def _score_windows(
    backend: Backend, rgb: Image.Image, params: DetectParams, wanted: dict[str, list[int]]
) -> tuple[WindowScores, float]:
    """Every window's score for each wanted class, and the seconds spent in inference."""
    spec, settings = backend.card.preprocessing, backend.settings
    scales = plan(rgb.width, rgb.height, params, spec, settings.detect_max_windows)
    boxes = np.concatenate([scale.boxes for scale in scales])
    inference_s = 0.0
    parts = []
    if params.mode == "exact":
        pixels = await backend.in_worker_thread(window_inputs, rgb, boxes, spec)
        started = time.perf_counter()
        parts.append(await backend.classify_windows(pixels))
        inference_s += time.perf_counter() - started
    else:
        for scale in scales:
            image = await backend.in_worker_thread(scale_image, rgb, scale.factor, spec)
            regions = input_regions(scale.boxes, scale.factor, spec)
            started = time.perf_counter()
            parts.append(await backend.dense_windows(image, regions))
            inference_s += time.perf_counter() - started
    scores = class_scores(np.concatenate(parts), wanted)
    return WindowScores(boxes=boxes, scores=scores, classes=list(wanted)), inference_s
