"""``python -m training quantize`` on a tiny convolutional model: card, gate, store."""

from __future__ import annotations

import io
import json
import re
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
    Familiarity,
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
from tests.training.test_cv import make_colours
from training import store
from training.calibration import (
    cross_validation_folds,
    read_data,
    seeded_split,
    split_training_data,
)
from training.cli import main
from training.cv import CV_JSON, FOLD_MODEL, PREDICTIONS_CSV, _write_predictions
from training.data import read_folder, stratified_folds
from training.export import embed_card
from training.quantize import (
    Bounds,
    Fold,
    Folds,
    Images,
    QuantizationRefused,
    Recipe,
    float_regions,
    judge_folds,
    quantize,
    quantize_graph,
)

SIZE = 8
SPEC = Preprocessing(input_size=(SIZE, SIZE), resize="squash")
PHOTOS = 24
CALIBRATION = 8


def tiny_convnet(path: Path, *, distance: bool = False) -> Path:
    """pixels → scale → 1x1 conv → relu → 1x1 conv → relu → mean → dense → softmax.

    The convolutions and the dense layer pass each colour channel through, so the
    predicted class is the image's strongest colour. With ``distance`` a second output
    ``distance`` is the length of the pooled features after a linear map, like the
    familiarity distance of a trained model.
    """
    eye = np.eye(3, dtype=np.float32)
    extra_nodes, extra_outputs, extra_weights = [], [], []
    if distance:
        extra_nodes = [
            helper.make_node("MatMul", ["flat", "whitening"], ["whitened"], name="whiten"),
            helper.make_node("Mul", ["whitened", "whitened"], ["squares"], name="square"),
            helper.make_node("ReduceSum", ["squares", "axis"], ["summed"], name="sum", keepdims=0),
            helper.make_node("Sqrt", ["summed"], ["distance"], name="distance"),
        ]
        extra_outputs = [helper.make_tensor_value_info("distance", TensorProto.FLOAT, ["N"])]
        extra_weights = [
            onnx.numpy_helper.from_array(3 * eye, "whitening"),
            onnx.numpy_helper.from_array(np.array([1]), "axis"),
        ]
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
            *extra_nodes,
        ],
        "tiny_convnet",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", SIZE, SIZE, 3])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3]),
            *extra_outputs,
        ],
        initializer=[
            *extra_weights,
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
    familiarity: Familiarity | None = None,
) -> Path:
    """A float artifact folder, as ``train`` would leave it: graph, embedded card, hash;
    with ``familiarity`` the graph has the distance output it describes."""
    directory.mkdir(parents=True)
    card = ModelCard(
        name=name,
        version="1",
        labels=list(labels),
        preprocessing=SPEC,
        backbone="tiny",
        training=training or {},
        familiarity=familiarity,
    )
    graph = tiny_convnet(directory / "raw.onnx", distance=familiarity is not None)
    embed_card(graph, card, directory / ONNX_FILENAME)
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
        "extra_outputs": [],
    }


def test_a_second_output_stays_float_even_when_every_region_is_quantized(tmp_path: Path) -> None:
    """The familiarity distance (after the pooling, beside the softmax) keeps its float
    weights and the graph keeps both outputs, probabilities first."""
    path = tiny_convnet(tmp_path / "m.onnx", distance=True)
    regions = float_regions(onnx.load(str(path)))
    assert regions["extra_outputs"] == ["whiten", "square", "sum", "distance"]
    assert regions["head"] == ["pool", "flatten", "dense", "softmax", *regions["extra_outputs"]]
    out = tmp_path / "q.onnx"
    kept = quantize_graph(path, out, coloured(12, 0), "pixels", Recipe(keep_float=()))
    assert kept == regions["extra_outputs"]
    graph = onnx.load(str(out)).graph
    assert [output.name for output in graph.output] == ["probabilities", "distance"]
    nodes = {node.name: node for node in graph.node}
    made_by = {output: node.op_type for node in graph.node for output in node.output}
    assert made_by[nodes["dense"].input[1]] == "DequantizeLinear"  # INT8 weights
    assert nodes["whiten"].input[1] == "whitening"  # the float initializer
    pixels = coloured(30, 1)
    float_model, int8_model = OnnxModel.load(path), OnnxModel.load(out)
    expected = float_model.run_outputs(pixels, float_model.output_names)
    actual = int8_model.run_outputs(pixels, int8_model.output_names)
    assert np.array_equal(expected[0].argmax(1), actual[0].argmax(1))
    assert np.allclose(actual[1], expected[1], rtol=0.05)


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


def test_layers_named_by_a_pattern_stay_float(tmp_path: Path) -> None:
    path = tiny_convnet(tmp_path / "m.onnx")
    out = tmp_path / "q.onnx"
    recipe = Recipe(keep_float=(), keep_float_layers=("^w2$",))
    assert quantize_graph(path, out, coloured(12, 0), "pixels", recipe) == ["conv2"]
    graph = onnx.load(str(out)).graph
    nodes = {node.name: node for node in graph.node}
    made_by = {output: node.op_type for node in graph.node for output in node.output}
    assert nodes["conv2"].input[1] == "w2"
    assert made_by[nodes["conv1"].input[1]] == "DequantizeLinear"
    assert recipe.options()["keep_float_layers"] == ["^w2$"]
    with pytest.raises(ValueError, match=r"no node or weight name matches \['block_16'\]"):
        quantize_graph(
            path, out, coloured(12, 0), "pixels", Recipe(keep_float_layers=("block_16",))
        )


def test_a_variant_reports_how_far_its_familiarity_distance_moved(
    tmp_path: Path, name: str
) -> None:
    judged = coloured(30, 1)
    float_graph = OnnxModel.load(tiny_convnet(tmp_path / "m.onnx", distance=True))
    distances = float_graph.run_outputs(judged, ["distance"])[0]
    familiarity = Familiarity(
        method="length of the pooled features",
        training_images=30,
        held_out="the judged images",
        held_out_images=30,
        held_out_distances=np.quantile(distances, np.linspace(0, 1, 101)).tolist(),
        flag_rate=0.1,
    )
    float_dir = write_artifact(tmp_path / "float", name, familiarity=familiarity)
    card, out_dir = quantize(
        float_dir,
        tmp_path / "models",
        Images(coloured(12, 0), "12 calibration images"),
        Images(judged, "30 judged images", labels=np.arange(30) % 3),
        Images(coloured(6, 2), "6 photos"),
        recipe=Recipe(keep_float=()),
    )
    assert card.familiarity == familiarity
    shift = card.metrics["familiarity"]
    assert shift["images"] == 30
    assert shift["float_unknown"] == pytest.approx(0.1, abs=1 / 30)
    assert abs(shift["unknown"] - shift["float_unknown"]) <= 2 / 30
    assert 0 < shift["median_relative_difference"] <= shift["max_relative_difference"] < 0.05
    variant = OnnxModel.load(out_dir / ONNX_FILENAME)
    assert variant.output_names == ["probabilities", "distance"]


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


CLASSES = ("1-red", "2-green", "3-blue")
RECIPE = {"val_split": 0.2, "test_split": 0.3, "seed": 1, "epochs_finetune": 6}


def colour_folder(data: Path) -> Path:
    """Ten photos per class, each class's colour the strongest in its photos."""
    for index, label in enumerate(CLASSES):
        write_photos(data / label, coloured(30, 10 + index)[index::3])
    return data


def cross_validation_run(
    run: Path, data: Path, name: str, *, folds: int = 3, done: int | None = None, **recipe
) -> Path:
    """A finished cross-validation as ``python -m training cv`` leaves it, of tiny models:
    ``cv.json``, ``predictions.csv`` and ``fold-<k>/model`` with the fold's test files."""
    config = {"data": str(data), **RECIPE, **recipe}
    images = read_folder(data, SPEC)
    probabilities = np.zeros((len(images.labels), len(CLASSES)), np.float32)
    fold_of = np.zeros(len(images.labels), np.int32)
    for number, test in enumerate(stratified_folds(images.labels, folds, seed=1), start=1):
        training = {
            "config": config,
            "fold": number,
            "test_files": [images.files[i] for i in test],
        }
        model_dir = write_artifact(
            run / f"fold-{number}" / FOLD_MODEL, f"{name}-fold-{number}", training, CLASSES
        )
        probabilities[test] = OnnxModel.load(model_dir / ONNX_FILENAME).run(images.images[test])
        fold_of[test] = number
    _write_predictions(
        run / PREDICTIONS_CSV, images.files, images.labels, fold_of, CLASSES, probabilities
    )
    report = {"folds": folds, "folds_done": folds if done is None else done, "config": config}
    (run / CV_JSON).write_text(json.dumps(report))
    return run


def trained_artifact(tmp_path: Path, name: str, data: Path) -> Path:
    config = {"data": str(data), **RECIPE}
    return write_artifact(tmp_path / "float", name, {"config": config}, CLASSES)


def test_folds_calibrate_outside_the_fold_as_the_final_variant_calibrates(tmp_path: Path) -> None:
    data = colour_folder(tmp_path / "data")
    float_dir = trained_artifact(tmp_path, "tinyq", data)
    run = cross_validation_run(tmp_path / "cv", data, "tinyq")
    card = ModelCard.load(float_dir)
    config, images = read_data(card, None)

    folds = cross_validation_folds(run, card, images, calibration_images=15, seed=0)

    assert folds.source == f"the 30 images of {data} in the 3 folds of {run}"
    assert [fold.number for fold in folds.folds] == [1, 2, 3]
    tested = np.concatenate([fold.test.pixels for fold in folds.folds])
    assert sorted(map(bytes, tested)) == sorted(map(bytes, images.images))
    assert [len(fold.test) for fold in folds.folds] == [12, 9, 9]
    for fold in folds.folds:
        assert np.bincount(fold.test.labels).tolist() == [len(fold.test) // 3] * 3
        outside = 30 - len(fold.test)
        assert len(fold.calibration) == 15
        assert (
            fold.calibration.source
            == f"15 of the {outside} images outside fold {fold.number} (seed 0)"
        )
        assert not set(map(bytes, fold.calibration.pixels)) & set(map(bytes, fold.test.pixels))
        assert fold.recorded.shape == (len(fold.test), 3)
        assert np.array_equal(fold.recorded.argmax(1), fold.test.labels)
    # the final variant draws from its training split the same way
    final, _ = split_training_data(config, images, calibration_images=15, seed=0)
    assert final.source == f"15 of the 15 training-split images of {data} (seed 0)"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"done": 2}, "is unfinished: 2 of 3 folds"),
        (
            {"epochs_finetune": 3, "seed": 2},
            r"cross-validated another recipe: \['epochs_finetune', 'seed'\]",
        ),
    ],
)
def test_cli_refuses_a_cross_validation_that_is_unfinished_or_of_another_recipe(
    tmp_path: Path, change: dict, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = colour_folder(tmp_path / "data")
    float_dir = trained_artifact(tmp_path, "tinyq", data)
    run = cross_validation_run(tmp_path / "cv", data, "tinyq", **change)
    args = ["quantize", "--model", str(float_dir), "--cross-validation", str(run)]
    args += ["--parity-images", str(data / CLASSES[0]), "--out", str(tmp_path / "models")]
    assert main(args) == 2
    assert re.search(f"cannot quantize tinyq:1: .*{message}", capsys.readouterr().err)
    assert not (tmp_path / "models").exists()


def test_cli_judges_the_recipe_on_the_folds_and_cards_the_out_of_fold_figures(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = colour_folder(tmp_path / "data")
    float_dir = trained_artifact(tmp_path, name, data)
    run = cross_validation_run(tmp_path / "cv", data, name)
    args = ["quantize", "--model", str(float_dir), "--cross-validation", str(run)]
    args += ["--parity-images", str(data / CLASSES[0]), "--out", str(tmp_path / "models")]
    args += ["--keep-float", "head", "--calibration-images", "12"]

    assert main(args) == 0

    card = store.load_card(f"{name}-int8:1")
    q = card.quantization
    assert q.judged_on.startswith(f"out of fold: the 30 images of {data} in the 3 folds of {run}")
    assert q.judged_images == 30 and q.float_accuracy == 1.0
    assert q.accuracy_delta == pytest.approx(q.accuracy - 1.0)
    assert q.options["keep_float"] == ["head"]
    assert q.calibration == f"12 of the 15 training-split images of {data} (seed 0)"
    cv = card.metrics["cross_validation"]
    assert (cv["folds"], cv["images"], cv["float_accuracy"]) == (3, 30, 1.0)
    assert cv["accuracy"] == q.accuracy and cv["top1_agreement"] == q.top1_agreement
    assert cv["float_fold_accuracies"] == [1.0, 1.0, 1.0] and len(cv["fold_accuracies"]) == 3
    assert cv["gained"] == 0 and cv["lost"] == round(-q.accuracy_delta * 30)
    assert cv["calibration"] == [
        f"12 of the {outside} images outside fold {number} (seed 0)"
        for number, outside in ((1, 18), (2, 21), (3, 21))
    ]
    low, high = cv["interval_95"]
    assert low <= q.accuracy <= high
    assert card.metrics["images"] == 9 and card.metrics["judged_on"] == (
        f"the 9 test-split images of {data}"
    )
    assert "out-of-fold images" in capsys.readouterr().out


def fold_of_model(model_dir: Path, number: int, calibration: Images, test: Images) -> Fold:
    recorded = OnnxModel.load(model_dir / ONNX_FILENAME).run(test.pixels)
    return Fold(number, model_dir, calibration, test, recorded)


def test_a_recipe_over_the_bound_on_the_folds_is_refused_though_the_final_variant_passes(
    tmp_path: Path, name: str
) -> None:
    """Every fold's variant is calibrated on dark images: out of fold it loses accuracy."""
    float_dir = write_artifact(tmp_path / "float", name)
    bright = coloured(30, 1)
    labels = np.arange(30) % 3
    folds = Folds(
        "two folds",
        [
            fold_of_model(
                float_dir,
                number,
                Images(coloured(12, number, brightness=12), "dark"),
                Images(bright[number - 1 :: 2], "fold", labels=labels[number - 1 :: 2]),
            )
            for number in (1, 2)
        ],
    )
    with pytest.raises(QuantizationRefused, match="cross-validated accuracy .* points below"):
        quantize(
            float_dir,
            tmp_path / "models",
            Images(coloured(12, 0), "12 bright calibration images"),
            Images(coloured(30, 3), "30 judged images", labels=labels),
            Images(coloured(6, 2), "6 photos"),
            bounds=Bounds(min_agreement=0.0),
            folds=folds,
        )
    assert not (tmp_path / "models").exists()


def test_a_fold_model_that_does_not_reproduce_its_recorded_probabilities_is_an_error(
    tmp_path: Path,
) -> None:
    float_dir = write_artifact(tmp_path / "float", "tinyq")
    test = Images(coloured(9, 1), "fold", labels=np.arange(9) % 3)
    fold = fold_of_model(float_dir, 1, Images(coloured(12, 0), "calibration"), test)
    shuffled = Fold(1, float_dir, fold.calibration, test, fold.recorded[::-1])
    with pytest.raises(ValueError, match="does not reproduce the probabilities"):
        judge_folds(Folds("one fold", [shuffled]), "pixels", Recipe(), Bounds())


@pytest.mark.slow
def test_a_trained_model_is_judged_on_the_folds_its_cross_validation_exported(
    tmp_path: Path, name: str, tiny_backbone: list[str]
) -> None:
    """Real ``cv`` and ``train`` runs of one recipe: the fold models reproduce the recorded
    out-of-fold probabilities, and the final variant keeps its familiarity output."""
    data = make_colours(tmp_path / "colours", per_class=10)
    recipe = ["--data", str(data), "--name", name, "--out", str(tmp_path / "runs")]
    recipe += [*tiny_backbone, "--weights", "null", "--input-size", "32", "--batch-size", "8"]
    recipe += ["--epochs-frozen", "1", "--epochs-finetune", "1", "--schedule", "cosine"]
    recipe += ["--val-split", "0", "--test-time-flip", "true"]
    assert main(["cv", *recipe, "--folds", "2"]) == 0
    assert main(["train", *recipe, "--no-register"]) == 0
    [run] = (tmp_path / "runs" / f"{name}-cv").iterdir()
    [float_dir] = (tmp_path / "runs" / name).iterdir()
    args = ["quantize", "--model", str(float_dir), "--cross-validation", str(run)]
    args += ["--keep-float", "head", "--parity-images", str(data / "red")]
    args += ["--out", str(tmp_path / "models"), "--no-register"]
    args += ["--min-agreement", "0", "--max-accuracy-drop", "1"]  # an untrained model

    assert main(args) == 0

    [out_dir] = (tmp_path / "models" / f"{name}-int8").iterdir()
    card = verify_artifact(out_dir)
    assert card.quantization.judged_images == 20
    assert card.metrics["cross_validation"]["folds"] == 2
    graph = onnx.load(str(out_dir / ONNX_FILENAME)).graph
    assert [output.name for output in graph.output] == ["probabilities", "distance"]
    assert card.familiarity is not None
