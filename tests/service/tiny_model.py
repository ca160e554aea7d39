"""A tiny ONNX classifier (pixels → softmax of channel means), its dense split and its card,
for fast tests."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from service.card import DenseHead, ModelCard, Parity, Preprocessing


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
    return _save(graph, path)


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_tiny_dense_graphs(directory: Path, stride: int = 2) -> DenseHead:
    """The tiny classifier split for dense inference, in ``directory``: a backbone that
    average-pools ``stride`` x ``stride`` cells ((N, H, W, 3) → (N, H / stride, W / stride, 3))
    and a head that is the classifier's softmax, so head(mean(backbone(x))) == classifier(x)."""
    dense = DenseHead(backbone_file="backbone.onnx", head_file="head.onnx", stride=stride)
    window = {"kernel_shape": [stride, stride], "strides": [stride, stride]}
    backbone = helper.make_graph(
        [
            helper.make_node("Transpose", ["pixels"], ["planes"], perm=[0, 3, 1, 2]),
            helper.make_node("AveragePool", ["planes"], ["pooled"], **window),
            helper.make_node("Transpose", ["pooled"], [dense.feature_name], perm=[0, 2, 3, 1]),
        ],
        "tiny-backbone",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", "H", "W", 3])],
        [helper.make_tensor_value_info(dense.feature_name, TensorProto.FLOAT, ["N", "h", "w", 3])],
    )
    head = helper.make_graph(
        [
            helper.make_node("Mul", [dense.pooled_name, "scale"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "tiny-head",
        [helper.make_tensor_value_info(dense.pooled_name, TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])],
        initializer=[helper.make_tensor("scale", TensorProto.FLOAT, [], [0.05])],
    )
    for graph, filename in ((backbone, dense.backbone_file), (head, dense.head_file)):
        _save(graph, directory / filename)
    return dense


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
