"""Admission control: a worker holds a bounded number of inference requests, and none
once it drains.

A request is admitted before its body is read, so refusing one costs almost nothing:
overload becomes fast 503s with ``Retry-After`` instead of a growing queue.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from service import metrics
from service.errors import Overloaded, ShuttingDown


class Admission:
    """Counts the inference requests a worker holds; single event-loop use."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inflight = 0
        self.draining = False

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one place for the duration of a request, or refuse it with a 503."""
        if self.draining:
            raise ShuttingDown("the server is shutting down; retry on another replica")
        if self.inflight >= self.limit:
            raise Overloaded(f"the server holds {self.inflight} requests, its limit; retry shortly")
        self.inflight += 1
        metrics.ADMITTED.inc()
        metrics.INFLIGHT.inc()
        try:
            yield
        finally:
            self.inflight -= 1
            metrics.INFLIGHT.dec()
