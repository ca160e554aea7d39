"""Admission control: a worker holds a bounded number of inference requests, and none
once it drains.

A request is admitted before its body is read, so refusing one costs almost nothing:
overload becomes fast 503s instead of a growing queue. Their ``Retry-After`` grows with
the overload measured over the last second (1 + refusals per admission), so that many
clients back off in proportion instead of returning every second and spending the
worker's time on refusals.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from service import metrics
from service.errors import Overloaded, ShuttingDown

# Below the HTTP server's keep-alive timeout (uvicorn: 5 s), so that a client that honours
# it still finds its connection open.
MAX_RETRY_AFTER_S = 4


class Admission:
    """Counts the inference requests a worker holds; single event-loop use."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.inflight = 0
        self.draining = False
        self._clock = clock
        self._second = math.floor(clock())
        self._counts = [0, 0]  # admitted, refused in the current second
        self._last_second: tuple[int, ...] = (0, 0)  # the same for the second before

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one place for the duration of a request, or refuse it with a 503."""
        if self.draining:
            raise ShuttingDown("the server is shutting down; retry on another replica")
        self._tick()
        if self.inflight >= self.limit:
            self._counts[1] += 1
            raise Overloaded(
                f"the server holds {self.inflight} requests, its limit; retry shortly",
                retry_after_s=self.retry_after_s(),
            )
        self._counts[0] += 1
        self.inflight += 1
        metrics.ADMITTED.inc()
        metrics.INFLIGHT.inc()
        try:
            yield
        finally:
            self.inflight -= 1
            metrics.INFLIGHT.dec()

    def retry_after_s(self) -> int:
        """Seconds a refused client should wait: 1 + refusals per admission last second."""
        admitted, refused = self._last_second
        return min(MAX_RETRY_AFTER_S, 1 + math.ceil(refused / max(admitted, 1)))

    def _tick(self) -> None:
        second = math.floor(self._clock())
        if second != self._second:
            self._last_second = tuple(self._counts) if second == self._second + 1 else (0, 0)
            self._counts = [0, 0]
            self._second = second
