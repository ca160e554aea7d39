"""The model card: validation, JSON and ONNX round trips, artifact verification."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from pydantic import ValidationError

from service.card import (
    ONNX_FILENAME,
    ONNX_METADATA_KEY,
    ModelCard,
    sha256_of,
    verify_artifact,
)
from tests.service.tiny_model import make_card, write_tiny_classifier


def test_json_round_trip_keeps_every_field(tmp_path: Path) -> None:
    card = make_card(metrics={"accuracy": 0.9})
    card.save(tmp_path)
    assert ModelCard.load(tmp_path) == card


def test_tag_is_name_and_version() -> None:
    assert make_card().tag == "colours:1"


@pytest.mark.parametrize(
    "changes",
    [
        {"label_groups": {"warm": [3]}},
        {"label_groups": {"red": [0]}},
        {"labels": ["only"]},
        {"name": "Has Spaces"},
        {"unknown_field": 1},
    ],
)
def test_invalid_cards_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        make_card(**changes)


def test_label_indices_resolve_labels_and_groups() -> None:
    assert make_card().label_indices(["blue", "warm"]) == {"blue": [2], "warm": [0]}
    with pytest.raises(KeyError, match="purple"):
        make_card().label_indices(["purple"])


def test_card_embedded_in_onnx_reads_back_without_its_hash(tmp_path: Path) -> None:
    path = write_tiny_classifier(tmp_path / ONNX_FILENAME)
    card = make_card(onnx_sha256="0" * 64)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {ONNX_METADATA_KEY: card.embedded_json()})
    onnx.save(model, str(path))
    assert ModelCard.from_onnx(path) == card.model_copy(update={"onnx_sha256": None})


def test_onnx_without_card_is_refused(tmp_path: Path) -> None:
    path = write_tiny_classifier(tmp_path / ONNX_FILENAME)
    with pytest.raises(ValueError, match=ONNX_METADATA_KEY):
        ModelCard.from_onnx(path)


def test_verify_artifact_detects_a_changed_model(tmp_path: Path) -> None:
    path = write_tiny_classifier(tmp_path / ONNX_FILENAME)
    make_card(onnx_sha256=sha256_of(path)).save(tmp_path)
    assert verify_artifact(tmp_path).name == "colours"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="sha256"):
        verify_artifact(tmp_path)
