"""Bytes → validated image → model input, driven only by the model card.

The service, the export parity check and the tests all go through these functions, so
what the model saw at export is what it sees in production.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageMode, UnidentifiedImageError

from service.card import Preprocessing
from service.errors import EmptyBody, ImageTooLarge, InvalidImage
from service.formats import NAMES, PILLOW_FORMATS

Box = tuple[float, float, float, float]

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
_EXIF_ORIENTATION = 0x0112
_QUARTER_TURNS = {5, 6, 7, 8}
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_WIDE_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_BACKGROUND = (255, 255, 255)
_STRIP_PIXELS = 1 << 20  # pixels converted at a time, so no full-size temporary is made

# Regions more than this many times the input size are box-reduced before resampling:
# several times faster on large detection windows, within 1-2 levels of a full resample.
_REDUCING_GAP = 3.0

DEFAULT_MAX_DECODED_BYTES = 150_000_000
"""Decoded bytes one upload may cost: a 50-megapixel 8-bit RGB image."""
FRAMES_READ = 1
"""Frames decoded per upload: the first; later frames of GIF, WebP, TIFF are never read."""

# open_image() enforces the configured limits itself, with messages that say what was
# received. Pillow's own guard stays armed, at the largest pixel limit Argos accepts, for
# any decoder path that might get past them.
Image.MAX_IMAGE_PIXELS = 500_000_000


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Identify an upload among the formats Argos reads and check its size, decoding no
    pixel."""
    if not data:
        raise EmptyBody("the request carried no image bytes")
    try:
        image = Image.open(io.BytesIO(data), formats=PILLOW_FORMATS)
    except UnidentifiedImageError:
        raise InvalidImage(
            f"the upload ({len(data)} bytes, starting {data[:8]!r}) is not an image format "
            f"Argos can read; send {NAMES}"
        ) from None
    except Image.DecompressionBombError as error:
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        received = f"{int(pixels[1]):,} pixels" if pixels else "too many pixels to decode"
        raise ImageTooLarge(
            f"the image is {received}; the limit is {max_pixels:,}. Downscale it before sending"
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


def decoded_bytes(image: Image.Image) -> int:
    """Bytes the frames Argos reads decode to: width x height x bands x bytes per sample."""
    width, height = image.size
    mode = ImageMode.getmode(image.mode)
    sample_bytes = max(1, np.dtype(mode.typestr).itemsize)
    return width * height * len(mode.bands) * sample_bytes * FRAMES_READ


def check_decode_budget(image: Image.Image, max_decoded_bytes: int) -> None:
    """Refuse an image whose pixels would take more than ``max_decoded_bytes`` to decode."""
    needed = decoded_bytes(image)
    if needed > max_decoded_bytes:
        width, height = image.size
        raise ImageTooLarge(
            f"the image ({width}x{height}, mode {image.mode}) decodes to {needed:,} bytes; "
            f"the limit is {max_decoded_bytes:,}. Send it smaller or in 8-bit colour"
        )


def load_rgb(
    image: Image.Image,
    spec: Preprocessing | None = None,
    *,
    draft: bool = True,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> Image.Image:
    """Decode the first frame upright and in 8-bit RGB, within a decoded-bytes budget.

    With ``spec`` and ``draft``, the image is decoded (JPEG: at the smallest DCT scale) or
    reduced to the smallest size that still covers the model input before any colour
    conversion, which is several times faster and smaller on large photos.
    """
    try:
        image.seek(0)
        if draft and spec is not None and image.format == "JPEG":
            turned = image.getexif().get(_EXIF_ORIENTATION) in _QUARTER_TURNS
            image.draft(image.mode, _draft_size(image.size, spec, turned))
        check_decode_budget(image, max_decoded_bytes)
        image.load()
        orientation = image.getexif().get(_EXIF_ORIENTATION)  # PNG reads it while decoding
        target = None
        if draft and spec is not None:
            target = _draft_size(image.size, spec, orientation in _QUARTER_TURNS)
        if image.mode in _WIDE_MODES:
            image = _wide_to_grey(image)
        rgb = to_rgb(image) if target is None else _rgb_reduced_to_cover(image, target)
    except ImageTooLarge:
        raise
    except Exception as error:  # truncated data, bad tables, unsupported codecs, ...
        raise InvalidImage(f"the image data could not be decoded: {error}") from None
    method = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return rgb.transpose(method) if method is not None else rgb


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited over white."""
    if image.mode == "RGB":
        return image
    if image.mode in _WIDE_MODES:
        image = _wide_to_grey(image)
    if image.mode == "P" and "transparency" in image.info:
        return _in_strips(image, _over_white)
    if image.mode in _ALPHA_MODES:
        return _in_strips(image, _over_white)
    return image.convert("RGB")


def _over_white(strip: Image.Image) -> Image.Image:
    rgba = strip.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _in_strips(image: Image.Image, convert: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """``convert`` applied to horizontal strips, so temporaries stay strip-sized."""
    width, height = image.size
    rows = max(1, _STRIP_PIXELS // width)
    first = convert(image.crop((0, 0, width, min(rows, height))))
    if rows >= height:
        return first
    out = Image.new(first.mode, image.size)
    out.paste(first, (0, 0))
    for top in range(rows, height, rows):
        out.paste(convert(image.crop((0, top, width, min(top + rows, height)))), (0, top))
    return out


def _wide_to_grey(image: Image.Image) -> Image.Image:
    """16- and 32-bit greyscale to 8-bit, strip by strip in integer or float32 arithmetic.

    Integer modes scale 0..65535 to 0..255 (rounded, larger values clip); float images in
    0..1 scale to 0..255 and any other float range is clipped to 0..255.
    """
    if image.mode == "F":
        high = image.getextrema()[1]
        scale = np.float32(255.0 if high <= 1.0 else 1.0)

        def narrow(values: np.ndarray) -> np.ndarray:
            return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)

    else:

        def narrow(values: np.ndarray) -> np.ndarray:
            clipped = np.clip(values, 0, 65535).astype(np.int32)
            return ((clipped + 128) // 257).astype(np.uint8)

    return _in_strips(image, lambda strip: Image.fromarray(narrow(np.asarray(strip)), "L"))


def _rgb_reduced_to_cover(image: Image.Image, target: tuple[int, int]) -> Image.Image:
    """8-bit RGB, shrunk by the largest whole factor that still covers ``target``.

    Strips of a whole number of reduction boxes are converted and box-averaged one at a
    time, so no full-size RGB copy of a large upload is ever made.
    """
    width, height = image.size
    factor = min(width // max(1, target[0]), height // max(1, target[1]))
    if factor < 2:
        return to_rgb(image)
    rows = factor * max(1, _STRIP_PIXELS // (width * factor))
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(top + rows, height)))
        out.paste(to_rgb(strip).reduce(factor), (0, top // factor))
    return out


def resize_to_input(rgb: Image.Image, spec: Preprocessing, region: Box | None = None) -> np.ndarray:
    """Resize ``region`` of an RGB image (default: all of it) as the card says.

    Returns a ``(height, width, 3)`` uint8 array; scaling to the network's range happens
    inside the exported graph.
    """
    resized = rgb.resize(
        (spec.width, spec.height),
        _RESAMPLE[spec.interpolation],
        box=model_region(region or (0.0, 0.0, float(rgb.width), float(rgb.height)), spec),
        reducing_gap=_REDUCING_GAP,
    )
    return np.asarray(resized, dtype=np.uint8)


def model_region(box: Box, spec: Preprocessing) -> Box:
    """The part of ``box`` that the model input shows: all of it (squash), or its centre
    crop."""
    return center_crop_box(box, spec) if spec.resize == "center_crop" else box


def prepare(image: Image.Image, spec: Preprocessing, *, draft: bool = True) -> np.ndarray:
    """An opened image → the model's input array for one image."""
    return resize_to_input(load_rgb(image, spec, draft=draft), spec)


@dataclass(frozen=True, slots=True)
class Prepared:
    """An upload made into the model's input."""

    pixels: np.ndarray
    """The model input, (height, width, 3) uint8."""
    size: tuple[int, int]
    """Width and height of the upright upload."""


def prepare_upload(
    data: bytes,
    spec: Preprocessing,
    *,
    max_pixels: int,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> Prepared:
    """Upload bytes → the model's input; raises :class:`ArgosError` on bad input."""
    image = open_image(data, max_pixels=max_pixels)
    width, height = image.size
    rgb = load_rgb(image, spec, max_decoded_bytes=max_decoded_bytes)
    if image.getexif().get(_EXIF_ORIENTATION) in _QUARTER_TURNS:  # read while decoding
        width, height = height, width
    return Prepared(resize_to_input(rgb, spec), (width, height))


def prepare_bytes(
    data: bytes,
    spec: Preprocessing,
    *,
    max_pixels: int,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> np.ndarray:
    """Upload bytes → the model's input array; raises :class:`ArgosError` on bad input."""
    return prepare_upload(
        data, spec, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes
    ).pixels


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
