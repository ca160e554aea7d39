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


class ErrorResponse(BaseModel):
    error: str = Field(description="short machine-readable code")
    detail: str = Field(description="what was wrong and how to fix it")
