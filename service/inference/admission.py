"""Admission control: a worker holds a bounded amount of inference work, and none once
it drains.

Work is counted in the unit the inference queue counts: one image to classify, or one
detection job. A request is admitted once its body is in hand and decoded, so a slow
upload holds no place while it trickles in, and a request of eight images takes eight.
Overload becomes fast 503s instead of a growing queue. Their ``Retry-After`` grows with
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
    """Counts the units of inference work a worker holds; single event-loop use."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.inflight = 0
        self.draining = False
        self._clock = clock
        self._second = math.floor(clock())
        self._counts = [0, 0]  # admitted, refused in the current second
        self._last_second: tuple[int, ...] = (0, 0)  # the same for the second before

    @contextmanager
    def slot(self, units: int = 1) -> Iterator[None]:
        """Hold ``units`` places (at most the limit) while a request is worked on, or
        refuse it with a 503."""
        if self.draining:
            raise ShuttingDown("the server is shutting down; retry on another replica")
        self._tick()
        if self.inflight + units > self.limit:
            self._counts[1] += 1
            raise Overloaded(
                f"the server holds {self.inflight} of {self.limit} images or jobs and this "
                f"request needs {units}; retry shortly",
                retry_after_s=self.retry_after_s(),
            )
        self._counts[0] += 1
        self.inflight += units
        metrics.ADMITTED.inc()
        metrics.INFLIGHT.inc(units)
        try:
            yield
        finally:
            self.inflight -= units
            metrics.INFLIGHT.dec(units)

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
