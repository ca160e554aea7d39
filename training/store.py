"""Model artifacts in the BentoML model store (``bentoml models list`` shows them)."""

from __future__ import annotations

import shutil
from pathlib import Path

import bentoml

from service.card import ModelCard, verify_artifact


def register(artifact_dir: Path) -> str:
    """Copy an exported artifact folder into the store as ``name:version``.

    The card's ONNX hash is checked first, so a half-written export is never registered.
    """
    card = verify_artifact(artifact_dir)
    labels = {"task": card.task, "backbone": card.backbone}
    if card.quantization is not None:
        labels["precision"] = card.quantization.precision
    metadata = {"labels": len(card.labels), "onnx_sha256": card.onnx_sha256}
    if card.parity is not None:
        metadata["parity_max_abs_diff"] = card.parity.max_abs_diff
    with bentoml.models.create(card.tag, labels=labels, metadata=metadata) as model:
        for item in Path(artifact_dir).iterdir():
            if item.is_file():
                shutil.copy2(item, model.path_of(item.name))
    return str(model.tag)


def exists(tag: str) -> bool:
    try:
        bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        return False
    return True


def artifact_path(tag: str) -> Path:
    """The folder of a stored artifact."""
    return Path(bentoml.models.get(tag).path)


def load_card(tag: str) -> ModelCard:
    """The verified card of a stored artifact."""
    return verify_artifact(artifact_path(tag))
