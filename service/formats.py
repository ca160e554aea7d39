"""The image formats Argos reads: one table for the decoder, the uploads, the clients,
training data discovery and the load tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath


@dataclass(frozen=True, slots=True)
class ImageFormat:
    pillow: str  # Pillow's format name, as given to ``Image.open(formats=...)``
    media_type: str
    suffixes: tuple[str, ...]
    magic: tuple[bytes, ...]  # prefixes of an encoded file (WebP is checked apart)


FORMATS: tuple[ImageFormat, ...] = (
    ImageFormat("JPEG", "image/jpeg", (".jpg", ".jpeg"), (b"\xff\xd8\xff",)),
    ImageFormat("PNG", "image/png", (".png",), (b"\x89PNG\r\n\x1a\n",)),
    ImageFormat("BMP", "image/bmp", (".bmp",), (b"BM",)),
    ImageFormat("GIF", "image/gif", (".gif",), (b"GIF87a", b"GIF89a")),
    ImageFormat("WEBP", "image/webp", (".webp",), ()),
    ImageFormat("TIFF", "image/tiff", (".tif", ".tiff"), (b"II*\x00", b"MM\x00*")),
)
PILLOW_FORMATS: tuple[str, ...] = tuple(f.pillow for f in FORMATS)
NAMES = ", ".join(PILLOW_FORMATS)
MEDIA_TYPES: dict[str, str] = {s: f.media_type for f in FORMATS for s in f.suffixes}
"""File suffix (lower case, with the dot) → media type."""


def is_image_path(path: str | PurePath) -> bool:
    """Whether a file name has the suffix of a format Argos reads."""
    return PurePath(path).suffix.lower() in MEDIA_TYPES


def sniff_media_type(data: bytes) -> str:
    """Media type of encoded image bytes from their magic prefix, else octet-stream."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for image_format in FORMATS:
        if data.startswith(image_format.magic):
            return image_format.media_type
    return "application/octet-stream"
