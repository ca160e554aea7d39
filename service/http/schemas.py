"""Reply bodies of the HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, Field

from service.detection.merge import Detection
from service.postprocess import GroupScore, Prediction


class ModelRef(BaseModel):
    name: str
    version: str


class Timing(BaseModel):
    preprocess: float = Field(description="decode, orient, convert and resize, in ms")
    inference: float = Field(description="queueing and onnxruntime, in ms")
    total: float


class Explanation(BaseModel):
    label: str = Field(description="the top label, which the map is of")
    index: int = Field(description="its index in the card's labels")
    grid: list[list[float]] = Field(
        description="the class activation map: h rows (top first) of w values, one per cell "
        "of the backbone's feature map, each the label's probability from that cell alone "
        "(the model's head on it), rounded to 4 decimals"
    )
    box: list[float] = Field(
        min_length=4,
        max_length=4,
        description="[x0, y0, x1, y1]: the part of the upright image that the grid covers, "
        "in its pixels (what the model input shows: the card's centre crop, or all of it), "
        "cut into h x w equal cells",
    )


class ClassifyResponse(BaseModel):
    model: ModelRef
    predictions: list[Prediction] = Field(description="top-k labels, highest score first")
    groups: list[GroupScore] | None = Field(None, description="label groups, when asked for")
    familiarity: float | None = Field(
        None,
        ge=0,
        le=1,
        description="share of held-out images of the model's own classes that look at least "
        "as unusual to it: near 1 typical, near 0 unlike anything it was trained on; only for "
        "models with familiarity statistics (trained models)",
    )
    unknown: bool | None = Field(
        None,
        description="the image is unlike the model's training data (familiarity below the "
        "card's flag rate): the labels are the nearest the model knows, not an answer",
    )
    explanation: Explanation | None = Field(
        None, description="where the image shows the top label, when asked for"
    )
    timing_ms: Timing


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
