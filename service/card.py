"""The model card: the single description of a model artifact that everything else reads.

A card travels in two places: ``card.json`` beside ``model.onnx`` (with the ONNX file's
sha256), and as JSON in the ONNX file's ``metadata_props`` under :data:`ONNX_METADATA_KEY`
(without the sha256, which cannot describe the file that contains it).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

CARD_FILENAME = "card.json"
ONNX_FILENAME = "model.onnx"
ONNX_METADATA_KEY = "argos.card"

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
VERSION_PATTERN = r"^[A-Za-z0-9_.-]+$"
TAG_PATTERN = r"^[a-z0-9][a-z0-9_.-]*(:[A-Za-z0-9_.-]+)?$"
"""``name`` or ``name:version``, as the BentoML store and the routes take them."""

Interpolation = Literal["nearest", "bilinear", "bicubic"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Preprocessing(_Frozen):
    """How an image becomes the model's input tensor."""

    input_size: tuple[int, int] = Field(description="(height, width) of the model input")
    layout: Literal["NHWC"] = "NHWC"
    color_order: Literal["RGB"] = "RGB"
    resize: Literal["squash", "center_crop"] = Field(
        description="squash: resize to input_size ignoring aspect ratio; "
        "center_crop: resize the short side to size / crop_pct, then crop the centre"
    )
    crop_pct: Annotated[float, Field(gt=0, le=1)] = 0.875
    interpolation: Interpolation = "bilinear"
    scaling_in_graph: bool = Field(
        True, description="the graph takes raw 0..255 pixels and scales them itself"
    )
    input_name: str = "pixels"
    output_name: str = "probabilities"

    @property
    def height(self) -> int:
        return self.input_size[0]

    @property
    def width(self) -> int:
        return self.input_size[1]


class Parity(_Frozen):
    """Keras vs onnxruntime agreement measured at export."""

    max_abs_diff: float = Field(description="largest absolute difference of probabilities")
    top1_agreement: float = Field(ge=0, le=1)
    images: int = Field(ge=1, description="number of images compared")
    source: str = Field(description="where the compared images came from")


class DenseHead(_Frozen):
    """Split graphs for dense sliding-window inference: backbone once, head per window."""

    backbone_file: str = Field(description="ONNX graph: pixels -> feature map (N, h, w, c)")
    head_file: str = Field(description="ONNX graph: pooled features (N, c) -> probabilities")
    feature_name: str = "features"
    pooled_name: str = "pooled"
    stride: int = Field(gt=0, description="input pixels per feature-map cell")


class QuantizationSpeed(_Frozen):
    """onnxruntime CPU cost of the float and the quantized graph, measured in one run."""

    float_core_ms: float = Field(gt=0, description="CPU ms per image of the float graph")
    quantized_core_ms: float = Field(gt=0, description="CPU ms per image of the quantized graph")
    speedup: float = Field(gt=0, description="float_core_ms / quantized_core_ms")
    float_batch: int = Field(ge=1, description="batch size at which the float graph was cheapest")
    quantized_batch: int = Field(ge=1, description="same for the quantized graph")
    threads: int = Field(ge=1, description="onnxruntime intra-op threads")
    cpu: str = Field(description="processor and the integer instructions it offers")


class Quantization(_Frozen):
    """How a quantized variant was made from its float model, and how it was judged."""

    precision: Literal["int8"] = "int8"
    float_model: str = Field(pattern=TAG_PATTERN, description="the float model it comes from")
    method: str = Field(description="quantizer, format, granularity and calibration method")
    options: dict[str, Any] = Field(default_factory=dict, description="quantizer settings")
    kept_float: list[str] = Field(default_factory=list, description="nodes left in float")
    calibration: str = Field(description="where the calibration images came from")
    calibration_images: int = Field(ge=1)
    judged_on: str = Field(description="images the variant was compared on (never calibration)")
    judged_images: int = Field(ge=1)
    top1_agreement: float = Field(ge=0, le=1, description="with the float model on judged_on")
    float_accuracy: float | None = Field(None, ge=0, le=1, description="on judged_on, if labelled")
    accuracy: float | None = Field(None, ge=0, le=1, description="the variant's, same images")
    accuracy_delta: float | None = Field(None, description="accuracy - float_accuracy")
    parity: Parity = Field(description="quantized vs float probabilities on sample photos")
    speed: QuantizationSpeed
    bounds: dict[str, float] = Field(description="the limits it was accepted under")


class Calibration(_Frozen):
    """How the scores were calibrated, and how well, on out-of-fold predictions."""

    method: str
    temperature: float = Field(
        gt=0, description="the head's logits are divided by it inside the graph (applied once)"
    )
    source: str = Field(description="the cross-validation run the temperature was fitted on")
    images: int = Field(ge=1)
    bins: int = Field(ge=1, description="equal-width confidence bins of the ECE")
    ece_before: float = Field(ge=0, description="expected calibration error, raw scores")
    ece_after: float = Field(ge=0, description="same, after scaling (cross-fitted per fold)")
    log_loss_before: float = Field(ge=0)
    log_loss_after: float = Field(ge=0)


class Familiarity(_Frozen):
    """The graph's second output: how far an image lies from the training data.

    The graph returns a distance; :meth:`familiarity` turns it into the share of held-out
    images of the model's own classes that lie at least as far (1: as typical as they
    come, 0: beyond all of them). Below ``flag_rate`` an answer is ``unknown``: that is the
    share of real images of the model's classes it flags.
    """

    output_name: str = "distance"
    method: str
    training_images: int = Field(ge=1, description="training images the graph compares with")
    held_out: str = Field(description="where the held-out distances come from")
    held_out_images: int = Field(ge=1)
    held_out_distances: list[float] = Field(
        min_length=2, description="percentiles 0, 1, ..., 100 of the held-out distances"
    )
    flag_rate: float = Field(gt=0, lt=1, description="unknown when familiarity < flag_rate")
    measured: dict[str, Any] = Field(
        default_factory=dict, description="share flagged of photos of other things, and where"
    )

    def familiarity(self, distances: np.ndarray) -> np.ndarray:
        """Share of held-out images of the model's classes at least as far as each."""
        levels = np.linspace(0.0, 1.0, len(self.held_out_distances))
        return 1.0 - np.interp(distances, self.held_out_distances, levels)

    def is_unknown(self, familiarity: np.ndarray) -> np.ndarray:
        """Whether each familiarity is below the flag rate: an image unlike the training data."""
        return familiarity < self.flag_rate

    @property
    def threshold(self) -> float:
        """The distance beyond which an image is unknown."""
        levels = np.linspace(0.0, 1.0, len(self.held_out_distances))
        return float(np.interp(1.0 - self.flag_rate, levels, self.held_out_distances))


class ModelCard(_Frozen):
    """Everything the service needs to know about a model, and where it came from."""

    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=VERSION_PATTERN)
    task: Literal["classification"] = "classification"
    labels: list[str] = Field(min_length=2)
    label_groups: dict[str, list[int]] = Field(default_factory=dict)
    preprocessing: Preprocessing
    backbone: str
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    parity: Parity | None = None
    dense: DenseHead | None = None
    quantization: Quantization | None = None
    calibration: Calibration | None = None
    familiarity: Familiarity | None = None
    onnx_sha256: str | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @model_validator(mode="after")
    def _groups_index_labels(self) -> ModelCard:
        for group, indices in self.label_groups.items():
            bad = [i for i in indices if not 0 <= i < len(self.labels)]
            if bad:
                raise ValueError(f"label group {group!r} has indices outside the labels: {bad}")
            if group in self.labels:
                raise ValueError(f"label group {group!r} has the same name as a label")
        return self

    @property
    def tag(self) -> str:
        """The BentoML model-store tag, ``name:version``."""
        return f"{self.name}:{self.version}"

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelCard:
        return cls.model_validate_json(text)

    def save(self, directory: Path) -> Path:
        path = Path(directory) / CARD_FILENAME
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, directory: Path) -> ModelCard:
        return cls.from_json((Path(directory) / CARD_FILENAME).read_bytes())

    @classmethod
    def from_onnx(cls, onnx_path: Path) -> ModelCard:
        """Read the card embedded in an ONNX file's metadata."""
        import onnx

        model = onnx.load(str(onnx_path), load_external_data=False)
        metadata = {prop.key: prop.value for prop in model.metadata_props}
        if ONNX_METADATA_KEY not in metadata:
            raise ValueError(f"{onnx_path} has no {ONNX_METADATA_KEY!r} metadata")
        return cls.from_json(metadata[ONNX_METADATA_KEY])

    def embedded_json(self) -> str:
        """The JSON written into ONNX metadata: the card without the file's own hash."""
        return self.model_copy(update={"onnx_sha256": None}).model_dump_json()

    def label_indices(self, names: list[str]) -> dict[str, list[int]]:
        """Resolve label or group names to label indices; raises KeyError naming unknowns."""
        index = {label: [i] for i, label in enumerate(self.labels)} | self.label_groups
        unknown = [name for name in names if name not in index]
        if unknown:
            raise KeyError(unknown)
        return {name: index[name] for name in names}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_artifact(directory: Path) -> ModelCard:
    """Load a card and check that ``model.onnx`` is the file it describes."""
    card = ModelCard.load(directory)
    actual = sha256_of(Path(directory) / ONNX_FILENAME)
    if card.onnx_sha256 != actual:
        raise ValueError(
            f"{directory}/{ONNX_FILENAME} has sha256 {actual}, the card says {card.onnx_sha256}"
        )
    return card
