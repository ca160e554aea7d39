from __future__ import annotations

import numpy as np
import pytest

from service.detection.nms import batched_nms, ios, iou, non_max_suppression, overlap


def test_iou_by_hand():
    box = np.array([0, 0, 2, 2])
    boxes = np.array(
        [
            [0, 0, 2, 2],  # identical
            [1, 1, 3, 3],  # 1 / (4 + 4 - 1)
            [0, 0, 1, 2],  # half of box: 2 / 4
            [2, 0, 4, 2],  # touching edge only
            [5, 5, 6, 6],  # disjoint
        ]
    )

    np.testing.assert_allclose(iou(box, boxes), [1.0, 1 / 7, 0.5, 0.0, 0.0])


def test_ios_is_one_for_a_contained_box_whatever_its_size():
    big = np.array([0, 0, 4, 4])
    boxes = np.array([[1, 1, 3, 3], [2, 2, 6, 6]])

    np.testing.assert_allclose(ios(big, boxes), [1.0, 4 / 16])
    np.testing.assert_allclose(iou(big, boxes), [4 / 16, 4 / 28])


def test_overlap_of_degenerate_boxes_is_zero_not_nan():
    point = np.array([1, 1, 1, 1])
    boxes = np.array([[1, 1, 1, 1], [0, 0, 2, 2]])

    assert iou(point, boxes).tolist() == [0.0, 0.0]
    assert ios(point, boxes).tolist() == [0.0, 0.0]


def test_overlap_rejects_unknown_metric():
    with pytest.raises(ValueError, match="metric must be 'iou' or 'ios', got 'giou'"):
        overlap(np.array([0, 0, 1, 1]), np.array([[0, 0, 1, 1]]), "giou")


def test_identical_boxes_collapse_to_the_best_one():
    boxes = np.array([[10, 10, 50, 50]] * 3, dtype=float)
    scores = np.array([0.2, 0.9, 0.5])

    assert non_max_suppression(boxes, scores, 0.5).tolist() == [1]


def test_disjoint_boxes_are_all_kept_sorted_by_score():
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], dtype=float)
    scores = np.array([0.1, 0.7, 0.4])

    keep = non_max_suppression(boxes, scores, 0.5)

    assert keep.dtype == np.int64
    assert keep.tolist() == [1, 2, 0]


def test_equal_scores_keep_index_order():
    boxes = np.array([[2 * i, 0, 2 * i + 1, 1] for i in range(40)], dtype=float)
    scores = np.full(40, 0.5)
    scores[::3] = 0.9

    keep = non_max_suppression(boxes, scores, 0.5)

    assert keep.tolist() == list(range(0, 40, 3)) + [i for i in range(40) if i % 3]


def test_suppression_needs_overlap_strictly_above_threshold():
    boxes = np.array([[0, 0, 2, 2], [0, 0, 1, 2]], dtype=float)  # IoU exactly 0.5
    scores = np.array([0.9, 0.8])

    assert non_max_suppression(boxes, scores, 0.5).tolist() == [0, 1]
    assert non_max_suppression(boxes, scores, 0.49).tolist() == [0]


def test_suppressed_box_does_not_suppress_others():
    # A-B and B-C overlap with IoU 1/3, A and C are disjoint
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]], dtype=float)
    scores = np.array([0.9, 0.8, 0.7])

    assert non_max_suppression(boxes, scores, 0.3).tolist() == [0, 2]
    assert non_max_suppression(boxes, scores, 0.4).tolist() == [0, 1, 2]


def test_max_detections_keeps_the_best():
    boxes = np.array([[i * 10, 0, i * 10 + 5, 5] for i in range(4)], dtype=float)
    scores = np.array([0.3, 0.9, 0.1, 0.6])

    assert non_max_suppression(boxes, scores, 0.5, max_detections=2).tolist() == [1, 3]
    assert non_max_suppression(boxes, scores, 0.5, max_detections=0).tolist() == []
    assert non_max_suppression(boxes, scores, 0.5, max_detections=10).tolist() == [1, 3, 0, 2]


def test_empty_input_gives_empty_result():
    keep = non_max_suppression(np.zeros((0, 4)), np.zeros(0), 0.5)

    assert keep.dtype == np.int64 and keep.shape == (0,)


def test_ios_suppresses_a_window_inside_a_better_one_where_iou_keeps_it():
    boxes = np.array([[0, 0, 100, 100], [10, 10, 40, 40]], dtype=float)  # IoU 0.09, IoS 1

    assert non_max_suppression(boxes, np.array([0.9, 0.8]), 0.5).tolist() == [0, 1]
    assert non_max_suppression(boxes, np.array([0.9, 0.8]), 0.5, metric="ios").tolist() == [0]
    assert non_max_suppression(boxes, np.array([0.7, 0.8]), 0.5, metric="ios").tolist() == [1]


def test_ios_keeps_boxes_that_only_touch():
    boxes = np.array([[0, 0, 100, 100], [90, 0, 120, 30]], dtype=float)  # IoS 10*30/900

    assert non_max_suppression(boxes, np.array([0.9, 0.8]), 0.5, metric="ios").tolist() == [0, 1]


@pytest.mark.parametrize(
    ("boxes", "scores", "kwargs", "message"),
    [
        (np.zeros((2, 3)), np.zeros(2), {}, r"boxes must have shape \(N, 4\), got \(2, 3\)"),
        (np.zeros((2, 4)), np.zeros(3), {}, r"scores must have shape \(2,\), got \(3,\)"),
        (np.zeros((1, 4)), np.array([np.nan]), {}, "boxes and scores must be finite"),
        (np.array([[2, 0, 1, 1]]), np.ones(1), {}, "boxes must satisfy x0 <= x1 and y0 <= y1"),
        (np.zeros((1, 4)), np.ones(1), {"iou_threshold": 1.5}, r"must be in \[0, 1\], got 1.5"),
        (np.zeros((1, 4)), np.ones(1), {"max_detections": -1}, "must be >= 0 or None, got -1"),
        (np.zeros((1, 4)), np.ones(1), {"metric": "giou"}, "metric must be 'iou' or 'ios'"),
    ],
)
def test_non_max_suppression_rejects_bad_arguments(boxes, scores, kwargs, message):
    arguments = {"iou_threshold": 0.5, **kwargs}
    with pytest.raises(ValueError, match=message):
        non_max_suppression(boxes, scores, **arguments)


def test_batched_nms_never_suppresses_across_classes():
    boxes = np.array([[0, 0, 10, 10]] * 4, dtype=float)
    scores = np.array([0.5, 0.9, 0.8, 0.6])
    class_ids = np.array([0, 0, 1, 1])

    assert batched_nms(boxes, scores, class_ids, 0.5).tolist() == [1, 2]
    assert non_max_suppression(boxes, scores, 0.5).tolist() == [1]


def test_batched_nms_sorts_all_classes_by_score_and_caps_the_total():
    boxes = np.array(
        [[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60], [51, 51, 60, 60]],
        dtype=float,
    )
    scores = np.array([0.4, 0.3, 0.95, 0.7, 0.8])
    class_ids = np.array([3, 3, 7, 3, 3])

    assert batched_nms(boxes, scores, class_ids, 0.5).tolist() == [2, 4, 0]
    assert batched_nms(boxes, scores, class_ids, 0.5, max_detections=2).tolist() == [2, 4]


def test_batched_nms_with_ios_metric():
    boxes = np.array([[0, 0, 100, 100], [10, 10, 40, 40], [10, 10, 40, 40]], dtype=float)
    scores = np.array([0.9, 0.8, 0.7])
    class_ids = np.array(["dog", "dog", "cat"])

    assert batched_nms(boxes, scores, class_ids, 0.5, metric="ios").tolist() == [0, 2]
    assert batched_nms(boxes, scores, class_ids, 0.5).tolist() == [0, 1, 2]


def test_batched_nms_empty_and_bad_class_ids():
    assert batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.5).tolist() == []
    with pytest.raises(ValueError, match=r"class_ids must have shape \(2,\), got \(3,\)"):
        batched_nms(np.zeros((2, 4)), np.zeros(2), np.zeros(3), 0.5)
