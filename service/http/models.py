"""``GET /models``: the models this server serves."""

from __future__ import annotations

from fastapi import APIRouter

from service.http.auth import INFER
from service.http.schemas import ModelsResponse, ServedModelState
from service.http.worker import CurrentWorker
from service.repository.control import READY

router = APIRouter(dependencies=[INFER])


@router.get("/models", response_model=ModelsResponse)
async def served_models(worker: CurrentWorker) -> ModelsResponse:
    """Every loaded model version (the default version of each name last), and any that
    failed to load."""
    models = worker.models
    states = []
    for name, served in models.served().items():
        for model in served:
            states.append(
                ServedModelState(
                    name=name,
                    version=model.card.version,
                    labels=len(model.card.labels),
                    state=READY,
                    default=model is served[-1],
                )
            )
    for name, versions in worker.controller.status().models.items():
        for version, state in versions.items():
            if state.state != READY:
                states.append(
                    ServedModelState(
                        name=name,
                        version=version,
                        state=state.state,
                        reason=state.reason,
                        default=False,
                    )
                )
    return ModelsResponse(default=worker.default_model, models=states)
