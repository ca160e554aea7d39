"""Cross-validation: folds, the interval, and ``python -m training cv`` on a tiny folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.card import ModelCard
from training.cli import main
from training.config import load_config
from training.cv import card_summary
from training.data import stratified_folds
from training.evaluate import wilson_interval
from training.train import resolve


def test_folds_cover_every_image_once_and_spread_every_class() -> None:
    labels = np.array([0] * 23 + [1] * 11 + [2] * 6)

    folds = stratified_folds(labels, 5, seed=3)

    assert sorted(np.concatenate(folds).tolist()) == list(range(len(labels)))
    for fold in folds:
        counts = np.bincount(labels[fold], minlength=3)
        assert counts[0] in (4, 5) and counts[1] in (2, 3) and counts[2] in (1, 2)
    again = stratified_folds(labels, 5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again, strict=True))
    other = stratified_folds(labels, 5, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(folds, other, strict=True))


def test_folds_refuse_a_class_smaller_than_the_fold_count() -> None:
    with pytest.raises(ValueError, match="fewer than 5 folds"):
        stratified_folds(np.array([0] * 10 + [1] * 4), 5, seed=0)


def test_wilson_interval_matches_the_textbook_values() -> None:
    # 1,976 of 2,000 right (98.8 %): about ±0.48 points, the resolution the report needs.
    low, high = wilson_interval(1976, 2000)
    assert (low, high) == (pytest.approx(0.98215, abs=1e-4), pytest.approx(0.99193, abs=1e-4))
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.27753, abs=1e-4))
    assert wilson_interval(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-4)


def make_colours(root: Path, per_class: int = 8) -> Path:
    """Two classes of noisy 40x40 images: a red square or a blue square."""
    rng = np.random.default_rng(0)
    for label, colour in {"blue": (30, 30, 220), "red": (220, 30, 30)}.items():
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, (40, 40, 3)).astype(np.uint8)
            pixels[10:30, 10:30] = colour
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


@pytest.mark.slow
def test_cv_command_tests_every_image_once_and_logs_one_line_per_epoch(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], tiny_backbone: list[str]
) -> None:
    data = make_colours(tmp_path / "colours")
    args = ["cv", "--data", str(data), "--name", "colours", "--out", str(tmp_path / "runs")]
    args += tiny_backbone
    args += ["--weights", "null", "--input-size", "32", "--batch-size", "8", "--folds", "2"]
    args += ["--epochs-frozen", "1", "--epochs-finetune", "1"]

    assert main(args) == 0

    output = capfd.readouterr().out
    [run_dir] = (tmp_path / "runs" / "colours-cv").iterdir()
    report = json.loads((run_dir / "cv.json").read_text())
    assert (report["folds"], report["folds_done"], report["images"]) == (2, 2, 16)
    assert [fold["images"] for fold in report["per_fold"]] == [8, 8]
    assert report["command"] == "python -m training " + " ".join(args)
    low, high = report["interval_95"]
    assert low <= report["accuracy"] <= high
    assert report["fold_accuracy_mean"] == pytest.approx(report["accuracy"])
    assert set(report["per_class"]) == {"blue", "red"}
    wrong = 16 - round(report["accuracy"] * 16)
    assert len(report["misclassified"]) == wrong
    with (run_dir / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["file"] for row in rows) == sorted(str(p) for p in data.glob("*/*.png"))
    assert sorted(row["fold"] for row in rows) == ["1"] * 8 + ["2"] * 8
    calibration = report["calibration"]
    assert calibration["images"] == 16 and calibration["temperature"] > 0
    assert [fold["fold"] for fold in calibration["per_fold"]] == [1, 2]
    familiarity = report["familiarity"]
    assert familiarity["held_out_images"] == 16 and len(familiarity["held_out_distances"]) == 101
    for fold in (1, 2):
        card = ModelCard.load(run_dir / f"fold-{fold}" / "model")
        tested = {row["file"] for row in rows if row["fold"] == str(fold)}
        assert set(card.training["test_files"]) == tested and card.parity.top1_agreement == 1
    for name in ("cv.png", "confusion_matrix.png", "errors.png"):
        with Image.open(run_dir / name) as image:
            assert image.format == "PNG"
    # Captured output is not a terminal: one line per epoch, no redrawn progress bar.
    assert "\b" not in output and "\r" not in output and "\x1b[" not in output
    epoch_lines = [line for line in output.splitlines() if " - loss: " in line]
    assert len(epoch_lines) == 2 * 2
    assert f"reports in {run_dir}" in output


def test_card_summary_takes_the_figures_of_the_same_recipe_only(tmp_path: Path) -> None:
    config = load_config(overrides={"data": str(tmp_path / "pets"), "epochs_finetune": 6})
    resolved, _ = resolve(config)
    report = {
        "accuracy": 0.99,
        "interval_95": [0.985, 0.993],
        "folds": 5,
        "images": 2000,
        "per_fold": [{"accuracy": a} for a in (0.99, 0.9875, 0.9925, 0.99, 0.99)],
        "command": "python -m training cv --folds 5",
        "config": resolved.model_copy(update={"verbose": 2, "data": "elsewhere"}).model_dump(),
    }
    path = tmp_path / "cv.json"
    path.write_text(json.dumps(report))

    summary = card_summary(path, config)

    assert summary["accuracy"] == 0.99 and summary["folds"] == 5
    assert summary["fold_accuracies"] == [0.99, 0.9875, 0.9925, 0.99, 0.99]
    assert "single_view_accuracy" not in summary  # measured only with test_time_flip
    other = config.model_copy(update={"epochs_finetune": 3, "label_smoothing": 0.1})
    with pytest.raises(ValueError, match=r"\['epochs_finetune', 'label_smoothing'\]"):
        card_summary(path, other)


@pytest.mark.slow
def test_cv_of_a_final_fit_with_test_time_flip_reports_the_single_view_too(
    tmp_path: Path, tiny_backbone: list[str]
) -> None:
    data = make_colours(tmp_path / "colours")
    args = ["cv", "--data", str(data), "--name", "colours", "--out", str(tmp_path / "runs")]
    args += tiny_backbone
    args += ["--weights", "null", "--input-size", "32", "--batch-size", "8", "--folds", "2"]
    args += ["--epochs-frozen", "1", "--epochs-finetune", "1", "--schedule", "cosine"]
    args += ["--val-split", "0", "--test-time-flip", "true"]

    assert main(args) == 0

    [run_dir] = (tmp_path / "runs" / "colours-cv").iterdir()
    report = json.loads((run_dir / "cv.json").read_text())
    assert report["images"] == 16 and 0 <= report["single_view_accuracy"] <= 1
    with (run_dir / "fold-1" / "history.csv").open() as handle:
        epochs = list(csv.DictReader(handle))
    assert [epoch["val_loss"] for epoch in epochs] == ["NA", "NA"]  # no validation split
    assert not (run_dir / "fold-1" / "checkpoint").exists()
