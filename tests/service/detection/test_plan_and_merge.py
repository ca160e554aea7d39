"""Detection pieces without a model: planning, dense pooling, merging."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from service.card import Preprocessing
from service.detection.dense import feature_cells, pool_cells
from service.detection.merge import WindowScores, class_scores, select
from service.detection.params import DetectParams
from service.detection.plan import box_chunks, input_regions, plan, targets, window_inputs
from service.errors import InvalidParameter
from tests.service.tiny_model import make_card

SQUASH = Preprocessing(input_size=(224, 224), resize="squash")
CROP = Preprocessing(input_size=(224, 224), resize="center_crop", crop_pct=0.875)


@pytest.mark.parametrize(
    "changes",
    [
        {"window_sizes": [0]},
        {"window_sizes": [1.5]},
        {"window_sizes": []},
        {"overlap": 0.95},
        {"threshold": 0},
        {"iou_threshold": 2},
        {"max_detections": 0},
        {"mode": "fast"},
        {"merge_metric": "area"},
    ],
)
def test_out_of_range_parameters_are_refused(changes: dict) -> None:
    with pytest.raises(ValidationError):
        DetectParams(**changes)


def test_targets_default_to_groups_and_name_unknowns() -> None:
    card = make_card()
    assert targets(card, None) == {"warm": [0]}
    assert targets(card, ["blue"]) == {"blue": [2]}
    with pytest.raises(InvalidParameter, match=r"unknown classes \['purple'\]"):
        targets(card, ["purple"])


def test_plan_has_one_scale_per_window_size_and_a_cost_limit() -> None:
    params = DetectParams(window_sizes=[0.5, 1.0], overlap=0.5)
    scales = plan(640, 480, params, SQUASH, max_windows=100)
    assert [scale.boxes[0, 2] - scale.boxes[0, 0] for scale in scales] == [240, 480]
    assert scales[1].factor == pytest.approx(224 / 480)
    with pytest.raises(InvalidParameter, match="the limit is 3"):
        plan(640, 480, params, SQUASH, max_windows=3)


def test_dense_regions_map_a_window_to_one_model_input_of_cells() -> None:
    factor = 224 / (256 * 0.875)
    regions = input_regions(np.array([[0, 0, 256, 256]]), factor, CROP)
    side = regions[0, 2] - regions[0, 0]
    assert side == pytest.approx(224)
    cells = feature_cells(regions, stride=32, grid=(20, 20))
    assert (cells[0, 2] - cells[0, 0], cells[0, 3] - cells[0, 1]) == (7, 7)


def test_feature_cells_stay_inside_the_grid_and_are_never_empty() -> None:
    cells = feature_cells(np.array([[-50.0, -50, 5, 5], [600, 600, 700, 700]]), 32, (4, 6))
    assert cells.tolist() == [[0, 0, 2, 2], [5, 3, 6, 4]]


def test_pool_cells_averages_the_covered_cells() -> None:
    features = np.arange(4 * 5 * 2, dtype=np.float32).reshape(4, 5, 2)
    cells = np.array([[1, 0, 3, 2], [0, 0, 5, 4]])
    pooled = pool_cells(features, cells)
    assert np.allclose(pooled[0], features[0:2, 1:3].mean(axis=(0, 1)))
    assert np.allclose(pooled[1], features.mean(axis=(0, 1)))


def test_class_scores_sum_group_members() -> None:
    probabilities = np.array([[0.1, 0.2, 0.7]])
    assert np.allclose(class_scores(probabilities, {"a": [0], "bc": [1, 2]}), [[0.1, 0.9]])


def test_select_merges_fragments_of_one_object_and_keeps_separate_objects() -> None:
    boxes = np.array(
        [
            [0, 0, 100, 100],
            [10, 10, 110, 110],
            [20, 0, 120, 100],  # object 1, three windows
            [300, 300, 400, 400],
            [310, 300, 410, 400],  # object 2
            [150, 150, 250, 250],  # background
        ]
    )
    scores = np.array([[0.9], [0.8], [0.7], [0.95], [0.6], [0.2]])
    found = select(WindowScores(boxes, scores, ["dog"]), DetectParams(threshold=0.5))
    assert [(d.label, round(d.score, 2)) for d in found] == [("dog", 0.95), ("dog", 0.9)]
    first, second = found[1].box, found[0].box
    assert 0 < first[0] < 20 and first[2] > 100  # voted: between the fragments
    assert 300 <= second[0] <= 310


def test_select_keeps_classes_apart_and_honours_max_detections() -> None:
    boxes = np.array([[0, 0, 100, 100], [0, 0, 100, 100]])
    scores = np.array([[0.9, 0.8], [0.9, 0.8]])
    both = select(WindowScores(boxes, scores, ["dog", "cat"]), DetectParams())
    assert sorted(d.label for d in both) == ["cat", "dog"]
    one = select(WindowScores(boxes, scores, ["dog", "cat"]), DetectParams(max_detections=1))
    assert [d.label for d in one] == ["dog"]
    assert select(WindowScores(boxes, scores * 0.1, ["dog", "cat"]), DetectParams()) == []


def test_plan_refuses_a_huge_window_count_before_building_any_box() -> None:
    # 1-pixel windows every pixel of a 7000x7000 image: 49 million boxes, 1.6 GB of them.
    params = DetectParams(window_sizes=[0.0001], overlap=0.9)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(InvalidParameter, match=r"need 49000000 windows .* limit is 2048"):
            plan(7000, 7000, params, SQUASH, max_windows=2048)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 0.5
    assert peak < 1024 * 1024


def test_exact_mode_crops_in_chunks_that_match_one_crop_of_all() -> None:
    rgb = Image.fromarray(np.random.default_rng(3).integers(0, 255, (90, 120, 3), np.uint8))
    boxes = np.concatenate([scale.boxes for scale in plan(120, 90, DetectParams(), SQUASH, 500)])
    chunks = list(box_chunks(boxes, 7))
    assert [len(chunk) for chunk in chunks[:-1]] == [7] * (len(chunks) - 1)
    assert 1 <= len(chunks[-1]) <= 7
    pieces = np.concatenate([window_inputs(rgb, chunk, SQUASH) for chunk in chunks])
    np.testing.assert_array_equal(pieces, window_inputs(rgb, boxes, SQUASH))


def test_exact_mode_memory_is_bounded_by_the_chunk_not_the_window_count() -> None:
    rgb = Image.new("RGB", (1000, 1000))
    boxes = np.concatenate([s.boxes for s in plan(1000, 1000, DetectParams(), CROP, 2048)])
    assert len(boxes) >= 70
    one_input = CROP.height * CROP.width * 3
    tracemalloc.start()
    try:
        for chunk in box_chunks(boxes, 8):
            window_inputs(rgb, chunk, CROP)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * 8 * one_input
