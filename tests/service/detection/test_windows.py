from __future__ import annotations

import random
import tracemalloc

import numpy as np
import pytest

from service.detection.windows import window_boxes, window_count, window_specs

GEOMETRIES = [
    # (height, width, window, stride)
    (480, 640, 224, 32),
    (341, 512, 224, 100),
    (97, 131, 13, 7),
    (5, 7, 3, 2),
    (8, 8, 3, 3),
    (1, 1, 1, 1),
    (10, 40, 15, 10),
    (300, 20, 64, 64),
]


def every_box(height: int, width: int, fractions: list[float], overlap: float) -> np.ndarray:
    specs = window_specs(height, width, fractions, overlap)
    return np.concatenate([window_boxes(height, width, w, s) for w, s in specs])


def every_count(height: int, width: int, fractions: list[float], overlap: float) -> int:
    specs = window_specs(height, width, fractions, overlap)
    return sum(window_count(height, width, w, s) for w, s in specs)


def _coverage(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


@pytest.mark.parametrize(("height", "width", "window", "stride"), GEOMETRIES)
def test_window_boxes_cover_every_pixel_and_stay_inside(height, width, window, stride):
    boxes = window_boxes(height, width, window, stride)

    assert boxes.dtype == np.int64 and boxes.shape[1] == 4
    assert _coverage(boxes, height, width).all()
    assert (boxes[:, :2] >= 0).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] - boxes[:, 0] == min(window, width)).all()
    assert (boxes[:, 3] - boxes[:, 1] == min(window, height)).all()
    assert len(np.unique(boxes, axis=0)) == len(boxes)
    assert window_count(height, width, window, stride) == len(boxes)


@pytest.mark.parametrize(("height", "width", "window", "stride"), GEOMETRIES)
def test_last_window_of_each_row_and_column_ends_at_the_border(height, width, window, stride):
    boxes = window_boxes(height, width, window, stride)

    for y0 in np.unique(boxes[:, 1]):
        assert boxes[boxes[:, 1] == y0, 2].max() == width
    for x0 in np.unique(boxes[:, 0]):
        assert boxes[boxes[:, 0] == x0, 3].max() == height


@pytest.mark.parametrize(("height", "width", "window", "stride"), GEOMETRIES)
def test_starts_advance_by_stride_except_the_border_window(height, width, window, stride):
    boxes = window_boxes(height, width, window, stride)

    for starts in (np.unique(boxes[:, 0]), np.unique(boxes[:, 1])):
        steps = np.diff(starts)
        assert (steps[:-1] == stride).all()
        assert (steps <= stride).all()


def test_small_grid_by_hand():
    boxes = window_boxes(height=5, width=7, window=3, stride=2)

    assert boxes.tolist() == [
        [0, 0, 3, 3], [2, 0, 5, 3], [4, 0, 7, 3],
        [0, 2, 3, 5], [2, 2, 5, 5], [4, 2, 7, 5],
    ]  # fmt: skip


def test_border_window_is_shifted_back_not_cut():
    boxes = window_boxes(height=3, width=8, window=3, stride=2)

    assert boxes[:, 0].tolist() == [0, 2, 4, 5]
    assert boxes[-1].tolist() == [5, 0, 8, 3]


def test_known_count_640x480_window_224_stride_32():
    # x: 0..416 step 32 -> 14 starts, y: 0..256 step 32 -> 9 starts, both end on the border
    assert window_count(480, 640, 224, 32) == 14 * 9 == 126
    assert len(window_boxes(480, 640, 224, 32)) == 126


def test_known_count_with_border_windows_added():
    # x: 0, 20 (20 = 50 - 30, ends on border); y: 0, 20, 40, 60 + border 70
    assert window_count(height=100, width=50, window=30, stride=20) == 2 * 5


def test_window_larger_than_image_is_clamped_to_the_image():
    assert window_boxes(10, 20, 50, 10).tolist() == [[0, 0, 20, 10]]


def test_window_larger_than_one_side_only():
    boxes = window_boxes(height=10, width=40, window=15, stride=10)

    assert boxes.tolist() == [[0, 0, 15, 10], [10, 0, 25, 10], [20, 0, 35, 10], [25, 0, 40, 10]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 10, 3, 1), "height must be a positive integer, got 0"),
        ((10, -3, 3, 1), "width must be a positive integer, got -3"),
        ((10, 10, 2.5, 1), "window must be a positive integer, got 2.5"),
        ((10, 10, 3, True), "stride must be a positive integer, got True"),
        ((10, 10, 3, 4), r"stride \(4\) must not exceed window \(3\)"),
    ],
)
def test_window_boxes_rejects_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        window_boxes(*args)
    with pytest.raises(ValueError, match=message):
        window_count(*args)


def test_window_specs_use_short_side_and_round_half_up():
    # 0.5 * 225 = 112.5 -> 113; 113 * 0.5 = 56.5 -> 57
    assert window_specs(225, 300, [0.5], 0.5) == [(113, 57)]
    assert window_specs(480, 640, [1.0, 0.5], 0.75) == [(480, 120), (240, 60)]


def test_window_specs_stride_is_at_least_one():
    assert window_specs(10, 10, [0.1], 0.9) == [(1, 1)]


def test_sliding_windows_known_layout():
    boxes = every_box(480, 640, [1.0, 0.5], overlap=0.5)

    # 480 px windows, stride 240: x starts 0, 160 (border); 240 px, stride 120: 5 x 3
    assert len(boxes) == 2 + 15 == every_count(480, 640, [1.0, 0.5], 0.5)
    assert boxes[:2].tolist() == [[0, 0, 480, 480], [160, 0, 640, 480]]
    assert (boxes[2:, 2] - boxes[2:, 0] == 240).all()


@pytest.mark.parametrize(("height", "width"), [(480, 640), (929, 512), (37, 53)])
def test_sliding_windows_cover_every_pixel_at_every_size(height, width):
    fractions = [1.0, 0.6, 0.3]
    boxes = every_box(height, width, fractions, overlap=0.25)

    assert len(np.unique(boxes, axis=0)) == len(boxes)
    assert len(boxes) == every_count(height, width, fractions, 0.25)
    for window, _ in window_specs(height, width, fractions, 0.25):
        same_size = boxes[boxes[:, 2] - boxes[:, 0] == window]
        assert _coverage(same_size, height, width).all()


def test_fractions_rounding_to_one_size_are_deduplicated():
    # 0.5 * 3 = 1.5 -> 2 and 0.6 * 3 = 1.8 -> 2
    assert window_specs(3, 3, [0.5, 0.6], 0.0) == [(2, 2)]
    boxes = every_box(3, 3, [0.5, 0.6, 0.5], overlap=0.0)
    assert boxes.tolist() == [[0, 0, 2, 2], [1, 0, 3, 2], [0, 1, 2, 3], [1, 1, 3, 3]]
    assert every_count(3, 3, [0.5, 0.6, 0.5], 0.0) == 4


@pytest.mark.parametrize(
    ("fractions", "overlap", "message"),
    [
        ([], 0.5, "window_fractions must hold at least one fraction"),
        ([0.0], 0.5, r"window fractions must be in \(0, 1\], got 0.0"),
        ([0.5, 1.5], 0.5, r"window fractions must be in \(0, 1\], got 1.5"),
        ([-0.1], 0.5, r"window fractions must be in \(0, 1\], got -0.1"),
        ([float("nan")], 0.5, r"window fractions must be in \(0, 1\], got nan"),
        ([0.5], 1.0, r"overlap must be in \[0, 1\), got 1.0"),
        ([0.5], -0.1, r"overlap must be in \[0, 1\), got -0.1"),
    ],
)
def test_sliding_windows_rejects_bad_arguments(fractions, overlap, message):
    with pytest.raises(ValueError, match=message):
        every_box(480, 640, fractions, overlap)
    with pytest.raises(ValueError, match=message):
        every_count(480, 640, fractions, overlap)


def test_sliding_windows_rejects_bad_image_size():
    with pytest.raises(ValueError, match="height must be a positive integer, got 0"):
        every_box(0, 640, [0.5], 0.5)


def test_closed_form_count_matches_the_boxes_on_random_geometries():
    rng = random.Random(7)
    for _ in range(500):
        height, width = rng.randint(1, 300), rng.randint(1, 300)
        window = rng.randint(1, 320)
        stride = rng.randint(1, window)
        expected = len(window_boxes(height, width, window, stride))
        assert window_count(height, width, window, stride) == expected


def test_counting_a_huge_grid_allocates_nothing():
    # A 50-megapixel strip with 1-pixel windows: the boxes would take 1.6 GB.
    tracemalloc.start()
    try:
        count = window_count(1, 50_000_000, 1, 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 50_000_000
    assert peak < 64 * 1024
