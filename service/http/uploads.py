"""Getting image bytes out of a request: a multipart ``image`` field or a raw body."""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.requests import Request

from service.errors import EmptyBody, MissingImage, PayloadTooLarge, UnsupportedMediaType

IMAGE_FIELD = "image"
_HOW_TO_SEND = (
    f"send multipart/form-data with a file field {IMAGE_FIELD!r}, "
    "or the image itself as the body with Content-Type image/jpeg, image/png, ..."
)


async def read_image_upload(request: Request, max_bytes: int) -> bytes:
    """The uploaded image's bytes; raises an :class:`ArgosError` saying what was wrong."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise PayloadTooLarge(_too_large(int(declared), max_bytes))
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        data = await _read_form_field(request, max_bytes)
    elif media_type.startswith("image/") or media_type == "application/octet-stream":
        data = await _read_body(request, max_bytes)
    elif not media_type:
        raise UnsupportedMediaType(f"the request has no Content-Type; {_HOW_TO_SEND}")
    else:
        raise UnsupportedMediaType(f"Content-Type {media_type!r} is not accepted; {_HOW_TO_SEND}")
    if not data:
        raise EmptyBody(f"the uploaded image is empty (0 bytes); {_HOW_TO_SEND}")
    return data


async def _read_form_field(request: Request, max_bytes: int) -> bytes:
    try:
        form = await request.form(max_files=4, max_fields=32)
    except Exception as error:
        raise MissingImage(
            f"the multipart body could not be parsed ({error}); {_HOW_TO_SEND}"
        ) from None
    try:
        upload = form.get(IMAGE_FIELD)
        if upload is None:
            raise MissingImage(
                f"the multipart body has no {IMAGE_FIELD!r} field "
                f"(it has {sorted(form.keys()) or 'no fields'}); {_HOW_TO_SEND}"
            )
        if not isinstance(upload, UploadFile):
            raise MissingImage(f"the {IMAGE_FIELD!r} field is text, not a file; {_HOW_TO_SEND}")
        data = await upload.read(max_bytes + 1)
    finally:
        await form.close()
    if len(data) > max_bytes:
        raise PayloadTooLarge(_too_large(len(data), max_bytes, at_least=True))
    return data


async def _read_body(request: Request, max_bytes: int) -> bytes:
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > max_bytes:
            raise PayloadTooLarge(_too_large(len(data), max_bytes, at_least=True))
    return bytes(data)


def _too_large(size: int, limit: int, *, at_least: bool = False) -> str:
    amount = f"at least {size:,}" if at_least else f"{size:,}"
    return f"the upload is {amount} bytes; the limit is {limit:,} bytes"
