"""The BentoML model store as the model repository: tags, versions and artifact folders."""

from __future__ import annotations

from pathlib import Path

import bentoml
from bentoml.exceptions import BentoMLException

from service.errors import UnknownModel


def resolve(tag: str) -> tuple[str, str]:
    """``name[:version|:latest]`` → the stored ``(name, version)``."""
    try:
        model = bentoml.models.get(tag)
    except (BentoMLException, ValueError) as error:
        raise UnknownModel(f"the model store has no {tag!r} ({error})") from None
    return model.tag.name, model.tag.version


def artifact_path(name: str, version: str) -> Path:
    """The folder of a stored model version."""
    return Path(bentoml.models.get(f"{name}:{version}").path)


def stored() -> list[tuple[str, str]]:
    """Every ``(name, version)`` in the store, oldest first within a name."""
    models = sorted(bentoml.models.list(), key=lambda model: (model.tag.name, model.creation_time))
    return [(model.tag.name, model.tag.version) for model in models]
