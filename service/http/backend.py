"""What the HTTP routes need from the worker they run in, and how they get it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Query, Request, Response

from service.errors import NotReady
from service.inference.admission import Admission
from service.inference.model import ServedModel
from service.inference.pipeline import Pipeline
from service.repository.control import Controller
from service.repository.registry import Registry
from service.repository.store import ModelStore
from service.settings import Settings

MODEL_HEADER = "X-Argos-Model"
"""Reply header naming the model that answered, ``name:version``."""


@dataclass
class Backend:
    """One worker's models, settings, admission control and inference pipeline."""

    settings: Settings
    store: ModelStore
    controller: Controller[ServedModel]
    admission: Admission = field(init=False)
    pipeline: Pipeline = field(init=False)

    def __post_init__(self) -> None:
        self.admission = Admission(self.settings.max_inflight)
        self.pipeline = Pipeline(self.settings, self.admission)

    @property
    def models(self) -> Registry[ServedModel]:
        return self.controller.registry

    def is_ready(self) -> bool:
        """Serving every wanted model, and not draining."""
        return not self.admission.draining and self.controller.is_serving_all()


async def get_backend(request: Request) -> Backend:
    """The worker's backend (async, so FastAPI does not hop to a thread to call it)."""
    backend: Backend | None = getattr(request.app.state, "backend", None)
    if backend is None:
        raise NotReady("the model is still loading; retry shortly")
    return backend


CurrentBackend = Annotated[Backend, Depends(get_backend)]


async def leased_model(
    backend: CurrentBackend,
    response: Response,
    model: Annotated[
        str | None, Query(description="a served model's name; default: the first of ARGOS_MODELS")
    ] = None,
) -> AsyncIterator[ServedModel]:
    """Dependency: the model asked for, held until the request is answered."""
    with backend.models.lease(model) as served:
        response.headers[MODEL_HEADER] = served.card.tag
        yield served


LeasedModel = Annotated[ServedModel, Depends(leased_model)]
