"""The public HTTP API: a FastAPI app that BentoML mounts on the Argos service.

Routes reach the running service through :func:`bentoml.get_current_service`, so this
module holds request handling only; models and batching live in :mod:`service.service`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, Protocol, TypeVar

import bentoml
import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from service import metrics
from service.card import ModelCard
from service.errors import ArgosError, InvalidParameter
from service.postprocess import group_scores, top_k
from service.preprocessing import prepare_bytes
from service.schemas import (
    ClassifyResponse,
    ErrorResponse,
    GroupScore,
    LabelScore,
    ModelRef,
    Timing,
)
from service.settings import Settings
from service.uploads import read_image_upload

T = TypeVar("T")


class Backend(Protocol):
    """What the routes need from the running service."""

    card: ModelCard
    settings: Settings

    async def in_worker_thread(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    async def classify(self, pixels: np.ndarray) -> np.ndarray: ...


CurrentBackend = Annotated[Backend, Depends(bentoml.get_current_service)]
ERRORS = {status: {"model": ErrorResponse} for status in (400, 413, 415, 422)}

app = FastAPI(
    title="Argos",
    summary="Image classification and sliding-window detection",
    responses=ERRORS,
)


@app.exception_handler(ArgosError)
async def _argos_error(request: Request, error: ArgosError) -> JSONResponse:
    metrics.REJECTED.labels(endpoint=request.url.path, error=error.code).inc()
    return JSONResponse(error.to_dict(), status_code=error.status_code)


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in issue['loc'][1:]) or 'request'}: {issue['msg']}"
        + (f" (got {issue['input']!r})" if "input" in issue else "")
        for issue in error.errors()
    )
    return await _argos_error(request, InvalidParameter(problems))


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


@app.post("/classify", response_model=ClassifyResponse, response_model_exclude_none=True)
async def classify(
    request: Request,
    backend: CurrentBackend,
    top_k_: Annotated[int, Query(alias="top_k", ge=1, description="labels to return")] = 5,
    groups: Annotated[bool, Query(description="also score the card's label groups")] = False,
) -> ClassifyResponse:
    """Classify one image sent as a multipart ``image`` field or as the raw body."""
    card, settings = backend.card, backend.settings
    if top_k_ > len(card.labels):
        raise InvalidParameter(f"top_k must be at most {len(card.labels)}, got {top_k_}")
    started = time.perf_counter()
    data = await read_image_upload(request, settings.max_upload_bytes)
    pixels = await backend.in_worker_thread(
        prepare_bytes, data, card.preprocessing, max_pixels=settings.max_image_pixels
    )
    preprocessed = time.perf_counter()
    probabilities = (await backend.classify(pixels[np.newaxis]))[0]
    finished = time.perf_counter()

    predictions = top_k(probabilities, card.labels, top_k_)
    metrics.TOP1.labels(model=card.name, label=predictions[0].label).inc()
    metrics.STAGE_SECONDS.labels(endpoint="classify", stage="preprocess").observe(
        preprocessed - started
    )
    metrics.STAGE_SECONDS.labels(endpoint="classify", stage="inference").observe(
        finished - preprocessed
    )
    return ClassifyResponse(
        model=ModelRef(name=card.name, version=card.version),
        predictions=[LabelScore(label=p.label, index=p.index, score=p.score) for p in predictions],
        groups=[GroupScore(name=g.name, score=g.score) for g in group_scores(probabilities, card)]
        if groups
        else None,
        timing_ms=Timing(
            preprocess=_ms(preprocessed - started),
            inference=_ms(finished - preprocessed),
            total=_ms(time.perf_counter() - started),
        ),
    )


@app.get("/model", response_model=ModelCard)
async def model_card(backend: CurrentBackend) -> ModelCard:
    """The model card of the served model."""
    return backend.card
