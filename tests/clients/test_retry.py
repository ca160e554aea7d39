"""Retries of calls to the Argos service."""

from __future__ import annotations

import pytest

from clients.http import ArgosClient, ArgosRequestError, ArgosUnavailable
from clients.petdoor.retry import Backoff, with_retries
from tests.clients.support import Action, LoopbackServer, classify_reply


def test_retries_back_off_exponentially_then_give_up() -> None:
    waits: list[float] = []
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        raise ArgosUnavailable("connection refused")

    with pytest.raises(ArgosUnavailable):
        with_retries(down, Backoff(attempts=5, base_seconds=0.5, max_seconds=3.0), waits.append)

    assert calls == 5
    assert waits == [0.5, 1.0, 2.0, 3.0]


def retried_classify(*replies: Action) -> tuple[Exception | None, int]:
    """Classify one frame through a real client, with retries, against a server that
    gives ``replies`` in turn; returns the error raised, if any, and the requests made."""
    queue = list(replies)

    def script(method: str, path: str, count: int) -> Action:
        return queue.pop(0) if queue else ("json", 500, {"error": "exhausted", "detail": ""})

    with LoopbackServer(script) as server, ArgosClient(server.url, timeout=5) as client:
        try:
            with_retries(lambda: client.classify(b"\xff\xd8\xff"), Backoff(3), lambda _: None)
        except ArgosRequestError as exc:
            return exc, server.requests["/classify"]
        return None, server.requests["/classify"]


def test_retry_succeeds_after_a_server_error() -> None:
    busy = ("json", 503, {"error": "overloaded", "detail": "the inference queue is full"})
    ok = ("json", 200, classify_reply({"dog": 0.9}))
    error, requests = retried_classify(busy, ok)
    assert error is None
    assert requests == 2


@pytest.mark.parametrize(
    ("status", "code", "detail"),
    [
        (422, "invalid_image", "the image data could not be decoded: broken data stream"),
        (413, "image_too_large", "the image is 9000x9000 = 81,000,000 pixels; the limit is"),
        (415, "unsupported_media_type", "Content-Type 'text/plain' is not accepted"),
    ],
)
def test_a_rejected_frame_is_not_retried(status: int, code: str, detail: str) -> None:
    rejected = ("json", status, {"error": code, "detail": detail})
    error, requests = retried_classify(rejected, rejected, rejected)
    assert isinstance(error, ArgosRequestError)
    assert (error.status, error.error) == (status, code)
    assert requests == 1
