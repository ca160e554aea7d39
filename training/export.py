"""Keras model → ONNX artifact (model.onnx + card.json), checked against Keras.

The exported graph takes raw RGB pixels (0..255, NHWC float32) and returns probabilities;
any scaling lives inside the Keras model. Conversion goes through a ``tf.function``, the
robust tf2onnx path for Keras 3.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import tensorflow as tf
import tf2onnx
from PIL import Image

from service.card import (
    ONNX_FILENAME,
    ONNX_METADATA_KEY,
    DenseHead,
    ModelCard,
    Parity,
    Preprocessing,
    sha256_of,
)
from service.inference.sessions import OnnxModel
from service.preprocessing import prepare, stack

logger = logging.getLogger("argos.export")

OPSET = 17
PARITY_TOLERANCE = 1e-5
PARITY_BATCH = 32
RELATIVE_TOLERANCE = 1e-4
"""Largest difference, relative to its scale, of an output other than the probabilities."""


BACKBONE_FILENAME = "backbone.onnx"
HEAD_FILENAME = "head.onnx"


class ParityError(RuntimeError):
    """The ONNX graph does not reproduce the Keras model closely enough."""


@dataclass(frozen=True)
class DenseParts:
    """The classifier split for dense sliding-window inference.

    ``features`` maps raw pixels to the backbone's feature map (before pooling); ``head``
    maps average-pooled features to probabilities (and the familiarity distance, when the
    model has one), so that ``head(mean(features(x), axes=(1, 2))) == model(x)``.
    """

    features: tf.keras.Model
    head: tf.keras.Model
    stride: int


def convert(
    model: tf.keras.Model,
    input_shape: list[int | None],
    input_name: str,
    output_names: Sequence[str],
    path: Path,
    *,
    opset: int = OPSET,
) -> None:
    """Convert a one-input Keras model to an ONNX file at ``path``; its outputs, in order,
    get ``output_names``."""
    signature = [tf.TensorSpec(input_shape, tf.float32, name=input_name)]

    @tf.function(input_signature=signature)
    def serve(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = model(inputs, training=False)
        if not isinstance(outputs, list | tuple):
            outputs = [outputs]
        return dict(zip(output_names, outputs, strict=True))

    graph, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    # tf2onnx orders a function's outputs by name; the first one must be the main one.
    outputs = {output.name: output for output in graph.graph.output}
    del graph.graph.output[:]
    graph.graph.output.extend(outputs[name] for name in output_names)
    onnx.save(graph, str(path))


def any_size(features: tf.keras.Model) -> tf.keras.Model:
    """A copy of a fully convolutional model that accepts images of any height and width."""
    flexible = tf.keras.models.clone_model(
        features, input_tensors=tf.keras.Input((None, None, 3), name="pixels")
    )
    flexible.set_weights(features.get_weights())
    return flexible


def export_dense(
    parts: DenseParts, card: ModelCard, inputs: np.ndarray, expected: np.ndarray, out_dir: Path
) -> DenseHead:
    """Write the backbone and head graphs; check that together they reproduce ``expected``."""
    spec = card.preprocessing
    dense = DenseHead(backbone_file=BACKBONE_FILENAME, head_file=HEAD_FILENAME, stride=parts.stride)
    channels = int(parts.head.inputs[0].shape[-1])
    convert(
        any_size(parts.features),
        [None, None, None, 3],
        spec.input_name,
        [dense.feature_name],
        out_dir / BACKBONE_FILENAME,
    )
    convert(
        parts.head, [None, channels], dense.pooled_name, output_names(card), out_dir / HEAD_FILENAME
    )
    pooled = OnnxModel.load(out_dir / BACKBONE_FILENAME).run_chunked(inputs, PARITY_BATCH)
    actual = OnnxModel.load(out_dir / HEAD_FILENAME).run(pooled.mean(axis=(1, 2)))
    difference = float(np.abs(actual - expected).max())
    if difference > PARITY_TOLERANCE:
        raise ParityError(f"backbone + head differ from the model by {difference:.2e}")
    return dense


def output_names(card: ModelCard) -> list[str]:
    """The classifier graph's outputs: probabilities, then the familiarity distance if any."""
    names = [card.preprocessing.output_name]
    if card.familiarity is not None:
        names.append(card.familiarity.output_name)
    return names


def load_inputs(paths: Iterable[Path], spec: Preprocessing) -> np.ndarray:
    """Image files → one uint8 batch, preprocessed exactly as the service does."""
    arrays = []
    for path in paths:
        with Image.open(path) as image:
            arrays.append(prepare(image, spec))
    if not arrays:
        raise ValueError("no images to compare Keras and ONNX on")
    return stack(arrays)


def measure_parity(
    model: tf.keras.Model, onnx_path: Path, inputs: np.ndarray, source: str
) -> Parity:
    """Compare Keras and onnxruntime probabilities on the same inputs; any further output
    (the familiarity distance) must agree within :data:`RELATIVE_TOLERANCE`."""
    pixels = inputs.astype(np.float32)
    expected, *others = _as_list(model.predict(pixels, batch_size=PARITY_BATCH, verbose=0))
    graph = OnnxModel.load(onnx_path)
    actual, *onnx_others = (
        np.concatenate(parts)
        for parts in zip(
            *(
                graph.run_outputs(pixels[i : i + PARITY_BATCH], graph.output_names)
                for i in range(0, len(pixels), PARITY_BATCH)
            ),
            strict=True,
        )
    )
    for keras_output, onnx_output in zip(others, onnx_others, strict=True):
        scale = max(float(np.abs(keras_output).max()), 1.0)
        difference = float(np.abs(keras_output - onnx_output).max()) / scale
        if difference > RELATIVE_TOLERANCE:
            raise ParityError(f"ONNX's familiarity distance differs by {difference:.2e} (relative)")
    return Parity(
        max_abs_diff=float(np.abs(expected - actual).max()),
        top1_agreement=float(np.mean(expected.argmax(axis=1) == actual.argmax(axis=1))),
        images=len(inputs),
        source=source,
    )


def _as_list(outputs: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]


def embed_card(onnx_path: Path, card: ModelCard, destination: Path) -> None:
    """Write the card into the ONNX metadata, check the graph and save it."""
    graph = onnx.load(str(onnx_path))
    kept = [prop for prop in graph.metadata_props if prop.key != ONNX_METADATA_KEY]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    onnx.helper.set_model_props(graph, {ONNX_METADATA_KEY: card.embedded_json()})
    graph.producer_name = "argos"
    onnx.checker.check_model(graph)
    onnx.save(graph, str(destination))


def export(
    model: tf.keras.Model,
    card: ModelCard,
    parity_inputs: np.ndarray,
    parity_source: str,
    out_dir: Path,
    *,
    dense: DenseParts | None = None,
    tolerance: float = PARITY_TOLERANCE,
) -> ModelCard:
    """Export ``model`` to ``out_dir`` and return the final card.

    Raises :class:`ParityError` when the largest probability difference exceeds
    ``tolerance`` or any top-1 prediction differs; nothing is written then. With
    ``dense``, the backbone and head graphs for dense detection are exported too.
    """
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        raw = scratch / "raw.onnx"
        spec = card.preprocessing
        convert(model, [None, spec.height, spec.width, 3], spec.input_name, output_names(card), raw)
        parity = measure_parity(model, raw, parity_inputs, parity_source)
        logger.info(
            "parity on %d images: max |Δp| = %.2e, top-1 agreement %.1f %%",
            parity.images,
            parity.max_abs_diff,
            100 * parity.top1_agreement,
        )
        if parity.max_abs_diff > tolerance or parity.top1_agreement < 1.0:
            raise ParityError(
                f"ONNX differs from Keras: max |Δp| {parity.max_abs_diff:.2e} "
                f"(limit {tolerance:.0e}), top-1 agreement {parity.top1_agreement:.2%}"
            )
        card = card.model_copy(update={"parity": parity})
        if dense is not None:
            expected = OnnxModel.load(raw).run_chunked(parity_inputs, PARITY_BATCH)
            head = export_dense(dense, card, parity_inputs, expected, scratch)
            card = card.model_copy(update={"dense": head})
        embed_card(raw, card, scratch / ONNX_FILENAME)
        raw.unlink()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for item in scratch.iterdir():
            shutil.move(item, out_dir / item.name)
    card = card.model_copy(update={"onnx_sha256": sha256_of(out_dir / ONNX_FILENAME)})
    card.save(out_dir)
    return card
