"""Bytes → validated image → model input, driven only by the model card.

The service, the export parity check and the tests all go through these functions, so
what the model saw at export is what it sees in production.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.card import Preprocessing
from service.errors import EmptyBody, ImageTooLarge, InvalidImage

Box = tuple[float, float, float, float]

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
_EXIF_ORIENTATION = 0x0112
_QUARTER_TURNS = {5, 6, 7, 8}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_BACKGROUND = (255, 255, 255)

# open_image() enforces the configured pixel limit itself, with a message that says what
# was received; Pillow's fixed global guard would pre-empt it with its own.
Image.MAX_IMAGE_PIXELS = None


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Identify an upload and check its size without decoding its pixels."""
    if not data:
        raise EmptyBody("the request carried no image bytes")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InvalidImage(
            f"the upload ({len(data)} bytes, starting {data[:8]!r}) is not an image format "
            "Argos can read; send JPEG, PNG, BMP, GIF, WebP or TIFF"
        ) from None
    except Exception as error:  # Pillow raises many types on hostile headers
        raise InvalidImage(f"the image header could not be read: {error}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImage(f"the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image is {width}x{height} = {width * height:,} pixels; "
            f"the limit is {max_pixels:,}. Downscale it before sending"
        )
    return image


def load_rgb(
    image: Image.Image, spec: Preprocessing | None = None, *, draft: bool = True
) -> Image.Image:
    """Decode the first frame upright and in 8-bit RGB.

    With ``spec`` and ``draft``, JPEGs are decoded at the smallest DCT scale that still
    covers the model input, which is several times faster on large photos.
    """
    try:
        if draft and spec is not None and image.format == "JPEG":
            quarter_turned = image.getexif().get(_EXIF_ORIENTATION) in _QUARTER_TURNS
            image.draft(image.mode, _draft_size(image.size, spec, quarter_turned))
        image.seek(0)
        image.load()
        upright = ImageOps.exif_transpose(image)
        return to_rgb(upright)
    except Exception as error:  # truncated data, bad tables, unsupported codecs, ...
        raise InvalidImage(f"the image data could not be decoded: {error}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited over white."""
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "F":
        return _to_rgb_from_wide(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _to_rgb_from_wide(image: Image.Image) -> Image.Image:
    """16-bit integer greyscale scales 0..65535 to 0..255; float greyscale in 0..1 scales
    to 0..255 and any other float range is clipped to 0..255."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode != "F":
        scale = 1 / 257
    else:
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0
    grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def resize_to_input(rgb: Image.Image, spec: Preprocessing, region: Box | None = None) -> np.ndarray:
    """Resize ``region`` of an RGB image (default: all of it) as the card says.

    Returns a ``(height, width, 3)`` uint8 array; scaling to the network's range happens
    inside the exported graph.
    """
    left, top, right, bottom = region or (0.0, 0.0, float(rgb.width), float(rgb.height))
    if spec.resize == "center_crop":
        left, top, right, bottom = center_crop_box((left, top, right, bottom), spec)
    resized = rgb.resize(
        (spec.width, spec.height), _RESAMPLE[spec.interpolation], box=(left, top, right, bottom)
    )
    return np.asarray(resized, dtype=np.uint8)


def prepare(image: Image.Image, spec: Preprocessing, *, draft: bool = True) -> np.ndarray:
    """An opened image → the model's input array for one image."""
    return resize_to_input(load_rgb(image, spec, draft=draft), spec)


def prepare_bytes(data: bytes, spec: Preprocessing, *, max_pixels: int) -> np.ndarray:
    """Upload bytes → the model's input array; raises :class:`ArgosError` on bad input."""
    return prepare(open_image(data, max_pixels=max_pixels), spec)


def scale_image(rgb: Image.Image, factor: float, spec: Preprocessing) -> np.ndarray:
    """The whole image scaled by ``factor`` with the card's interpolation, as (1, H, W, 3)."""
    size = (max(1, round(rgb.width * factor)), max(1, round(rgb.height * factor)))
    return np.asarray(rgb.resize(size, _RESAMPLE[spec.interpolation]), dtype=np.uint8)[None]


def stack(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Per-image arrays → one NHWC batch."""
    return np.stack(arrays, axis=0)


def center_crop_box(box: Box, spec: Preprocessing) -> Box:
    """The region that ``resize short side to size / crop_pct, then centre crop`` keeps."""
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    scale = min(spec.height, spec.width) / spec.crop_pct / min(width, height)
    crop_width, crop_height = spec.width / scale, spec.height / scale
    x0 = left + (width - crop_width) / 2
    y0 = top + (height - crop_height) / 2
    return (x0, y0, x0 + crop_width, y0 + crop_height)


def _draft_size(
    size: tuple[int, int], spec: Preprocessing, quarter_turned: bool
) -> tuple[int, int]:
    """The smallest decoded size (in stored orientation) that still covers the input."""
    width, height = size
    target_width, target_height = spec.width, spec.height
    if quarter_turned:
        target_width, target_height = target_height, target_width
    if spec.resize == "squash":
        return target_width, target_height
    scale = min(target_width, target_height) / spec.crop_pct / min(width, height)
    return math.ceil(width * scale), math.ceil(height * scale)
