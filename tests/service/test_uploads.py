"""Reading uploads from the request stream: caps hold while streaming, chunked or not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.errors import ArgosError
from service.http.uploads import (
    FORM_OVERHEAD_BYTES,
    MAX_FORM_PARTS,
    UploadBudget,
    read_image_upload,
)

CAP = 1024 * 1024
CHUNK = 64 * 1024
BOUNDARY = "argos-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


BUDGET = UploadBudget(limit=64 * CAP)


async def _upload(request: Request) -> Response:
    try:
        with BUDGET.lease() as lease:
            data = await read_image_upload(request, CAP, lease)
    except ArgosError as error:
        return JSONResponse(error.to_dict(), status_code=error.status_code)
    return Response(data, media_type="application/octet-stream")


APP = Starlette(routes=[Route("/upload", _upload, methods=["POST"])])


class Body:
    """A streamed request body that counts how much of it the server pulled."""

    def __init__(self, *pieces: bytes, filler: int = 0, tail: bytes = b"") -> None:
        self.pieces, self.filler, self.tail = pieces, filler, tail
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            self.sent += len(piece)
            yield piece
        for _ in range(self.filler // CHUNK):
            self.sent += CHUNK
            yield b"\x00" * CHUNK
        self.sent += len(self.tail)
        yield self.tail


def post(content: bytes | Body, content_type: str | None, **headers: str) -> httpx.Response:
    if content_type is not None:
        headers["content-type"] = content_type

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=APP)
        async with httpx.AsyncClient(transport=transport, base_url="http://argos") as client:
            return await client.post("/upload", content=content, headers=headers)

    return asyncio.run(send())


def part(name: str, data: bytes, filename: str | None = "frame.png") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    head += "Content-Type: image/png\r\n\r\n" if filename else "\r\n"
    return head.encode() + data + b"\r\n"


END = f"--{BOUNDARY}--\r\n".encode()


def test_multipart_image_is_returned_whole_among_other_fields() -> None:
    image = bytes(range(256)) * 100
    body = part("note", b"hello", None) + part("image", image) + part("other", b"x") + END
    reply = post(body, MULTIPART)
    assert reply.status_code == 200
    assert reply.content == image


def test_chunked_multipart_without_length_is_refused_once_past_the_cap() -> None:
    # 64 MiB of image streamed with no Content-Length: refused after about the cap.
    body = Body(part("image", b"")[:-2], filler=64 * 1024 * 1024, tail=b"\r\n" + END)
    reply = post(body, MULTIPART)
    assert reply.status_code == 413
    assert reply.json()["error"] == "payload_too_large"
    assert f"the limit is {CAP:,} bytes" in reply.json()["detail"]
    assert body.sent <= CAP + FORM_OVERHEAD_BYTES + 2 * CHUNK


def test_chunked_multipart_padded_with_other_fields_is_refused_past_the_cap() -> None:
    body = Body(part("padding", b"", None)[:-2], filler=64 * 1024 * 1024, tail=b"\r\n" + END)
    reply = post(body, MULTIPART)
    assert reply.status_code == 413
    assert body.sent <= CAP + FORM_OVERHEAD_BYTES + 2 * CHUNK


def test_chunked_raw_body_is_refused_once_past_the_cap() -> None:
    body = Body(b"\x89PNG\r\n\x1a\n", filler=64 * 1024 * 1024)
    reply = post(body, "image/png")
    assert reply.status_code == 413
    assert "at least" in reply.json()["detail"]
    assert body.sent <= CAP + 2 * CHUNK


def test_declared_length_over_the_cap_is_refused_without_reading() -> None:
    body = Body(filler=4 * CAP)
    reply = post(body, "image/png", **{"content-length": str(4 * CAP)})
    assert reply.status_code == 413
    assert f"the upload is {4 * CAP:,} bytes" in reply.json()["detail"]
    assert body.sent == 0


def test_image_field_exactly_at_the_cap_is_accepted() -> None:
    image = b"\x01" * CAP
    reply = post(Body(part("image", image) + END), MULTIPART)
    assert reply.status_code == 200
    assert len(reply.content) == CAP


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (part("file", b"x") + END, "no 'image' field (it has ['file'])"),
        (part("image", b"abc", None) + END, "the 'image' field is text, not a file"),
        (part("image", b"abc"), "ended before its closing boundary"),
        (b"this is not multipart at all", "could not be parsed"),
        (part("a", b"", None) * (MAX_FORM_PARTS + 1) + END, f"more than {MAX_FORM_PARTS} parts"),
    ],
)
def test_bad_multipart_bodies_get_a_400_that_says_why(body: bytes, message: str) -> None:
    reply = post(body, MULTIPART)
    assert reply.status_code == 400
    assert reply.json()["error"] == "missing_image"
    assert message in reply.json()["detail"]


def test_multipart_without_a_boundary_is_refused() -> None:
    reply = post(part("image", b"x") + END, "multipart/form-data")
    assert reply.status_code == 400
    assert "no boundary" in reply.json()["detail"]
