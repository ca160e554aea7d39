"""A worker's models: loaded from the store into runners, kept in line with the server's
desired state."""

from __future__ import annotations

from service.inference.model import ServedModel
from service.repository.control import Controller
from service.repository.desired_state import ControlDir
from service.repository.registry import Registry
from service.repository.store import ModelStore
from service.settings import Settings


def serve_models(
    settings: Settings,
    store: ModelStore,
    control: ControlDir,
    models: dict[str, list[str]],
    worker_index: int = 0,
) -> Controller[ServedModel]:
    """Load ``models`` (name → versions, the first name the default), or the server's
    current desired state if another worker set it already, and follow later changes;
    ``worker_index`` picks the GPU, as for one model."""

    def load(name: str, version: str) -> ServedModel:
        return ServedModel.load(store.artifact_path(name, version), settings, worker_index)

    def close(model: ServedModel) -> None:
        model.close(settings.drain_timeout_s)

    registry: Registry[ServedModel] = Registry(next(iter(models)))
    controller = Controller(
        control, registry, load, close, drain_timeout_s=settings.drain_timeout_s
    )
    controller.start(models)
    return controller
