"""Where model versions come from: the BentoML model store, by default."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import bentoml
from bentoml.exceptions import BentoMLException

from service.errors import UnknownModel, without_paths

logger = logging.getLogger("argos.repository")


class ModelStore(Protocol):
    def resolve(self, tag: str) -> tuple[str, str]:
        """``name[:version|:latest]`` → the stored ``(name, version)``; raises
        :class:`UnknownModel`."""
        ...

    def stored(self) -> list[tuple[str, str]]:
        """Every stored ``(name, version)``, oldest first within a name."""
        ...

    def artifact_path(self, name: str, version: str) -> Path:
        """The folder of a stored version (``card.json``, ``model.onnx``, ...)."""
        ...


class BentoStore:
    """The BentoML model store of ``$BENTOML_HOME`` (``bentoml models list`` shows it)."""

    def resolve(self, tag: str) -> tuple[str, str]:
        try:
            model = bentoml.models.get(tag)
        except (BentoMLException, ValueError) as error:
            logger.info("the model store has no %r: %s", tag, error)
            reason = without_paths(str(error))
            raise UnknownModel(f"the model store has no {tag!r} ({reason})") from None
        return model.tag.name, model.tag.version

    def stored(self) -> list[tuple[str, str]]:
        models = sorted(bentoml.models.list(), key=lambda m: (m.tag.name, m.creation_time))
        return [(model.tag.name, model.tag.version) for model in models]

    def artifact_path(self, name: str, version: str) -> Path:
        return Path(bentoml.models.get(f"{name}:{version}").path)


def resolve_all(store: ModelStore, tags: list[str]) -> dict[str, list[str]]:
    """Store tags → model name → stored versions, in the order given."""
    models: dict[str, list[str]] = {}
    for tag in tags:
        name, version = store.resolve(tag)
        versions = models.setdefault(name, [])
        if version not in versions:
            versions.append(version)
    return models
