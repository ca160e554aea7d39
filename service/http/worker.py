"""What the HTTP routes need from the worker they run in, and how they get it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Query, Request, Response

from service.errors import NotReady
from service.http.uploads import UploadBudget, UploadLease
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
class Worker:
    """One worker's models, settings, admission control, inference pipeline and the budget
    of upload bytes it holds."""

    settings: Settings
    store: ModelStore
    controller: Controller[ServedModel]
    startup_models: tuple[str, ...]
    """The model names the server was started with, the default first: it is ready only
    while it serves every one of them."""
    admission: Admission = field(init=False)
    pipeline: Pipeline = field(init=False)
    uploads: UploadBudget = field(init=False)

    def __post_init__(self) -> None:
        self.admission = Admission(
            self.settings.max_inflight, budget_s=self.settings.admission_budget_s
        )
        self.pipeline = Pipeline(self.settings, self.admission)
        self.uploads = UploadBudget(self.settings.max_buffered_bytes)

    @property
    def models(self) -> Registry[ServedModel]:
        return self.controller.registry

    def unready_because(self) -> list[str]:
        """Why this worker should get no traffic now; empty when it is ready."""
        reasons = []
        if self.admission.draining:
            reasons.append("the server is shutting down")
        served = self.models.served()
        missing = [name for name in self.startup_models if name not in served]
        if missing:
            reasons.append(f"models named at start-up are not loaded: {', '.join(missing)}")
        if not self.controller.is_serving_all():
            reasons.append("models are being loaded or unloaded")
        return reasons

    def is_ready(self) -> bool:
        """Serving every start-up and wanted model, and not draining."""
        return not self.unready_because()

    @property
    def default_model(self) -> str | None:
        """The model of requests that name none, while it is loaded."""
        name = self.models.default_name
        return name if name in self.models.served() else None


def worker_of(request: Request) -> Worker:
    """The worker a request runs in, or a 503 while it is still loading."""
    worker: Worker | None = getattr(request.app.state, "worker", None)
    if worker is None:
        raise NotReady("the model is still loading; retry shortly")
    return worker


async def get_worker(request: Request) -> Worker:
    """Dependency: the worker this request runs in (async, so FastAPI does not hop to a
    thread to call it)."""
    return worker_of(request)


CurrentWorker = Annotated[Worker, Depends(get_worker)]

ModelQuery = Annotated[
    str | None,
    Query(description="a served model's name; default: the first of ARGOS_MODELS"),
]


async def upload_lease(request: Request) -> AsyncIterator[UploadLease]:
    """Dependency: the request's share of the worker's upload bytes, held until it is
    answered."""
    with worker_of(request).uploads.lease() as lease:
        yield lease


Uploads = Annotated[UploadLease, Depends(upload_lease)]


async def leased_model(
    request: Request, response: Response, model: ModelQuery = None
) -> AsyncIterator[ServedModel]:
    """Dependency: the model asked for, held until the request is answered."""
    with _model_lease(worker_of(request), model, response) as served:
        yield served


LeasedModel = Annotated[ServedModel, Depends(leased_model)]


@dataclass(frozen=True, slots=True)
class ModelUpload:
    """What a route that sends one upload to a model holds while it answers: the worker,
    the model asked for and the request's share of the upload bytes."""

    worker: Worker
    model: ServedModel
    uploads: UploadLease


@contextmanager
def upload_to_model(
    request: Request, response: Response, model: str | None
) -> Iterator[ModelUpload]:
    """:data:`LeasedModel` and :data:`Uploads` for the body of a route that reads an upload
    and runs a model: held by the route itself rather than by dependencies with ``yield``,
    each of which costs FastAPI a solve, a context manager and an exit-stack entry per
    request (about 0.1 core-ms of the event loop for ``/classify``)."""
    worker = worker_of(request)
    with _model_lease(worker, model, response) as served, worker.uploads.lease() as lease:
        yield ModelUpload(worker, served, lease)


@contextmanager
def _model_lease(worker: Worker, name: str | None, response: Response) -> Iterator[ServedModel]:
    """The model ``name`` (default: the default model) held, its tag in the reply's header."""
    if name is None and worker.default_model is None:
        raise NotReady(
            f"the default model {worker.models.default_name!r} is not loaded (it was "
            "unloaded); name a served model with model=, see GET /models"
        )
    with worker.models.lease(name) as served:
        response.headers[MODEL_HEADER] = served.card.tag
        yield served
