"""Getting image bytes out of a request: a multipart ``image`` field or a raw body.

Both are read from the request stream, chunked or not, and counted as they arrive: a body
over the cap is refused as soon as the cap is passed, and nothing is spooled to disk. Every
byte read is charged to the worker's :class:`UploadBudget` until the request is answered,
so that many uploads at once cost bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from service.errors import (
    EmptyBody,
    MissingImage,
    Overloaded,
    PayloadTooLarge,
    UnsupportedMediaType,
)

IMAGE_FIELD = "image"
FORM_OVERHEAD_BYTES = 64 * 1024
"""What a multipart body may carry besides the image: boundaries, headers, small fields."""
MAX_FORM_PARTS = 36
_HOW_TO_SEND = (
    f"send multipart/form-data with a file field {IMAGE_FIELD!r}, "
    "or the image itself as the body with Content-Type image/jpeg, image/png, ..."
)


class UploadBudget:
    """The bytes of request bodies a worker holds at once: read, or being read, and not yet
    answered. Single event-loop use."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    @contextmanager
    def lease(self) -> Iterator[UploadLease]:
        """What one request holds, given back when it is answered."""
        lease = UploadLease(self)
        try:
            yield lease
        finally:
            self.held -= lease.held


class UploadLease:
    """One request's share of the :class:`UploadBudget`."""

    def __init__(self, budget: UploadBudget) -> None:
        self._budget = budget
        self.held = 0

    def take(self, size: int) -> None:
        """Charge ``size`` more bytes, or refuse the request with a 503."""
        budget = self._budget
        if budget.held + size > budget.limit:
            raise Overloaded(
                f"the server holds {budget.held:,} bytes of uploads, its limit is "
                f"{budget.limit:,}; retry shortly"
            )
        budget.held += size
        self.held += size


async def read_image_upload(request: Request, max_bytes: int, lease: UploadLease) -> bytes:
    """The uploaded image's bytes; raises an :class:`ArgosError` saying what was wrong."""
    declared = request.headers.get("content-length", "")
    if (
        declared.isascii()
        and declared.isdigit()
        and int(declared) > max_bytes + FORM_OVERHEAD_BYTES
    ):
        raise PayloadTooLarge(_too_large(int(declared), max_bytes))
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        data = await _read_form_field(request, content_type, max_bytes, lease)
    elif media_type.startswith("image/") or media_type == "application/octet-stream":
        data = await read_body(request, max_bytes, lease)
    elif not media_type:
        raise UnsupportedMediaType(f"the request has no Content-Type; {_HOW_TO_SEND}")
    else:
        raise UnsupportedMediaType(f"Content-Type {media_type!r} is not accepted; {_HOW_TO_SEND}")
    if not data:
        raise EmptyBody(f"the uploaded image is empty (0 bytes); {_HOW_TO_SEND}")
    return data


async def read_body(request: Request, max_bytes: int, lease: UploadLease) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``max_bytes``."""
    data = bytearray()
    async for chunk in request.stream():
        lease.take(len(chunk))
        data += chunk
        if len(data) > max_bytes:
            raise PayloadTooLarge(_too_large(len(data), max_bytes, at_least=True))
    return bytes(data)


async def _read_form_field(
    request: Request, content_type: str, max_bytes: int, lease: UploadLease
) -> bytes:
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise MissingImage(f"the multipart Content-Type has no boundary; {_HOW_TO_SEND}")
    form = ImageFieldReader(boundary, max_bytes)
    received = 0
    async for chunk in request.stream():
        lease.take(len(chunk))
        received += len(chunk)
        if received > max_bytes + FORM_OVERHEAD_BYTES:
            raise PayloadTooLarge(_too_large(received, max_bytes, at_least=True))
        form.feed(chunk)
    return form.image()


class ImageFieldReader:
    """Streams a multipart body, keeping only the ``image`` file field, up to a cap."""

    def __init__(self, boundary: bytes, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._names: list[str] = []
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._in_image = False
        self._image: bytearray | None = None
        self._text_image = False
        self._ended = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": lambda data, start, end: self._header_field.extend(
                    data[start:end]
                ),
                "on_header_value": lambda data, start, end: self._header_value.extend(
                    data[start:end]
                ),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_end": self._end,
            },
        )

    def feed(self, chunk: bytes) -> None:
        """Parse the next piece of the body; raises an :class:`ArgosError` on bad input."""
        try:
            self._parser.write(chunk)
        except MultipartParseError as error:
            raise MissingImage(
                f"the multipart body could not be parsed ({error}); {_HOW_TO_SEND}"
            ) from None

    def image(self) -> bytes:
        """The ``image`` file's bytes once the whole body has been fed."""
        if not self._ended:
            raise MissingImage(
                f"the multipart body ended before its closing boundary; {_HOW_TO_SEND}"
            )
        if self._image is not None:
            return bytes(self._image)
        if self._text_image:
            raise MissingImage(f"the {IMAGE_FIELD!r} field is text, not a file; {_HOW_TO_SEND}")
        raise MissingImage(
            f"the multipart body has no {IMAGE_FIELD!r} field "
            f"(it has {sorted(self._names) or 'no fields'}); {_HOW_TO_SEND}"
        )

    def _part_begin(self) -> None:
        if len(self._names) >= MAX_FORM_PARTS:
            raise MissingImage(
                f"the multipart body has more than {MAX_FORM_PARTS} parts; {_HOW_TO_SEND}"
            )
        self._disposition = b""
        self._in_image = False

    def _header_end(self) -> None:
        if bytes(self._header_field).strip().lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self._names.append(name)
        if name != IMAGE_FIELD or self._image is not None:
            return
        if b"filename" in options:
            self._in_image = True
            self._image = bytearray()
        else:
            self._text_image = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_image or self._image is None:
            return
        self._image += data[start:end]
        if len(self._image) > self._max_bytes:
            raise PayloadTooLarge(_too_large(len(self._image), self._max_bytes, at_least=True))

    def _end(self) -> None:
        self._ended = True


def _too_large(size: int, limit: int, *, at_least: bool = False) -> str:
    amount = f"at least {size:,}" if at_least else f"{size:,}"
    return f"the upload is {amount} bytes; the limit is {limit:,} bytes"
