"""Decoding and preprocessing: odd modes, orientation, hostile files, geometry."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.card import Preprocessing
from service.errors import EmptyBody, ImageTooLarge, InvalidImage
from service.preprocessing import load_rgb, open_image, prepare, prepare_bytes, resize_to_input

SQUASH = Preprocessing(input_size=(32, 48), resize="squash")
CROP = Preprocessing(input_size=(224, 224), resize="center_crop", crop_pct=0.875)
LIMIT = 10_000_000


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def decode(data: bytes, spec: Preprocessing = SQUASH) -> np.ndarray:
    return prepare_bytes(data, spec, max_pixels=LIMIT)


def halves(width: int = 64, height: int = 32) -> Image.Image:
    """Left half red, right half blue."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] = (255, 0, 0)
    pixels[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(pixels)


def test_output_is_uint8_hwc_of_the_card_size() -> None:
    out = decode(encode(halves(), "PNG"))
    assert out.shape == (32, 48, 3)
    assert out.dtype == np.uint8


@pytest.mark.parametrize(
    ("mode", "fmt", "expected"),
    [
        ("L", "PNG", (128, 128, 128)),
        ("1", "PNG", (255, 255, 255)),
        ("CMYK", "JPEG", None),
        ("P", "GIF", None),
        ("I;16", "PNG", (128, 128, 128)),
        ("I", "TIFF", (128, 128, 128)),
        ("F", "TIFF", (128, 128, 128)),
    ],
)
def test_every_mode_becomes_rgb(mode: str, fmt: str, expected: tuple[int, int, int] | None) -> None:
    grey = Image.new("L", (40, 30), 128)
    values = {"I;16": 128 * 257, "I": 128 * 257, "F": 128 / 255}
    if mode in values:
        image = Image.new(mode, (40, 30), values[mode])
    elif mode == "1":
        image = Image.new("1", (40, 30), 1)
    else:
        image = grey.convert(mode)
    out = decode(encode(image, fmt))
    assert out.shape == (32, 48, 3)
    if expected is not None:
        assert np.abs(out.astype(int) - expected).max() <= 2, mode


def test_cmyk_keeps_its_colour() -> None:
    red = Image.new("RGB", (40, 30), (255, 0, 0)).convert("CMYK")
    out = decode(encode(red, "JPEG", quality=95))
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 60 and out[..., 2].mean() < 60


def test_transparency_is_composited_over_white() -> None:
    clear = Image.new("RGBA", (40, 30), (255, 0, 0, 0))
    assert decode(encode(clear, "PNG")).min() >= 253
    half = Image.new("LA", (40, 30), (0, 128))
    assert 120 <= decode(encode(half, "PNG")).mean() <= 135


def test_palette_with_transparent_index_is_composited() -> None:
    image = Image.new("P", (40, 30), 0)
    image.putpalette([0, 0, 0] * 256)
    out = decode(encode(image, "PNG", transparency=0))
    assert out.min() >= 253


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    out = decode(data)
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 50


@pytest.mark.parametrize(
    ("orientation", "red_side"), [(1, "left"), (3, "right"), (6, "top"), (8, "bottom")]
)
def test_exif_orientation_is_applied(orientation: int, red_side: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(halves(), "JPEG", quality=95, exif=exif)
    out = prepare_bytes(data, Preprocessing(input_size=(64, 64), resize="squash"), max_pixels=LIMIT)
    red = out[..., 0].astype(int) > 128
    regions = {
        "left": red[:, :32],
        "right": red[:, 32:],
        "top": red[:32],
        "bottom": red[32:],
    }
    assert regions[red_side].mean() > 0.9, orientation


def test_empty_bytes_are_refused() -> None:
    with pytest.raises(EmptyBody):
        decode(b"")


def test_non_image_is_refused_with_what_was_received() -> None:
    with pytest.raises(InvalidImage, match=r"18 bytes, starting b'%PDF-1.4'"):
        decode(b"%PDF-1.4 not image")


def test_truncated_jpeg_is_refused() -> None:
    data = encode(halves(400, 300), "JPEG")
    with pytest.raises(InvalidImage, match="could not be decoded|header"):
        decode(data[: len(data) // 2])


def test_corrupt_png_is_refused() -> None:
    data = bytearray(encode(halves(), "PNG"))
    data[60:80] = b"\x00" * 20
    with pytest.raises(InvalidImage):
        decode(bytes(data))


def test_pixel_limit_refuses_before_decoding() -> None:
    bomb = encode(Image.new("1", (12_000, 12_000)), "PNG")
    assert len(bomb) < 100_000
    with pytest.raises(
        ImageTooLarge, match=r"12000x12000 = 144,000,000 pixels; the limit is 10,000,000"
    ):
        open_image(bomb, max_pixels=LIMIT)


def test_squash_ignores_aspect_ratio() -> None:
    out = decode(encode(halves(64, 32), "PNG"))
    assert (out[:, :22, 0] > 200).all() and (out[:, 26:, 2] > 200).all()


def test_center_crop_matches_resize_then_crop() -> None:
    y, x = np.mgrid[0:300, 0:400]
    smooth = np.stack([x * 255 / 400, y * 255 / 300, 128 + 100 * np.sin(x / 20)], axis=-1)
    image = Image.fromarray(smooth.astype(np.uint8))
    reference = image.resize((341, 256), Image.Resampling.BILINEAR)
    left, top = (341 - 224) // 2, (256 - 224) // 2
    expected = np.asarray(reference.crop((left, top, left + 224, top + 224)), dtype=float)
    actual = resize_to_input(image, CROP).astype(float)
    assert actual.shape == (224, 224, 3)
    assert np.abs(actual - expected).mean() < 1.5


def test_jpeg_draft_stays_close_to_full_decode(images: Path) -> None:
    with Image.open(images / "sleepy_cat.jpg") as image:
        fast = prepare(image, CROP, draft=True).astype(float)
    with Image.open(images / "sleepy_cat.jpg") as image:
        full = prepare(image, CROP, draft=False).astype(float)
    assert np.abs(fast - full).mean() < 3


def test_draft_decodes_fewer_pixels(images: Path) -> None:
    with Image.open(images / "sleepy_cat.jpg") as image:
        rgb = load_rgb(image, CROP)
    assert min(rgb.size) >= 256 and rgb.size[0] < 1800
