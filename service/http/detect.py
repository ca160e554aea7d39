"""``POST /detect`` and ``POST /detect/render``: sliding-window detection."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from service.detection import pipeline as detection
from service.detection.params import DetectParams
from service.detection.render import draw
from service.http.auth import INFER
from service.http.openapi import DETECT_EXAMPLES, IMAGE_UPLOAD, upload_responses
from service.http.schemas import DetectResponse, ImageSize, ModelRef, Timing, ms
from service.http.uploads import read_image_upload
from service.http.worker import MODEL_HEADER, ModelQuery, ModelUpload, upload_to_model

router = APIRouter(dependencies=[INFER])
Params = Annotated[DetectParams, Query()]


@router.post(
    "/detect",
    response_model=DetectResponse,
    responses=upload_responses(DETECT_EXAMPLES),
    openapi_extra=IMAGE_UPLOAD,
)
async def detect(
    request: Request, response: Response, params: Params, model: ModelQuery = None
) -> DetectResponse:
    """Find the requested classes in one image by classifying overlapping windows."""
    started = time.perf_counter()
    with upload_to_model(request, response, model) as held:
        result = await _detect(request, held, params)
    card = held.model.card
    return DetectResponse(
        model=ModelRef(name=card.name, version=card.version),
        mode=params.mode,
        image=ImageSize(width=result.rgb.width, height=result.rgb.height),
        detections=result.detections,
        windows=len(result.windows.boxes),
        timing_ms=Timing(
            preprocess=ms(result.times.preprocess_s),
            inference=ms(result.times.inference_s),
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
    request: Request, response: Response, params: Params, model: ModelQuery = None
) -> Response:
    """The same detection, drawn: boxes on the image beside a heatmap of window scores."""
    with upload_to_model(request, response, model) as held:
        result = await _detect(request, held, params)
        png = await held.worker.pipeline.in_thread(
            draw, result.rgb, result.windows, result.detections
        )
    tag = held.model.card.tag
    return Response(content=png, media_type="image/png", headers={MODEL_HEADER: tag})


async def _detect(request: Request, held: ModelUpload, params: DetectParams) -> detection.Detected:
    worker = held.worker
    data = await read_image_upload(request, worker.settings.max_upload_bytes, held.uploads)
    return await detection.detect(worker.pipeline, held.model, data, params)
