"""Retries with exponential backoff for calls to the Argos service."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from clients.http import ArgosError

_T = TypeVar("_T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """`attempts` tries in all, waiting `base_seconds`, then twice that, ... up to `max_seconds`."""

    attempts: int = 3
    base_seconds: float = 0.25
    max_seconds: float = 4.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("Backoff.attempts must be at least 1")

    def delay(self, retry: int) -> float:
        """Wait before retry number `retry` (0-based)."""
        return min(self.base_seconds * 2**retry, self.max_seconds)


def with_retries(
    call: Callable[[], _T], backoff: Backoff, sleep: Callable[[float], None] = time.sleep
) -> _T:
    """Run `call`, retrying retryable `ArgosError`s; the last error is re-raised."""
    for retry in range(backoff.attempts - 1):
        try:
            return call()
        except ArgosError as exc:
            if not exc.retryable:
                raise
            wait = backoff.delay(retry)
            log.warning("argos call failed (%s); retrying in %.2fs", exc, wait)
            sleep(wait)
    return call()
