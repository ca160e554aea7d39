"""``python -m training quantize`` on a tiny convolutional model: card, gate, store."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import bentoml
import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image
from pydantic import ValidationError

from service.card import (
    ONNX_FILENAME,
    ModelCard,
    Parity,
    Preprocessing,
    Quantization,
    QuantizationSpeed,
    sha256_of,
    verify_artifact,
)
from service.inference.sessions import OnnxModel
from tests.conftest import argos_server
from training import store
from training.calibration import seeded_split
from training.cli import main
from training.export import embed_card
from training.quantize import Bounds, Images, QuantizationRefused, float_regions, quantize

SIZE = 8
SPEC = Preprocessing(input_size=(SIZE, SIZE), resize="squash")
PHOTOS = 24
CALIBRATION = 8


def tiny_convnet(path: Path) -> Path:
    """pixels → scale → 1x1 conv → relu → 1x1 conv → relu → mean → dense → softmax.

    The convolutions and the dense layer pass each colour channel through, so the
    predicted class is the image's strongest colour.
    """
    eye = np.eye(3, dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["pixels"], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2]),
            helper.make_node("Mul", ["nchw", "scale"], ["scaled"], name="scale"),
            helper.make_node("Conv", ["scaled", "w1", "b1"], ["c1"], name="conv1"),
            helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
            helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2"),
            helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
            helper.make_node("GlobalAveragePool", ["r2"], ["pooled"], name="pool"),
            helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
            helper.make_node("MatMul", ["flat", "dense"], ["logits"], name="dense"),
            helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=-1),
        ],
        "tiny_convnet",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])],
        initializer=[
            helper.make_tensor("scale", TensorProto.FLOAT, [], [1 / 255]),
            onnx.numpy_helper.from_array(eye.reshape(3, 3, 1, 1), "w1"),
            onnx.numpy_helper.from_array(np.zeros(3, np.float32), "b1"),
            onnx.numpy_helper.from_array(eye.reshape(3, 3, 1, 1), "w2"),
            onnx.numpy_helper.from_array(np.zeros(3, np.float32), "b2"),
            onnx.numpy_helper.from_array(10 * eye, "dense"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def write_artifact(
    directory: Path,
    name: str,
    training: dict | None = None,
    labels: tuple[str, ...] = ("red", "green", "blue"),
) -> Path:
    """A float artifact folder, as ``train`` would leave it: graph, embedded card, hash."""
    directory.mkdir(parents=True)
    card = ModelCard(
        name=name,
        version="1",
        labels=list(labels),
        preprocessing=SPEC,
        backbone="tiny",
        training=training or {},
    )
    embed_card(tiny_convnet(directory / "raw.onnx"), card, directory / ONNX_FILENAME)
    (directory / "raw.onnx").unlink()
    card = card.model_copy(update={"onnx_sha256": sha256_of(directory / ONNX_FILENAME)})
    card.save(directory)
    return directory


def coloured(count: int, seed: int, brightness: int = 255) -> np.ndarray:
    """Noise images, each with one strong colour channel, in turn red, green, blue; every
    pixel of every channel is at least a quarter of ``brightness``."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(brightness // 4, brightness // 2, (count, SIZE, SIZE, 3))
    for i in range(count):
        pixels[i, ..., i % 3] += brightness // 2
    return pixels.astype(np.uint8)


@pytest.fixture()
def name() -> Iterator[str]:
    """A fresh store name; the model and its variant, if registered, are deleted afterwards."""
    name = f"tinyq-{uuid.uuid4().hex[:8]}"
    yield name
    for tag in (f"{name}:1", f"{name}-int8:1"):
        if store.exists(tag):
            bentoml.models.delete(tag)


def test_regions_are_the_stem_and_the_head(tmp_path: Path) -> None:
    regions = float_regions(onnx.load(str(tiny_convnet(tmp_path / "m.onnx"))))
    assert regions == {
        "stem": ["to_nchw", "scale", "conv1"],
        "head": ["pool", "flatten", "dense", "softmax"],
    }


def test_quantized_variant_is_judged_and_carded(tmp_path: Path, name: str) -> None:
    float_dir = write_artifact(tmp_path / "float", name)
    judged_pixels = coloured(30, 1)
    labels = OnnxModel.load(float_dir / ONNX_FILENAME).run(judged_pixels).argmax(axis=1)
    assert set(labels) == {0, 1, 2}
    card, out_dir = quantize(
        float_dir,
        tmp_path / "models",
        Images(coloured(12, 0), "12 calibration images"),
        Images(judged_pixels, "30 judged images", labels=labels),
        Images(coloured(6, 2), "6 photos"),
        bounds=Bounds(min_agreement=0.9, max_accuracy_drop=0.05),
    )
    assert out_dir == tmp_path / "models" / f"{name}-int8" / "1"
    assert (
        verify_artifact(out_dir)
        == card
        == ModelCard.from_onnx(out_dir / ONNX_FILENAME).model_copy(
            update={"onnx_sha256": card.onnx_sha256}
        )
    )
    assert card.labels == ["red", "green", "blue"] and card.preprocessing == SPEC
    q = card.quantization
    assert q.precision == "int8" and q.float_model == f"{name}:1"
    assert (q.calibration, q.calibration_images) == ("12 calibration images", 12)
    assert (q.judged_on, q.judged_images) == ("30 judged images", 30)
    assert q.top1_agreement >= 0.9 and q.float_accuracy == 1.0
    assert q.accuracy_delta == pytest.approx(q.accuracy - 1.0)
    assert card.metrics == {"accuracy": q.accuracy, "images": 30}
    assert q.kept_float == [
        "to_nchw",
        "scale",
        "conv1",
        "pool",
        "flatten",
        "dense",
        "softmax",
    ]
    assert q.parity.images == 6 and q.parity.max_abs_diff < 0.5
    assert q.speed.float_core_ms > 0 and q.speed.quantized_core_ms > 0 and q.speed.threads == 1
    assert q.speed.speedup == pytest.approx(q.speed.float_core_ms / q.speed.quantized_core_ms, 1e-2)
    assert q.bounds == {"min_agreement": 0.9, "max_accuracy_drop": 0.05}
    ops = {node.op_type for node in onnx.load(str(out_dir / ONNX_FILENAME)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_badly_calibrated_variant_is_refused_and_nothing_is_written(
    tmp_path: Path, name: str
) -> None:
    """Calibrated on dark images, the variant clips every bright image to one class."""
    float_dir = write_artifact(tmp_path / "float", name)
    with pytest.raises(QuantizationRefused, match="top-1 agreement .* below the bound 97"):
        quantize(
            float_dir,
            tmp_path / "models",
            Images(coloured(12, 0, brightness=12), "dark images"),
            Images(coloured(30, 1), "bright images"),
            Images(coloured(6, 2), "6 photos"),
        )
    assert not (tmp_path / "models").exists()


def write_photos(folder: Path, pixels: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return folder


def photo_folder(folder: Path, dark_calibration: bool) -> Path:
    """Bright coloured photos; the ones the seeded sample will calibrate on dark if asked."""
    pixels = coloured(PHOTOS, 3)
    if dark_calibration:
        taken, _ = seeded_split(PHOTOS, CALIBRATION, 0)
        pixels[taken] = coloured(CALIBRATION, 4, brightness=12)
    return write_photos(folder, pixels)


def quantize_args(model_dir: Path, calibration: Path, tmp_path: Path) -> list[str]:
    return [
        "quantize",
        *("--model", str(model_dir), "--calibration", str(calibration)),
        *("--calibration-images", str(CALIBRATION), "--out", str(tmp_path / "models")),
        *("--parity-images", str(write_photos(tmp_path / "photos", coloured(4, 5)))),
    ]


def test_cli_registers_an_accepted_variant_under_its_own_name(tmp_path: Path, name: str) -> None:
    float_dir = write_artifact(tmp_path / "float", name)
    calibration = photo_folder(tmp_path / "calibration", dark_calibration=False)
    assert main(quantize_args(float_dir, calibration, tmp_path)) == 0
    card = store.load_card(f"{name}-int8:1")
    assert card.quantization.calibration_images == CALIBRATION
    assert card.quantization.judged_images == PHOTOS - CALIBRATION
    assert not store.exists(f"{name}:1")


def test_cli_refuses_a_variant_over_the_bound_and_registers_nothing(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    float_dir = write_artifact(tmp_path / "float", name)
    calibration = photo_folder(tmp_path / "calibration", dark_calibration=True)
    assert main(quantize_args(float_dir, calibration, tmp_path)) == 1
    assert f"refused {name}-int8, not registered: top-1 agreement" in capsys.readouterr().err
    assert not store.exists(f"{name}-int8:latest")
    assert not (tmp_path / "models").exists()


def test_a_trained_model_calibrates_on_its_training_split_and_is_judged_on_its_test_split(
    tmp_path: Path, name: str
) -> None:
    data, labels = tmp_path / "data", ("1-red", "2-green", "3-blue")
    for index, label in enumerate(labels):
        write_photos(data / label, coloured(30, 10 + index)[index::3])
    config = {"data": str(data), "val_split": 0.2, "test_split": 0.3, "seed": 1}
    float_dir = write_artifact(tmp_path / "float", name, {"config": config}, labels)
    args = ["quantize", "--model", str(float_dir), "--out", str(tmp_path / "models")]
    args += ["--parity-images", str(data / "1-red"), "--no-register"]
    assert main(args) == 0
    q = verify_artifact(tmp_path / "models" / f"{name}-int8" / "1").quantization
    assert q.judged_on == f"the 9 test-split images of {data}" and q.judged_images == 9
    assert q.calibration == f"15 of the 15 training-split images of {data} (seed 0)"
    assert q.float_accuracy == 1.0 and q.accuracy_delta == q.accuracy - 1.0
    assert not store.exists(f"{name}-int8:1")


@pytest.mark.integration
def test_a_real_server_serves_the_variant_beside_its_float_model(tmp_path: Path, name: str) -> None:
    float_dir = write_artifact(tmp_path / "float", name)
    store.register(float_dir)
    calibration = photo_folder(tmp_path / "calibration", dark_calibration=False)
    assert main(quantize_args(float_dir, calibration, tmp_path)) == 0
    photos = {}
    for label, pixels in zip(["red", "green", "blue"], coloured(3, 6), strict=True):
        png = io.BytesIO()
        Image.fromarray(pixels).save(png, format="PNG")
        photos[label] = png.getvalue()
    replies = []
    with argos_server(f"{name}:1", models=f"{name}:1,{name}-int8:1") as url:
        for model in (name, f"{name}-int8"):
            for photo in photos.values():
                replies.append(
                    httpx.post(
                        f"{url}/classify",
                        params={"model": model, "top_k": 1},
                        files={"image": photo},
                        timeout=60,
                    )
                )
    assert [reply.status_code for reply in replies] == [200] * 6
    bodies = [reply.json() for reply in replies]
    assert [body["model"]["name"] for body in bodies] == [name] * 3 + [f"{name}-int8"] * 3
    assert [body["predictions"][0]["label"] for body in bodies] == [*photos] * 2


def test_card_quantization_section_is_validated() -> None:
    speed = QuantizationSpeed(
        float_core_ms=6.0,
        quantized_core_ms=3.0,
        speedup=2.0,
        float_batch=1,
        quantized_batch=8,
        threads=1,
        cpu="x",
    )
    fields = {
        "float_model": "m:1",
        "method": "static",
        "calibration": "c",
        "calibration_images": 1,
        "judged_on": "j",
        "judged_images": 1,
        "top1_agreement": 0.99,
        "parity": Parity(max_abs_diff=0.01, top1_agreement=1.0, images=1, source="p"),
        "speed": speed,
        "bounds": {"min_agreement": 0.97},
    }
    assert Quantization(**fields).precision == "int8"
    for bad in ({"precision": "int4"}, {"top1_agreement": 1.5}, {"float_model": "Bad Tag"}):
        with pytest.raises(ValidationError):
            Quantization(**(fields | bad))
    card = ModelCard(
        name="m-int8",
        version="1",
        labels=["a", "b"],
        preprocessing=SPEC,
        backbone="x",
        quantization=Quantization(**fields),
    )
    assert ModelCard.from_json(card.to_json()) == card
