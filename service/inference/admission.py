"""Admission control: a worker holds a bounded amount of inference work, and none once
it drains.

Work is counted in the unit the inference queue counts: one image to classify, or one
detection job. A request is admitted once its body is in hand, so a slow upload holds no
place while it trickles in, and a request of eight images takes eight. Each request also
brings its expected cost (the runner's measured seconds per image, times its images), and
a worker admits work only while what it holds can be run within its queue budget, so a
busy worker refuses at once what it could not finish in time, whatever the requests
cost; the place count stays as a hard cap. Overload becomes fast 503s instead of a growing
queue. Their ``Retry-After`` grows with
the overload measured over the last second (1 + refusals per admission), so that many
clients back off in proportion instead of returning every second and spending the
worker's time on refusals. While a worker is full (:meth:`Admission.full_for` one image),
:mod:`service.http.shedding` gives the same refusal from the connection, before the
application reads the request.
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

    def __init__(
        self,
        limit: int,
        budget_s: float = math.inf,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.budget_s = budget_s
        self.inflight = 0
        self.work_s = 0.0  # expected runner seconds of the work held
        self.requests = 0  # HTTP requests in progress, bodies still arriving included
        self.draining = False
        self._clock = clock
        self._second = math.floor(clock())
        self._counts = [0, 0]  # admitted, refused in the current second
        self._last_second: tuple[int, ...] = (0, 0)  # the same for the second before

    @contextmanager
    def slot(self, units: int = 1, work_s: float = 0.0) -> Iterator[None]:
        """Hold ``units`` places and ``work_s`` expected seconds of work while a request is
        worked on, or refuse it with a 503. An idle worker admits any one request."""
        if self.draining:
            raise ShuttingDown("the server is shutting down; retry on another replica")
        why = self.full_for(units, work_s)
        if why is not None:
            raise self.refusal(why)
        self._tick()
        self._counts[0] += 1
        self.inflight += units
        self.work_s += work_s
        metrics.ADMITTED.inc()
        metrics.INFLIGHT.inc(units)
        try:
            yield
        finally:
            self.inflight -= units
            self.work_s = self.work_s - work_s if self.inflight else 0.0
            metrics.INFLIGHT.dec(units)

    def full_for(self, units: int, work_s: float) -> str | None:
        """Why a request of ``units`` places and ``work_s`` seconds of work would be refused
        now, or None if it would be admitted."""
        if self.inflight + units > self.limit:
            return (
                f"the server holds {self.inflight} of {self.limit} images or jobs and this "
                f"request needs {units}"
            )
        if self.inflight and self.work_s + work_s > self.budget_s:
            return (
                f"the server holds {self.work_s * 1000:.0f} ms of work and this request needs "
                f"{work_s * 1000:.0f} ms more, beyond the {self.budget_s * 1000:.0f} ms it "
                "may queue"
            )
        return None

    def refusal(self, why: str) -> Overloaded:
        """The 503 of a request refused because ``why``, counted for ``Retry-After``."""
        self._tick()
        self._counts[1] += 1
        return Overloaded(f"{why}; retry shortly", retry_after_s=self.retry_after_s())

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
