"""Stand-ins for served models: a card and whether the model was closed."""

from __future__ import annotations

from dataclasses import dataclass

from service.card import ModelCard, Preprocessing


def card(name: str, version: str) -> ModelCard:
    return ModelCard(
        name=name,
        version=version,
        labels=["cat", "dog"],
        preprocessing=Preprocessing(input_size=(8, 8), resize="squash"),
        backbone="tiny",
    )


@dataclass(eq=False)
class FakeModel:
    card: ModelCard
    closed: bool = False


def load(name: str, version: str) -> FakeModel:
    if version == "broken":
        raise ValueError("model.onnx has sha256 0000, the card says 1111")
    if version == "missing":
        raise FileNotFoundError(2, "No such file", f"/srv/argos/models/{name}/{version}/card.json")
    return FakeModel(card(name, version))


def close(model: FakeModel) -> None:
    model.closed = True
