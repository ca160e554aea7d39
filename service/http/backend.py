"""What the HTTP routes need from the worker they run in, and how they get it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Query, Request, Response

from service.errors import NotReady
from service.http.admission import Admission
from service.inference.model import ServedModel
from service.repository.control import Controller
from service.repository.registry import Registry
from service.repository.store import ModelStore
from service.settings import Settings

T = TypeVar("T")
MODEL_HEADER = "X-Argos-Model"
"""Reply header naming the model that answered, ``name:version``."""


@dataclass
class Backend:
    """One worker's models, settings, admission control and preprocessing threads."""

    settings: Settings
    store: ModelStore
    controller: Controller[ServedModel]
    admission: Admission = field(init=False)
    _threads: anyio.CapacityLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.admission = Admission(self.settings.max_inflight)
        self._threads = anyio.CapacityLimiter(self.settings.preprocess_threads)

    @property
    def models(self) -> Registry[ServedModel]:
        return self.controller.registry

    def is_ready(self) -> bool:
        """Serving every wanted model, and not draining."""
        return not self.admission.draining and self.controller.is_serving_all()

    async def in_thread(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run CPU-bound work (Pillow and numpy release the GIL) off the event loop."""
        return await anyio.to_thread.run_sync(partial(func, *args, **kwargs), limiter=self._threads)


async def get_backend(request: Request) -> Backend:
    """The worker's backend (async, so FastAPI does not hop to a thread to call it)."""
    backend: Backend | None = getattr(request.app.state, "backend", None)
    if backend is None:
        raise NotReady("the model is still loading; retry shortly")
    return backend


CurrentBackend = Annotated[Backend, Depends(get_backend)]


async def admitted(backend: CurrentBackend) -> AsyncIterator[None]:
    """Dependency of inference routes: a place in this worker, or a 503."""
    with backend.admission.slot():
        yield


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
