"""A tiny ONNX classifier (pixels → softmax of channel means), its dense split and its card,
for fast tests."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from service.card import DenseHead, Familiarity, ModelCard, Parity, Preprocessing

GREY = 128.0
"""What the familiar tiny classifier was "trained" on: its distance is how far an image's
channel means lie from mid-grey."""


def write_tiny_classifier(
    path: Path, height: int = 8, width: int = 8, *, familiar: bool = False
) -> Path:
    """(N, H, W, 3) float pixels → (N, 3) softmax over the mean of each colour channel; with
    ``familiar``, also (N,) ``distance``: how far the channel means lie from mid-grey."""
    nodes = [
        helper.make_node("ReduceMean", ["pixels", "axes"], ["means"], keepdims=0),
        helper.make_node("Mul", ["means", "scale"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])]
    initializers = [
        helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2]),
        helper.make_tensor("scale", TensorProto.FLOAT, [], [0.05]),
    ]
    if familiar:
        nodes, outputs, initializers = _with_distance("means", nodes, outputs, initializers)
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", height, width, 3])],
        outputs,
        initializer=initializers,
    )
    return _save(graph, path)


def _with_distance(
    features: str,
    nodes: list[onnx.NodeProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: list[onnx.TensorProto],
) -> tuple[list[onnx.NodeProto], list[onnx.ValueInfoProto], list[onnx.TensorProto]]:
    """A graph's nodes, outputs and initializers, plus ``distance = |features - grey|``."""
    return (
        [
            *nodes,
            helper.make_node("Sub", [features, "grey"], ["offsets"]),
            helper.make_node("ReduceL2", ["offsets", "last_axis"], ["distance"], keepdims=0),
        ],
        [*outputs, helper.make_tensor_value_info("distance", TensorProto.FLOAT, ["N"])],
        [
            *initializers,
            helper.make_tensor("grey", TensorProto.FLOAT, [3], [GREY] * 3),
            helper.make_tensor("last_axis", TensorProto.INT64, [1], [1]),
        ],
    )


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_tiny_dense_graphs(
    directory: Path, stride: int = 2, *, familiar: bool = False
) -> DenseHead:
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
    nodes = [
        helper.make_node("Mul", [dense.pooled_name, "scale"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])]
    initializers = [helper.make_tensor("scale", TensorProto.FLOAT, [], [0.05])]
    if familiar:
        nodes, outputs, initializers = _with_distance(
            dense.pooled_name, nodes, outputs, initializers
        )
    head = helper.make_graph(
        nodes,
        "tiny-head",
        [helper.make_tensor_value_info(dense.pooled_name, TensorProto.FLOAT, ["N", 3])],
        outputs,
        initializer=initializers,
    )
    for graph, filename in ((backbone, dense.backbone_file), (head, dense.head_file)):
        _save(graph, directory / filename)
    return dense


def tiny_familiarity() -> Familiarity:
    """Familiarity of the familiar tiny classifier: held-out distances spread evenly from 0
    to 50, so an image's familiarity is ``1 - distance / 50`` (0 beyond 50)."""
    return Familiarity(
        method="distance of the channel means to mid-grey",
        training_images=100,
        held_out="test",
        held_out_images=100,
        held_out_distances=[i * 0.5 for i in range(101)],
        flag_rate=0.02,
    )


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
