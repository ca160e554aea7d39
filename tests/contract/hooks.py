"""Schemathesis hooks: image uploads are real images of every format Argos reads.

A schema can say that a body is an image, not how to make one, so Schemathesis is taught
here: small Pillow-made images of random size, mode, pixels and EXIF orientation.
"""

from __future__ import annotations

import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image

from service.formats import FORMATS
from service.http.openapi import RAW_MEDIA_TYPES

# Pillow modes each format can store.
MODES = {
    "JPEG": ["RGB", "L", "CMYK"],
    "PNG": ["RGB", "RGBA", "L", "LA", "P", "1", "I;16"],
    "BMP": ["RGB", "L", "P", "1"],
    "GIF": ["P", "L"],
    "WEBP": ["RGB", "RGBA"],
    "TIFF": ["RGB", "RGBA", "L", "CMYK", "1", "I;16"],
}


@st.composite
def encoded_images(draw: st.DrawFn, pillow_format: str) -> bytes:
    """One image in ``pillow_format``, up to 96 pixels a side."""
    mode = draw(st.sampled_from(MODES[pillow_format]))
    size = (draw(st.integers(1, 96)), draw(st.integers(1, 96)))
    length = size[0] * size[1] * 3
    pattern = draw(st.binary(min_size=3, max_size=64))
    pixels = (pattern * (length // len(pattern) + 1))[:length]
    image = Image.frombytes("RGB", size, pixels).convert(mode)
    options = {}
    if pillow_format in ("JPEG", "WEBP", "PNG", "TIFF") and draw(st.booleans()):
        exif = Image.Exif()
        exif[0x0112] = draw(st.integers(1, 8))  # orientation
        options["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    image.save(buffer, format=pillow_format, **options)
    return buffer.getvalue()


any_image = st.one_of(*(encoded_images(f.pillow) for f in FORMATS))
for image_format in FORMATS:
    schemathesis.openapi.media_type(image_format.media_type, encoded_images(image_format.pillow))
for media_type in set(RAW_MEDIA_TYPES) - {f.media_type for f in FORMATS}:
    schemathesis.openapi.media_type(media_type, any_image)
