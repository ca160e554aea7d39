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
from service.http.uploads import UploadLease, read_image_upload
from service.http.worker import MODEL_HEADER, CurrentWorker, LeasedModel, Uploads, Worker
from service.inference.model import ServedModel

router = APIRouter(dependencies=[INFER])
Params = Annotated[DetectParams, Query()]


@router.post(
    "/detect",
    response_model=DetectResponse,
    responses=upload_responses(DETECT_EXAMPLES),
    openapi_extra=IMAGE_UPLOAD,
)
async def detect(
    request: Request, worker: CurrentWorker, model: LeasedModel, uploads: Uploads, params: Params
) -> DetectResponse:
    """Find the requested classes in one image by classifying overlapping windows."""
    started = time.perf_counter()
    result = await _detect(request, worker, model, uploads, params)
    card = model.card
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
    request: Request, worker: CurrentWorker, model: LeasedModel, uploads: Uploads, params: Params
) -> Response:
    """The same detection, drawn: boxes on the image beside a heatmap of window scores."""
    result = await _detect(request, worker, model, uploads, params)
    png = await worker.pipeline.in_thread(draw, result.rgb, result.windows, result.detections)
    return Response(content=png, media_type="image/png", headers={MODEL_HEADER: model.card.tag})


async def _detect(
    request: Request,
    worker: Worker,
    model: ServedModel,
    uploads: UploadLease,
    params: DetectParams,
) -> detection.Detected:
    data = await read_image_upload(request, worker.settings.max_upload_bytes, uploads)
    return await detection.detect(worker.pipeline, model, data, params)
