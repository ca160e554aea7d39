"""Float artifact → static INT8 variant, judged like a new model, refused over its bounds.

onnxruntime's static quantization (QDQ format, per-channel weights) turns the
convolutions into integer kernels. Calibration images go through the service's own
preprocessing, as the card declares it. The variant is then compared with its float
model on images calibration never saw (top-1 agreement, and accuracy where they are
labelled), on sample photos (largest probability difference) and on CPU cost; it is
written and registered only when it stays within :class:`Bounds`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from service.card import (
    ONNX_FILENAME,
    ModelCard,
    Parity,
    Quantization,
    QuantizationSpeed,
    sha256_of,
)
from service.inference.sessions import OnnxModel
from training.export import embed_card
from training.speed import core_ms_per_image, cpu_name

logger = logging.getLogger("argos.quantize")

SUFFIX = "-int8"
CALIBRATION_BATCH = 16
JUDGE_BATCH = 32
METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
REGIONS = ("stem", "head")
POOLING = {"GlobalAveragePool", "ReduceMean", "GlobalMaxPool", "ReduceMax"}


class QuantizationRefused(RuntimeError):
    """The quantized variant is too far from its float model to be registered."""


@dataclass(frozen=True)
class Bounds:
    """How far a variant may stray from its float model."""

    min_agreement: float = 0.97
    """Least share of judged images with the same top-1 class as the float model."""
    max_accuracy_drop: float = 0.003
    """Largest loss of accuracy on labelled judged images (0.003: 0.3 points)."""


@dataclass(frozen=True)
class Recipe:
    """Quantizer settings: calibration method and the regions kept in float."""

    method: str = "minmax"
    keep_float: tuple[str, ...] = REGIONS
    per_channel: bool = True
    reduce_range: bool = False
    percentile: float = 99.999

    def options(self) -> dict[str, object]:
        options: dict[str, object] = {
            "activations": "uint8 asymmetric",
            "weights": "int8 symmetric",
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "keep_float": list(self.keep_float),
        }
        if self.method == "percentile":
            options["percentile"] = self.percentile
        return options


@dataclass(frozen=True)
class Images:
    """Preprocessed images (N, H, W, 3) uint8, their class indices if known, and a source."""

    pixels: np.ndarray
    source: str
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.pixels)


@dataclass(frozen=True)
class Judgement:
    """The figures a variant is accepted or refused on."""

    top1_agreement: float
    images: int
    float_accuracy: float | None = None
    accuracy: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def accuracy_delta(self) -> float | None:
        if self.accuracy is None or self.float_accuracy is None:
            return None
        return self.accuracy - self.float_accuracy


def float_regions(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Node names of the stem (everything up to and including the first convolutions)
    and of the head (the global pooling and everything after it) of a graph."""
    graph = model.graph
    constants = {tensor.name for tensor in graph.initializer}
    before = {tensor.name for tensor in graph.input} - constants
    stem = []
    for node in graph.node:
        if any(name in before for name in node.input):
            stem.append(node.name)
            if node.op_type != "Conv":
                before.update(node.output)
    after = {tensor.name for tensor in graph.output}
    head = []
    for node in reversed(graph.node):
        if node.op_type != "Conv" and any(name in after for name in node.output):
            head.append(node.name)
            if node.op_type not in POOLING:
                after.update(node.input)
    return {"stem": stem, "head": head[::-1]}


class _Batches(CalibrationDataReader):
    """Calibration images as float32 batches for onnxruntime's calibrator."""

    def __init__(self, input_name: str, pixels: np.ndarray) -> None:
        self.input_name = input_name
        self.pixels = pixels
        self.batches: Iterator[np.ndarray] = self._iterate()

    def _iterate(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self.pixels), CALIBRATION_BATCH):
            yield self.pixels[start : start + CALIBRATION_BATCH].astype(np.float32)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:
        self.batches = self._iterate()


def quantize_graph(
    float_path: Path, out_path: Path, calibration: np.ndarray, input_name: str, recipe: Recipe
) -> list[str]:
    """Write the static INT8 (QDQ) graph of ``float_path``; returns the nodes kept float."""
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        regions = float_regions(onnx.load(str(prepared)))
        kept = [name for region in recipe.keep_float for name in regions[region]]
        extra = {"WeightSymmetric": True, "ActivationSymmetric": False}
        if recipe.method == "percentile":
            extra["CalibPercentile"] = recipe.percentile
        quantize_static(
            str(prepared),
            str(out_path),
            _Batches(input_name, calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=recipe.per_channel,
            reduce_range=recipe.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=kept,
            calibrate_method=METHODS[recipe.method],
            extra_options=extra,
        )
    return kept


def judge(
    float_out: np.ndarray, quantized_out: np.ndarray, labels: np.ndarray | None, bounds: Bounds
) -> Judgement:
    """Agreement (and accuracy, with labels) of the variant against its float model."""
    float_top1, quantized_top1 = float_out.argmax(axis=1), quantized_out.argmax(axis=1)
    agreement = float(np.mean(float_top1 == quantized_top1))
    problems = []
    if agreement < bounds.min_agreement:
        problems.append(
            f"top-1 agreement {agreement:.2%} is below the bound {bounds.min_agreement:.2%}"
        )
    if labels is None:
        return Judgement(agreement, len(float_out), problems=problems)
    float_accuracy = float(np.mean(float_top1 == labels))
    accuracy = float(np.mean(quantized_top1 == labels))
    if float_accuracy - accuracy > bounds.max_accuracy_drop:
        problems.append(
            f"accuracy {accuracy:.2%} is {100 * (float_accuracy - accuracy):.2f} points below "
            f"the float model's {float_accuracy:.2%} (bound {100 * bounds.max_accuracy_drop:.2f})"
        )
    return Judgement(agreement, len(float_out), float_accuracy, accuracy, problems)


def _run(path: Path, pixels: np.ndarray) -> np.ndarray:
    return OnnxModel.load(path, providers=["CPUExecutionProvider"]).run_chunked(pixels, JUDGE_BATCH)


def quantize(
    float_dir: Path,
    out_root: Path,
    calibration: Images,
    judged: Images,
    photos: Images,
    *,
    recipe: Recipe | None = None,
    bounds: Bounds | None = None,
) -> tuple[ModelCard, Path]:
    """Quantize the artifact in ``float_dir`` into ``out_root/<name>-int8/<version>``.

    ``calibration`` sets the activation ranges; ``judged`` (images calibration never saw)
    gives top-1 agreement and, when labelled, accuracy; ``photos`` the largest
    probability difference. Raises :class:`QuantizationRefused`, writing nothing, when
    the variant is over ``bounds``.
    """
    recipe, bounds = recipe or Recipe(), bounds or Bounds()
    float_card = ModelCard.load(float_dir)
    float_path = Path(float_dir) / ONNX_FILENAME
    spec = float_card.preprocessing
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        raw = scratch / "quantized.onnx"
        logger.info("calibrating on %d images (%s)", len(calibration), recipe.method)
        kept = quantize_graph(float_path, raw, calibration.pixels, spec.input_name, recipe)
        verdict = judge(
            _run(float_path, judged.pixels), _run(raw, judged.pixels), judged.labels, bounds
        )
        float_photos, quantized_photos = _run(float_path, photos.pixels), _run(raw, photos.pixels)
        parity = Parity(
            max_abs_diff=float(np.abs(float_photos - quantized_photos).max()),
            top1_agreement=float(np.mean(float_photos.argmax(1) == quantized_photos.argmax(1))),
            images=len(photos),
            source=photos.source,
        )
        logger.info("measuring onnxruntime CPU cost, one thread")
        (float_ms, float_batch), (int8_ms, int8_batch) = core_ms_per_image(
            [float_path, raw], judged.pixels[:32]
        )
        speed = QuantizationSpeed(
            float_core_ms=float_ms,
            quantized_core_ms=int8_ms,
            speedup=float_ms / int8_ms,
            float_batch=float_batch,
            quantized_batch=int8_batch,
            threads=1,
            cpu=cpu_name(),
        )
        summary = _summary(verdict, parity, speed)
        if verdict.problems:
            raise QuantizationRefused(f"{'; '.join(verdict.problems)} ({summary})")
        logger.info("accepted: %s", summary)
        quantization = Quantization(
            float_model=float_card.tag,
            method=f"onnxruntime quantize_static, QDQ, "
            f"{'per-channel' if recipe.per_channel else 'per-tensor'}, {recipe.method} calibration",
            options=recipe.options(),
            kept_float=kept,
            calibration=calibration.source,
            calibration_images=len(calibration),
            judged_on=judged.source,
            judged_images=verdict.images,
            top1_agreement=verdict.top1_agreement,
            float_accuracy=verdict.float_accuracy,
            accuracy=verdict.accuracy,
            accuracy_delta=verdict.accuracy_delta,
            parity=parity,
            speed=speed,
            bounds=asdict(bounds),
        )
        metrics = {}
        if verdict.accuracy is not None:
            metrics = {"accuracy": verdict.accuracy, "images": verdict.images}
        card = float_card.model_copy(
            update={
                "name": float_card.name + SUFFIX,
                "parity": None,
                "dense": None,
                "metrics": metrics,
                "quantization": quantization,
                "onnx_sha256": None,
            }
        )
        out_dir = Path(out_root) / card.name / card.version
        out_dir.mkdir(parents=True, exist_ok=True)
        embed_card(raw, card, out_dir / ONNX_FILENAME)
    card = card.model_copy(update={"onnx_sha256": sha256_of(out_dir / ONNX_FILENAME)})
    card.save(out_dir)
    return card, out_dir


def _summary(verdict: Judgement, parity: Parity, speed: QuantizationSpeed) -> str:
    parts = [f"top-1 agreement {verdict.top1_agreement:.2%} on {verdict.images} images"]
    if verdict.accuracy is not None:
        parts.append(
            f"accuracy {verdict.accuracy:.2%} vs float {verdict.float_accuracy:.2%} "
            f"({100 * verdict.accuracy_delta:+.2f} points)"
        )
    parts.append(f"photos max |Δp| {parity.max_abs_diff:.3f}")
    parts.append(
        f"{speed.quantized_core_ms:.2f} vs {speed.float_core_ms:.2f} core-ms per image, "
        f"{speed.speedup:.2f}x on {speed.cpu}"
    )
    return ", ".join(parts)
