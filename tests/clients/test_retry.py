"""Retries of calls to the Argos service."""

from __future__ import annotations

import pytest

from clients.http import ArgosRequestError, ArgosUnavailable
from clients.petdoor.retry import Backoff, with_retries


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


def test_retry_succeeds_after_a_server_error() -> None:
    replies = iter([ArgosRequestError(503, "overloaded", "busy"), "ok"])

    def flaky() -> str:
        reply = next(replies)
        if isinstance(reply, Exception):
            raise reply
        return reply

    assert with_retries(flaky, Backoff(attempts=3), lambda _: None) == "ok"


def test_a_rejected_frame_is_not_retried() -> None:
    calls = 0

    def rejected() -> None:
        nonlocal calls
        calls += 1
        raise ArgosRequestError(422, "undecodable_image", "not an image")

    with pytest.raises(ArgosRequestError):
        with_retries(rejected, Backoff(attempts=3), lambda _: None)

    assert calls == 1
