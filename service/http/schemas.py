"""Reply bodies of the HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ModelRef(BaseModel):
    name: str
    version: str


class LabelScore(BaseModel):
    label: str
    index: int
    score: float


class GroupScore(BaseModel):
    name: str
    score: float = Field(description="sum of the member labels' probabilities")


class Timing(BaseModel):
    preprocess: float = Field(description="decode, orient, convert and resize, in ms")
    inference: float = Field(description="queueing and onnxruntime, in ms")
    total: float


class ClassifyResponse(BaseModel):
    model: ModelRef
    predictions: list[LabelScore] = Field(description="top-k labels, highest score first")
    groups: list[GroupScore] | None = Field(None, description="label groups, when asked for")
    timing_ms: Timing


class Detection(BaseModel):
    label: str = Field(description="label or label group")
    score: float
    box: tuple[int, int, int, int] = Field(description="[x0, y0, x1, y1] in image pixels")


class ImageSize(BaseModel):
    width: int
    height: int


class DetectResponse(BaseModel):
    model: ModelRef
    mode: str
    image: ImageSize = Field(description="upright image size the boxes refer to")
    detections: list[Detection] = Field(description="merged boxes, highest score first")
    windows: int = Field(description="windows evaluated")
    timing_ms: Timing


class ErrorResponse(BaseModel):
    error: str = Field(description="short machine-readable code")
    detail: str = Field(description="what was wrong and how to fix it")


def ms(seconds: float) -> float:
    """Seconds → milliseconds, rounded for replies."""
    return round(seconds * 1000, 2)


class ServedModelState(BaseModel):
    name: str
    version: str
    labels: int | None = Field(None, description="number of labels, when loaded")
    state: str = Field(description="READY, or UNAVAILABLE when loading failed")
    reason: str = ""
    default: bool = Field(description="answers requests that name no version")


class ModelsResponse(BaseModel):
    default: str | None = Field(
        description="the model of requests without model=; null while it is not loaded"
    )
    models: list[ServedModelState]
