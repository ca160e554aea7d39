"""``POST /classify`` and ``GET /model``."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request

from service.card import ModelCard
from service.errors import InvalidParameter
from service.http.auth import INFER
from service.http.openapi import CLASSIFY_EXAMPLE, IMAGE_UPLOAD, upload_responses
from service.http.schemas import ClassifyResponse, ModelRef, Timing, ms
from service.http.uploads import read_image_upload
from service.http.worker import CurrentWorker, LeasedModel, Uploads
from service.postprocess import DEFAULT_TOP_K, group_scores, top_k

router = APIRouter(dependencies=[INFER])


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    response_model_exclude_none=True,
    responses=upload_responses(CLASSIFY_EXAMPLE),
    openapi_extra=IMAGE_UPLOAD,
)
async def classify(
    request: Request,
    worker: CurrentWorker,
    model: LeasedModel,
    uploads: Uploads,
    top_k_: Annotated[
        int | None,
        Query(
            alias="top_k",
            ge=1,
            description=f"labels to return; default {DEFAULT_TOP_K}, or all if fewer",
        ),
    ] = None,
    groups: Annotated[bool, Query(description="also score the card's label groups")] = False,
) -> ClassifyResponse:
    """Classify one image sent as a multipart ``image`` field or as the raw body."""
    card = model.card
    top_k_ = min(DEFAULT_TOP_K, len(card.labels)) if top_k_ is None else top_k_
    if top_k_ > len(card.labels):
        raise InvalidParameter(f"top_k must be at most {len(card.labels)}, got {top_k_}")
    started = time.perf_counter()
    data = await read_image_upload(request, worker.settings.max_upload_bytes, uploads)
    result = await worker.pipeline.classify(model, [data], endpoint="classify")
    probabilities, times = result.probabilities[0], result.times
    known = result.familiarity is not None and result.unknown is not None
    return ClassifyResponse(
        model=ModelRef(name=card.name, version=card.version),
        predictions=top_k(probabilities, card.labels, top_k_),
        groups=group_scores(probabilities, card) if groups else None,
        familiarity=round(float(result.familiarity[0]), 4) if known else None,
        unknown=bool(result.unknown[0]) if known else None,
        timing_ms=Timing(
            preprocess=ms(times.preprocess_s),
            inference=ms(times.inference_s),
            total=ms(time.perf_counter() - started),
        ),
    )


@router.get("/model", response_model=ModelCard)
async def model_card(model: LeasedModel) -> ModelCard:
    """The model card of a served model."""
    return model.card
