"""HTTP exchanges with a total deadline and a size cap.

httpx's timeouts apply to each network operation: a server that trickles one byte at a time
never trips them. Here the response is streamed and checked against the deadline and the
cap after every piece, and each read may wait at most the time left.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

_DECODED_HEADERS = {"content-encoding", "content-length", "transfer-encoding"}


class DeadlineExceeded(httpx.TimeoutException):
    """The whole exchange took longer than its deadline."""


class ResponseTooLarge(httpx.HTTPError):
    """The response body is larger than the cap."""

    def __init__(self, message: str, *, request: httpx.Request) -> None:
        super().__init__(message)
        self.request = request


def bounded_request(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    deadline_s: float,
    max_bytes: int,
    **kwargs: Any,
) -> httpx.Response:
    """``http.request(method, url, ...)`` that ends within ``deadline_s`` (plus at most one
    read timeout of the same length) and reads at most ``max_bytes`` of body.

    Raises :class:`DeadlineExceeded` or :class:`ResponseTooLarge`, both ``httpx.HTTPError``.
    """
    ends = time.monotonic() + deadline_s
    request = http.build_request(method, url, timeout=httpx.Timeout(deadline_s), **kwargs)
    response = http.send(request, stream=True)
    try:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise ResponseTooLarge(
                f"{url}: the response announces {declared} bytes; the cap is {max_bytes}",
                request=request,
            )
        body = bytearray()
        for piece in response.iter_bytes():
            body += piece
            if len(body) > max_bytes:
                raise ResponseTooLarge(
                    f"{url}: the response is over the cap of {max_bytes} bytes", request=request
                )
            if time.monotonic() > ends:
                raise DeadlineExceeded(
                    f"{url}: no complete response within {deadline_s:g}s", request=request
                )
    finally:
        response.close()
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in _DECODED_HEADERS
    ]
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=bytes(body),
        request=request,
        extensions={"reason_phrase": response.extensions.get("reason_phrase", b"")},
    )
