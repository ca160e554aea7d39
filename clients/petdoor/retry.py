"""Retries with exponential backoff for calls to the Argos service (tenacity)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from clients.http import ArgosClientError

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


def with_retries(
    call: Callable[[], _T], backoff: Backoff, sleep: Callable[[float], None] = time.sleep
) -> _T:
    """Run `call`, retrying retryable `ArgosClientError`s; the last error is re-raised."""
    retrying = Retrying(
        stop=stop_after_attempt(backoff.attempts),
        wait=wait_exponential(multiplier=backoff.base_seconds, max=backoff.max_seconds),
        retry=retry_if_exception(lambda exc: isinstance(exc, ArgosClientError) and exc.retryable),
        sleep=sleep,
        before_sleep=_log_retry,
        reraise=True,
    )
    return retrying(call)


def _log_retry(state: RetryCallState) -> None:
    wait = state.next_action.sleep if state.next_action else 0.0
    error = state.outcome.exception() if state.outcome else None
    log.warning("argos call failed (%s); retrying in %.2fs", error, wait)
