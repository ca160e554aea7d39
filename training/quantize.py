"""Float artifact → static INT8 variant, judged like a new model, refused over its bounds.

onnxruntime's static quantization (QDQ format, per-channel weights) turns the
convolutions into integer kernels. Calibration images go through the service's own
preprocessing, as the card declares it. The variant is then compared with its float
model on images calibration never saw (top-1 agreement, and accuracy where they are
labelled), on sample photos (largest probability difference) and on CPU cost; it is
written and registered only when it stays within :class:`Bounds`. Given the folds of a
cross-validation of the float model's recipe, the same settings are applied to every
fold's model and the accuracy is judged out of fold, on every image of the folder.
"""

from __future__ import annotations

import logging
import re
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
    Familiarity,
    ModelCard,
    Parity,
    Quantization,
    QuantizationSpeed,
    sha256_of,
)
from service.inference.sessions import OnnxModel
from training.evaluate import wilson_interval
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
RECORDED_TOLERANCE = 1e-3
"""Largest probability difference allowed between a fold's float graph and the
out-of-fold probabilities its cross-validation recorded (six decimals, Keras vs ONNX)."""
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
    """Quantizer settings: calibration method and what is kept in float."""

    method: str = "minmax"
    keep_float: tuple[str, ...] = REGIONS
    keep_float_layers: tuple[str, ...] = ()
    """Regular expressions: a node whose name, or the name of one of its weights, matches
    one stays float (the graph's weights carry the Keras layer names)."""
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
            "keep_float_layers": list(self.keep_float_layers),
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
class Fold:
    """One fold of a cross-validation of the float model's recipe: the fold's float model,
    images outside the fold to calibrate its variant on, and the fold's labelled images with
    the out-of-fold probabilities the cross-validation recorded for them."""

    number: int
    model_dir: Path
    calibration: Images
    test: Images
    recorded: np.ndarray


@dataclass(frozen=True)
class Folds:
    """Every fold of one cross-validation, and a sentence saying which."""

    source: str
    folds: list[Fold]


@dataclass(frozen=True)
class Judgement:
    """The figures a variant is accepted or refused on."""

    top1_agreement: float
    images: int
    float_accuracy: float | None = None
    accuracy: float | None = None
    gained: int | None = None
    """Labelled images the variant gets right and the float model wrong."""
    lost: int | None = None
    """Labelled images the float model gets right and the variant wrong."""
    problems: list[str] = field(default_factory=list)

    @property
    def accuracy_delta(self) -> float | None:
        if self.accuracy is None or self.float_accuracy is None:
            return None
        return self.accuracy - self.float_accuracy


def float_regions(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Node names of the stem (everything up to and including the first convolutions), of
    the head (the global pooling and everything after it) and of the part of the head that
    only feeds outputs after the first (a familiarity distance) of a graph."""
    graph = model.graph
    constants = {tensor.name for tensor in graph.initializer}
    before = {tensor.name for tensor in graph.input} - constants
    stem = []
    for node in graph.node:
        if any(name in before for name in node.input):
            stem.append(node.name)
            if node.op_type != "Conv":
                before.update(node.output)
    outputs = [tensor.name for tensor in graph.output]
    main, others = _ancestors(graph, outputs[:1]), _ancestors(graph, outputs[1:])
    extra = [node.name for node in graph.node if node.name in others - main]
    return {"stem": stem, "head": _from_pooling(graph, outputs), "extra_outputs": extra}


def matching_nodes(model: onnx.ModelProto, patterns: tuple[str, ...]) -> list[str]:
    """Names of the nodes whose name, or the name of one of whose weights, matches one of
    the regular expressions ``patterns``; raises ``ValueError`` for one that matches none."""
    weights = {tensor.name for tensor in model.graph.initializer}
    found: dict[str, list[str]] = {pattern: [] for pattern in patterns}
    for node in model.graph.node:
        names = [node.name, *(name for name in node.input if name in weights)]
        for pattern in patterns:
            if any(re.search(pattern, name) for name in names):
                found[pattern].append(node.name)
    unmatched = [pattern for pattern, nodes in found.items() if not nodes]
    if unmatched:
        raise ValueError(f"no node or weight name matches {unmatched}")
    return list(dict.fromkeys(name for nodes in found.values() for name in nodes))


def _ancestors(graph: onnx.GraphProto, outputs: list[str]) -> set[str]:
    """Names of the nodes that ``outputs`` depend on (the graph is topologically sorted)."""
    needed, names = set(outputs), set()
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            names.add(node.name)
            needed.update(node.input)
    return names


def _from_pooling(graph: onnx.GraphProto, outputs: list[str]) -> list[str]:
    """Names of the nodes between the last global pooling and ``outputs``, in graph order."""
    after, nodes = set(outputs), []
    for node in reversed(graph.node):
        if node.op_type != "Conv" and any(name in after for name in node.output):
            nodes.append(node.name)
            if node.op_type not in POOLING:
                after.update(node.input)
    return nodes[::-1]


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
    """Write the static INT8 (QDQ) graph of ``float_path``; returns the nodes kept float.

    Besides the recipe's regions, whatever only feeds outputs after the first (a
    familiarity distance) stays float; the outputs keep their names and order.
    """
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared))
        regions = float_regions(graph)
        kept = [name for region in recipe.keep_float for name in regions[region]]
        for name in matching_nodes(graph, recipe.keep_float_layers) + regions["extra_outputs"]:
            if name not in kept:
                kept.append(name)
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
    expected, actual = _output_names(float_path), _output_names(out_path)
    if actual != expected:
        raise ValueError(f"the quantized graph has outputs {actual}, the float graph {expected}")
    return kept


def _output_names(path: Path) -> list[str]:
    return [output.name for output in onnx.load(str(path), load_external_data=False).graph.output]


def judge(
    float_out: np.ndarray,
    quantized_out: np.ndarray,
    labels: np.ndarray | None,
    bounds: Bounds,
    *,
    gate_accuracy: bool = True,
) -> Judgement:
    """Agreement (and accuracy, with labels) of the variant against its float model;
    without ``gate_accuracy`` the accuracy is measured but only agreement is bounded."""
    float_top1, quantized_top1 = float_out.argmax(axis=1), quantized_out.argmax(axis=1)
    agreement = float(np.mean(float_top1 == quantized_top1))
    problems = []
    if agreement < bounds.min_agreement:
        problems.append(
            f"top-1 agreement {agreement:.2%} is below the bound {bounds.min_agreement:.2%}"
        )
    if labels is None:
        return Judgement(agreement, len(float_out), problems=problems)
    float_right, right = float_top1 == labels, quantized_top1 == labels
    float_accuracy, accuracy = float(np.mean(float_right)), float(np.mean(right))
    if gate_accuracy and float_accuracy - accuracy > bounds.max_accuracy_drop:
        problems.append(
            f"accuracy {accuracy:.2%} is {100 * (float_accuracy - accuracy):.2f} points below "
            f"the float model's {float_accuracy:.2%} (bound {100 * bounds.max_accuracy_drop:.2f})"
        )
    return Judgement(
        agreement,
        len(float_out),
        float_accuracy,
        accuracy,
        gained=int(np.sum(right & ~float_right)),
        lost=int(np.sum(float_right & ~right)),
        problems=problems,
    )


@dataclass(frozen=True)
class CrossValidated:
    """The recipe judged on the folds of a cross-validation: pooled and per fold."""

    pooled: Judgement
    per_fold: list[Judgement]
    source: str
    calibration: list[str]
    """Each fold's calibration images."""

    def metrics(self) -> dict[str, object]:
        """The figures as the card's metrics hold a cross-validation."""
        pooled = self.pooled
        correct = round(pooled.accuracy * pooled.images)
        return {
            "source": self.source,
            "folds": len(self.per_fold),
            "images": pooled.images,
            "accuracy": pooled.accuracy,
            "interval_95": list(wilson_interval(correct, pooled.images)),
            "fold_accuracies": [fold.accuracy for fold in self.per_fold],
            "float_accuracy": pooled.float_accuracy,
            "float_fold_accuracies": [fold.float_accuracy for fold in self.per_fold],
            "accuracy_delta": pooled.accuracy_delta,
            "gained": pooled.gained,
            "lost": pooled.lost,
            "top1_agreement": pooled.top1_agreement,
            "fold_agreements": [fold.top1_agreement for fold in self.per_fold],
            "calibration": self.calibration,
        }


def judge_folds(folds: Folds, input_name: str, recipe: Recipe, bounds: Bounds) -> CrossValidated:
    """Each fold's float model against its own variant made with ``recipe`` and calibrated
    on the fold's calibration images, on the fold's images; pooled and judged by ``bounds``.

    Raises ``ValueError`` when a fold's float graph does not reproduce the probabilities
    its cross-validation recorded: then it is not the model those figures belong to.
    """
    float_parts, quantized_parts, per_fold = [], [], []
    for fold in folds.folds:
        float_path = fold.model_dir / ONNX_FILENAME
        with tempfile.TemporaryDirectory() as scratch:
            raw = Path(scratch) / "quantized.onnx"
            logger.info("fold %d: calibrating on %s", fold.number, fold.calibration.source)
            quantize_graph(float_path, raw, fold.calibration.pixels, input_name, recipe)
            float_out = _run(float_path, fold.test.pixels)
            quantized_out = _run(raw, fold.test.pixels)
        gap = float(np.abs(float_out - fold.recorded).max())
        if gap > RECORDED_TOLERANCE:
            raise ValueError(
                f"{float_path} does not reproduce the probabilities its cross-validation "
                f"recorded (max |Δp| {gap:.2e})"
            )
        verdict = judge(float_out, quantized_out, fold.test.labels, bounds)
        logger.info("fold %d: %s", fold.number, _figures(verdict))
        per_fold.append(verdict)
        float_parts.append(float_out)
        quantized_parts.append(quantized_out)
    labels = np.concatenate([fold.test.labels for fold in folds.folds])
    pooled = judge(np.concatenate(float_parts), np.concatenate(quantized_parts), labels, bounds)
    calibration = [fold.calibration.source for fold in folds.folds]
    return CrossValidated(pooled, per_fold, folds.source, calibration)


def _run(path: Path, pixels: np.ndarray) -> np.ndarray:
    return OnnxModel.load(path, providers=["CPUExecutionProvider"]).run_chunked(pixels, JUDGE_BATCH)


def _outputs(path: Path, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of the graph, by name."""
    model = OnnxModel.load(path, providers=["CPUExecutionProvider"])
    parts = [
        model.run_outputs(pixels[start : start + JUDGE_BATCH], model.output_names)
        for start in range(0, len(pixels), JUDGE_BATCH)
    ]
    columns = zip(*parts, strict=True)
    return {
        name: np.concatenate(chunks)
        for name, chunks in zip(model.output_names, columns, strict=True)
    }


def familiarity_shift(
    familiarity: Familiarity, float_distances: np.ndarray, distances: np.ndarray
) -> dict[str, float]:
    """How the variant's familiarity distances differ from its float model's on the same
    images, and the share of them each answers "unknown" with the card's threshold (which
    the variant inherits)."""
    relative = np.abs(distances - float_distances) / np.maximum(np.abs(float_distances), 1e-12)
    return {
        "images": len(distances),
        "median_relative_difference": float(np.median(relative)),
        "max_relative_difference": float(relative.max()),
        "float_unknown": float(
            np.mean(familiarity.is_unknown(familiarity.familiarity(float_distances)))
        ),
        "unknown": float(np.mean(familiarity.is_unknown(familiarity.familiarity(distances)))),
    }


def quantize(
    float_dir: Path,
    out_root: Path,
    calibration: Images,
    judged: Images,
    photos: Images,
    *,
    recipe: Recipe | None = None,
    bounds: Bounds | None = None,
    folds: Folds | None = None,
) -> tuple[ModelCard, Path]:
    """Quantize the artifact in ``float_dir`` into ``out_root/<name>-int8/<version>``.

    ``calibration`` sets the activation ranges; ``judged`` (images calibration never saw)
    gives top-1 agreement and, when labelled, accuracy; ``photos`` the largest
    probability difference. With ``folds`` (a cross-validation of the float model's
    recipe) the same recipe is also applied to every fold's model, and the accuracy is
    judged on the pooled out-of-fold predictions instead of ``judged``, whose variant must
    then only agree with its float model. Raises :class:`QuantizationRefused`, writing
    nothing, when the variant is over ``bounds``.
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
        float_judged, quantized_judged = (
            _outputs(float_path, judged.pixels),
            _outputs(raw, judged.pixels),
        )
        verdict = judge(
            float_judged[spec.output_name],
            quantized_judged[spec.output_name],
            judged.labels,
            bounds,
            gate_accuracy=folds is None,
        )
        logger.info("%s: %s", judged.source, _figures(verdict))
        familiarity = float_card.familiarity
        shift = None
        if familiarity is not None:
            shift = familiarity_shift(
                familiarity,
                float_judged[familiarity.output_name],
                quantized_judged[familiarity.output_name],
            )
            logger.info("familiarity distance on %s: %s", judged.source, shift)
        cross = judge_folds(folds, spec.input_name, recipe, bounds) if folds else None
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
        summary = _summary(verdict, cross, parity, speed)
        problems = list(verdict.problems)
        if cross is not None:
            problems += [f"cross-validated {problem}" for problem in cross.pooled.problems]
        if problems:
            raise QuantizationRefused(f"{'; '.join(problems)} ({summary})")
        logger.info("accepted: %s", summary)
        gated = verdict if cross is None else cross.pooled
        judged_on = judged.source
        if cross is not None:
            judged_on = (
                f"out of fold: {cross.source}, each fold's float model against its own "
                "variant made with these settings, calibrated on images outside the fold"
            )
        quantization = Quantization(
            float_model=float_card.tag,
            method=f"onnxruntime quantize_static, QDQ, "
            f"{'per-channel' if recipe.per_channel else 'per-tensor'}, {recipe.method} calibration",
            options=recipe.options(),
            kept_float=kept,
            calibration=calibration.source,
            calibration_images=len(calibration),
            judged_on=judged_on,
            judged_images=gated.images,
            top1_agreement=gated.top1_agreement,
            float_accuracy=gated.float_accuracy,
            accuracy=gated.accuracy,
            accuracy_delta=gated.accuracy_delta,
            parity=parity,
            speed=speed,
            bounds=asdict(bounds),
        )
        card = float_card.model_copy(
            update={
                "name": float_card.name + SUFFIX,
                "parity": None,
                "dense": None,
                "metrics": _metrics(verdict, judged, cross, shift),
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


def _metrics(
    verdict: Judgement,
    judged: Images,
    cross: CrossValidated | None,
    familiarity: dict[str, float] | None,
) -> dict[str, object]:
    """The variant's own figures on its labelled judged images (its float model's test
    split): accuracy and, for a model with a familiarity output, how its distance moved;
    with a cross-validation also those of the recipe on its folds."""
    if verdict.accuracy is None:
        return {}
    metrics: dict[str, object] = {"accuracy": verdict.accuracy, "images": verdict.images}
    if familiarity is not None:
        metrics["familiarity"] = familiarity
    if cross is not None:
        metrics |= {
            "float_accuracy": verdict.float_accuracy,
            "top1_agreement": verdict.top1_agreement,
            "judged_on": judged.source,
            "cross_validation": cross.metrics(),
        }
    return metrics


def _figures(verdict: Judgement) -> str:
    text = f"top-1 agreement {verdict.top1_agreement:.2%} on {verdict.images} images"
    if verdict.accuracy is not None:
        text += (
            f", accuracy {verdict.accuracy:.2%} vs float {verdict.float_accuracy:.2%} "
            f"({100 * verdict.accuracy_delta:+.2f} points: {verdict.gained} gained, "
            f"{verdict.lost} lost)"
        )
    return text


def _summary(
    verdict: Judgement, cross: CrossValidated | None, parity: Parity, speed: QuantizationSpeed
) -> str:
    parts = [_figures(verdict)]
    if cross is not None:
        parts.append(f"out of fold over {len(cross.per_fold)} folds: {_figures(cross.pooled)}")
    parts.append(f"photos max |Δp| {parity.max_abs_diff:.3f}")
    parts.append(
        f"{speed.quantized_core_ms:.2f} vs {speed.float_core_ms:.2f} core-ms per image, "
        f"{speed.speedup:.2f}x on {speed.cpu}"
    )
    return ", ".join(parts)
