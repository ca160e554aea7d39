"""``POST /classify``, ``POST /classify/render`` and ``GET /model``."""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from service.card import ModelCard
from service.errors import InvalidParameter
from service.explain import render
from service.explain.pipeline import Explained, explain
from service.http.auth import INFER
from service.http.openapi import CLASSIFY_EXAMPLES, IMAGE_UPLOAD, upload_responses
from service.http.schemas import ClassifyResponse, Explanation, ModelRef, Timing, ms
from service.http.uploads import read_image_upload
from service.http.worker import (
    MODEL_HEADER,
    LeasedModel,
    ModelQuery,
    ModelUpload,
    upload_to_model,
)
from service.postprocess import DEFAULT_TOP_K, group_scores, top_k

router = APIRouter(dependencies=[INFER])


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    response_model_exclude_none=True,
    responses=upload_responses(CLASSIFY_EXAMPLES),
    openapi_extra=IMAGE_UPLOAD,
)
async def classify(
    request: Request,
    response: Response,
    top_k_: Annotated[
        int | None,
        Query(
            alias="top_k",
            ge=1,
            description=f"labels to return; default {DEFAULT_TOP_K}, or all if fewer",
        ),
    ] = None,
    groups: Annotated[bool, Query(description="also score the card's label groups")] = False,
    explain_: Annotated[
        bool,
        Query(
            alias="explain",
            description="also map where the image shows the top label (a model with "
            "backbone and head graphs, card.dense)",
        ),
    ] = False,
    model: ModelQuery = None,
) -> ClassifyResponse:
    """Classify one image sent as a multipart ``image`` field or as the raw body."""
    with upload_to_model(request, response, model) as held:
        return await _classify(request, held, top_k_, groups=groups, explain_=explain_)


async def _classify(
    request: Request, held: ModelUpload, top_k_: int | None, *, groups: bool, explain_: bool
) -> ClassifyResponse:
    worker, model = held.worker, held.model
    card = model.card
    top_k_ = min(DEFAULT_TOP_K, len(card.labels)) if top_k_ is None else top_k_
    if top_k_ > len(card.labels):
        raise InvalidParameter(f"top_k must be at most {len(card.labels)}, got {top_k_}")
    started = time.perf_counter()
    data = await read_image_upload(request, worker.settings.max_upload_bytes, held.uploads)
    explanation = None
    if explain_:
        explained = await explain(worker.pipeline, model, data, endpoint="classify_explain")
        probabilities, familiar, times = (
            explained.cam.probabilities,
            explained.familiar,
            explained.times,
        )
        explanation = _explanation(explained, card)
    else:
        result = await worker.pipeline.classify(model, [data], endpoint="classify", inline=True)
        probabilities, times = result.probabilities[0], result.times
        familiar = result.familiar[0] if result.familiar else None
    return ClassifyResponse(
        model=ModelRef(name=card.name, version=card.version),
        predictions=top_k(probabilities, card.labels, top_k_),
        groups=group_scores(probabilities, card) if groups else None,
        familiarity=familiar.familiarity if familiar else None,
        unknown=familiar.unknown if familiar else None,
        explanation=explanation,
        timing_ms=Timing(
            preprocess=ms(times.preprocess_s),
            inference=ms(times.inference_s),
            total=ms(time.perf_counter() - started),
        ),
    )


@router.post(
    "/classify/render",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}} | upload_responses(),
    openapi_extra=IMAGE_UPLOAD,
)
async def classify_render(
    request: Request, response: Response, model: ModelQuery = None
) -> Response:
    """The same as ``explain=true``, drawn: the map over the image, with the top label."""
    with upload_to_model(request, response, model) as held:
        pipeline = held.worker.pipeline
        max_bytes = held.worker.settings.max_upload_bytes
        data = await read_image_upload(request, max_bytes, held.uploads)
        explained = await explain(pipeline, held.model, data, endpoint="classify_render")
        rgb = await pipeline.decode(await pipeline.open(data))
        png = await pipeline.in_thread(render.draw, rgb, explained, held.model.card.labels)
    tag = held.model.card.tag
    return Response(content=png, media_type="image/png", headers={MODEL_HEADER: tag})


@router.get("/model", response_model=ModelCard)
async def model_card(model: LeasedModel) -> ModelCard:
    """The model card of a served model."""
    return model.card


def _explanation(explained: Explained, card: ModelCard) -> Explanation:
    cam = explained.cam
    return Explanation(
        label=card.labels[cam.index],
        index=cam.index,
        grid=np.round(cam.grid.astype(np.float64), 4).tolist(),
        box=[round(value, 2) for value in explained.box],
    )
