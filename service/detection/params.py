"""Query parameters of ``/detect`` and ``/detect/render``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from service.detection.nms import Metric

Mode = Literal["exact", "dense"]


class DetectParams(BaseModel):
    """Query parameters of ``/detect``."""

    mode: Mode = Field("exact", description="exact: classify every crop; dense: backbone once")
    window_sizes: list[float] = Field(
        [0.4, 0.55],
        min_length=1,
        max_length=8,
        description="window sides as fractions (0, 1] of the image's short side; one scale each",
        json_schema_extra={"items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}},
    )
    overlap: float = Field(0.75, ge=0, le=0.9, description="overlap of neighbouring windows")
    threshold: float = Field(0.6, gt=0, le=1, description="lowest class score kept")
    classes: list[str] | None = Field(
        None, description="labels or label groups to look for; default: the card's groups"
    )
    iou_threshold: float = Field(0.3, ge=0, le=1, description="overlap above which boxes merge")
    merge_metric: Metric = Field(
        "ios", description="iou, or ios (intersection over the smaller box) to merge nested boxes"
    )
    max_detections: int = Field(10, ge=1, le=100)

    @field_validator("window_sizes")
    @classmethod
    def _fractions(cls, sizes: list[float]) -> list[float]:
        bad = [size for size in sizes if not 0 < size <= 1]
        if bad:
            raise ValueError(f"window sizes must be fractions in (0, 1], got {bad}")
        return sizes
