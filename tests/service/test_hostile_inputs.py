"""Uploads built to cost memory or time: each is refused or decoded within the budget.

Every file is generated on the fly (see :mod:`tests.service.hostile`) and decoded in a
fresh interpreter, whose peak resident memory growth and time are measured.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.card import Preprocessing
from service.errors import ImageTooLarge, InvalidImage
from service.formats import FORMATS
from service.preprocessing import (
    DEFAULT_MAX_DECODED_BYTES,
    decoded_bytes,
    load_rgb,
    open_image,
    prepare,
)
from tests.service.hostile import ico_around, measure_decode, png

MAX_GROWTH_MB = 400
MAX_SECONDS = 10
SPEC = Preprocessing(input_size=(224, 224), resize="center_crop", crop_pct=0.875)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_ico_hiding_a_huge_png_is_refused_without_decoding(tmp_path: Path) -> None:
    upload = ico_around(png(40_000, 40_000, bit_depth=1))
    assert len(upload) < 250_000
    result = measure_decode(upload, tmp_path)
    assert result["outcome"].startswith("InvalidImage: ")
    assert "send JPEG, PNG, BMP, GIF, WEBP, TIFF" in result["outcome"]
    assert result["grown_mb"] < 50
    assert result["seconds"] < 1


@pytest.mark.parametrize("full", [False, True], ids=["classify", "detect"])
def test_sixteen_bit_greyscale_under_the_pixel_limit_fits_the_budget(
    tmp_path: Path, full: bool
) -> None:
    upload = png(7000, 7000, bit_depth=16)
    assert len(upload) < 100_000
    result = measure_decode(upload, tmp_path, full=full)
    assert result["outcome"] == "ok"
    assert result["grown_mb"] < MAX_GROWTH_MB
    assert result["seconds"] < MAX_SECONDS


@pytest.mark.parametrize(
    ("width", "height", "bit_depth", "colour_type"),
    [(7000, 7000, 1, 0), (6000, 6000, 8, 6), (8000, 6000, 8, 2)],
    ids=["1-bit", "rgba", "rgb-48mp"],
)
def test_large_uploads_decode_for_detection_within_the_budget(
    tmp_path: Path, width: int, height: int, bit_depth: int, colour_type: int
) -> None:
    upload = png(width, height, bit_depth=bit_depth, colour_type=colour_type)
    result = measure_decode(upload, tmp_path, full=True)
    assert result["outcome"] == "ok"
    assert result["grown_mb"] < MAX_GROWTH_MB
    assert result["seconds"] < MAX_SECONDS


def test_decode_budget_refuses_before_decoding_and_says_what_it_got() -> None:
    image = open_image(png(3000, 2000, bit_depth=16), max_pixels=50_000_000)
    assert decoded_bytes(image) == 3000 * 2000 * 2
    with pytest.raises(
        ImageTooLarge,
        match=r"\(3000x2000, mode I;16\) decodes to 12,000,000 bytes; the limit is 1,000,000",
    ):
        load_rgb(image, max_decoded_bytes=1_000_000)
    assert image.tile  # not a tile was decoded


def test_decode_budget_counts_bands_and_sample_size() -> None:
    sizes = {"1": 1, "L": 1, "P": 1, "I;16": 2, "LA": 2, "RGB": 3, "RGBA": 4, "I": 4, "F": 4}
    for mode, per_pixel in sizes.items():
        assert decoded_bytes(Image.new(mode, (10, 3))) == 30 * per_pixel, mode
    assert DEFAULT_MAX_DECODED_BYTES >= 50_000_000 * 3  # a 50 MP photo in 8-bit RGB fits


def test_a_jpeg_is_budgeted_at_the_size_it_is_drafted_to() -> None:
    photo = encode(Image.new("RGB", (4000, 3000), (200, 100, 50)), "JPEG")
    rgb = load_rgb(open_image(photo, max_pixels=50_000_000), SPEC, max_decoded_bytes=4_000_000)
    assert rgb.size == (500, 375)


def test_formats_outside_the_table_are_not_opened() -> None:
    for fmt in ("ICO", "TGA", "PCX", "PPM"):
        data = encode(Image.new("RGB", (16, 16)), fmt)
        with pytest.raises(InvalidImage, match="is not an image format Argos can read"):
            open_image(data, max_pixels=1000)
    for image_format in FORMATS:
        data = encode(Image.new("RGB", (16, 16), (10, 200, 30)), image_format.pillow)
        assert open_image(data, max_pixels=1000).format == image_format.pillow


def test_pillow_guard_stays_armed_behind_the_pixel_limit() -> None:
    assert Image.MAX_IMAGE_PIXELS is not None
    assert Image.MAX_IMAGE_PIXELS >= 50_000_000
    huge = png(40_000, 40_000, bit_depth=1)  # past Pillow's guard as well as the limit
    with pytest.raises(ImageTooLarge, match=r"is 1,600,000,000 pixels; the limit is 50,000,000"):
        open_image(huge, max_pixels=50_000_000)


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_wide_modes_over_several_strips_convert_like_one_piece(mode: str) -> None:
    ramp = np.linspace(0, 65535, 3000 * 700).reshape(700, 3000)
    if mode == "F":
        image = Image.fromarray((ramp / 65535).astype(np.float32), "F")
    elif mode == "I":
        image = Image.fromarray(ramp.astype(np.int32), "I")
    else:
        image = Image.fromarray(ramp.astype(np.uint16)).convert("I;16")
    grey = np.asarray(load_rgb(image))[..., 0].astype(int)
    np.testing.assert_allclose(grey, np.rint(ramp / 257), atol=1)


def test_transparency_over_several_strips_is_composited_everywhere() -> None:
    image = Image.new("P", (2000, 1200), 0)
    image.putpalette([0, 0, 0] * 256)
    out = np.asarray(load_rgb(open_image(encode(image, "PNG", transparency=0), max_pixels=10**7)))
    assert out.min() == 255
    rgba = Image.new("RGBA", (2000, 1200), (0, 0, 255, 128))
    out = np.asarray(load_rgb(open_image(encode(rgba, "PNG"), max_pixels=10**7)))
    assert (np.abs(out.astype(int) - (127, 127, 255)) <= 1).all()


def test_reducing_a_large_upload_first_stays_close_to_a_full_decode() -> None:
    y, x = np.mgrid[0:2400, 0:3200]
    smooth = np.stack([x * 255 / 3200, y * 255 / 2400, 128 + 100 * np.sin(x / 90)], axis=-1)
    data = encode(Image.fromarray(smooth.astype(np.uint8)), "PNG")
    reduced = load_rgb(open_image(data, max_pixels=10**7), SPEC)
    assert reduced.size == (3200 // 9 + 1, 2400 // 9 + 1)
    fast = prepare(open_image(data, max_pixels=10**7), SPEC).astype(float)
    full = prepare(open_image(data, max_pixels=10**7), SPEC, draft=False).astype(float)
    assert np.abs(fast - full).mean() < 2


def test_orientation_is_applied_to_a_reduced_png() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    left_red = np.zeros((1000, 3000, 3), np.uint8)
    left_red[:, :1500] = (255, 0, 0)
    data = encode(Image.fromarray(left_red), "PNG", exif=exif)
    rgb = np.asarray(load_rgb(open_image(data, max_pixels=10**7), SPEC))
    assert rgb.shape[0] > rgb.shape[1]
    top, bottom = rgb[: rgb.shape[0] // 2 - 5], rgb[rgb.shape[0] // 2 + 5 :]
    assert (top[..., 0] > 200).all() and (bottom[..., 0] < 50).all()
