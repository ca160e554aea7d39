"""A tiny ONNX classifier (pixels → softmax of channel means) and its card, for fast tests."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from service.card import ModelCard, Parity, Preprocessing


def write_tiny_classifier(path: Path, height: int = 8, width: int = 8) -> Path:
    """(N, H, W, 3) float pixels → (N, 3) softmax over the mean of each colour channel."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["pixels", "axes"], ["means"], keepdims=0),
            helper.make_node("Mul", ["means", "scale"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", height, width, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])],
        initializer=[
            helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2]),
            helper.make_tensor("scale", TensorProto.FLOAT, [], [0.05]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_card(**changes: object) -> ModelCard:
    """The card of the tiny classifier (``colours:1``: red, green, blue), with ``changes``."""
    fields = {
        "name": "colours",
        "version": "1",
        "labels": ["red", "green", "blue"],
        "label_groups": {"warm": [0]},
        "preprocessing": Preprocessing(input_size=(8, 8), resize="squash"),
        "backbone": "none",
        "parity": Parity(max_abs_diff=1e-7, top1_agreement=1.0, images=3, source="test"),
    }
    return ModelCard(**(fields | changes))
