"""One model's inference thread: asyncio callers queue work, the thread runs it.

The :class:`~service.inference.batcher.Scheduler` decides what runs next; this module
only moves work between the event loop and the thread. onnxruntime releases the GIL while
it computes, so the event loop keeps serving HTTP meanwhile. A lone request on an idle
worker may instead run on the caller's thread (:meth:`Runner.run_here`): no thread hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service import metrics
from service.errors import Overloaded, QueueTimeout, ShuttingDown
from service.inference.batcher import Batch, Job, Pending, QueueFull, Scheduler, Step, Wait

logger = logging.getLogger("argos.runner")

RunBatch = Callable[[np.ndarray], np.ndarray]
THREAD_NAME_PREFIX = "runner:"
COST_SMOOTHING = 0.2
"""Weight of the newest batch in the running estimate of seconds per image."""


@dataclass(eq=False)
class _Call:
    """Where a queued request's answer goes."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]

    def answer(self, result: Any = None, error: BaseException | None = None) -> None:
        self.loop.call_soon_threadsafe(_settle, self.future, result, error)

    @property
    def abandoned(self) -> bool:
        return self.future.done()  # cancelled by a client that went away


@dataclass(eq=False)
class OnTheWay:
    """Images announced to a runner while they are preprocessed (see
    :meth:`Runner.on_the_way`); each submitted image takes one off."""

    images: int


@dataclass(eq=False)
class _Item:
    pixels: np.ndarray
    call: _Call


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Runner:
    """Runs ``run_batch`` on stacked single requests and steps long jobs, on ``instances``
    threads that share one queue (onnxruntime sessions accept concurrent runs)."""

    def __init__(
        self,
        name: str,
        run_batch: RunBatch,
        scheduler: Scheduler[_Item],
        clock: Callable[[], float] = time.monotonic,
        instances: int = 1,
    ) -> None:
        self.name = name
        self._run_batch = run_batch
        self._scheduler = scheduler
        self._clock = clock
        self._wakeup = threading.Condition()
        self._closing = False
        self._instances = instances
        self._busy = 0  # batches, steps and run_here calls running now
        self.seconds_per_item = 0.0
        """Running estimate of one image's wall time in ``run_batch`` (batches of any size)."""
        self._threads = [
            threading.Thread(target=self._loop, name=f"runner-{name}-{i}", daemon=True)
            for i in range(instances)
        ]
        for thread in self._threads:
            thread.start()

    @contextlib.contextmanager
    def on_the_way(self, images: int) -> Iterator[OnTheWay]:
        """Announce ``images`` that will be submitted once preprocessed: while any is on its
        way, a queued request waits for it (up to the batcher's delay); with none, a queued
        request runs at once. Images not submitted by the end of the block (their
        preprocessing failed) are withdrawn."""
        announced = OnTheWay(images)
        with self._wakeup:
            self._scheduler.incoming += images
        try:
            yield announced
        finally:
            if announced.images:
                with self._wakeup:
                    self._scheduler.incoming -= announced.images
                    announced.images = 0
                    self._wakeup.notify()

    async def infer(self, pixels: np.ndarray, announced: OnTheWay | None = None) -> np.ndarray:
        """One (H, W, C) input → its output row, batched with concurrent requests; an
        ``announced`` image arrives (see :meth:`on_the_way`)."""
        call = self._call()
        with self._wakeup:
            self._refuse_if_closing()
            try:
                self._scheduler.submit(_Item(pixels, call), self._clock())
            except QueueFull as error:
                raise Overloaded(f"{self.name}: {error}; retry shortly") from None
            finally:
                if announced is not None and announced.images:
                    announced.images -= 1
                    self._scheduler.incoming -= 1
            self._wakeup.notify()
        return await call.future

    @property
    def idle(self) -> bool:
        """Nothing queued, running or on its way: a request now would run at once."""
        return not self._busy and not len(self._scheduler) and self._scheduler.incoming <= 0

    def run_here(self, pixels: np.ndarray) -> Any:
        """One (H, W, C) input → its output row, run on the calling thread as a batch of one,
        counted and timed like any batch; for a lone request on an idle worker, where a
        hop to the runner thread and back costs more than it saves."""
        with self._wakeup:
            self._refuse_if_closing()
            self._busy += 1
        try:
            metrics.BATCH_SIZE.labels(model=self.name).observe(1)
            started = time.perf_counter()
            output = self._run_batch(pixels[None])[0]
            self.observe_batch(1, time.perf_counter() - started)
            return output
        finally:
            with self._wakeup:
                self._busy -= 1
                self._wakeup.notify()

    async def run_job(self, steps: Iterator[Any]) -> Any:
        """Run a long job a step per turn, between batches; returns its return value."""
        call = self._call()
        with self._wakeup:
            self._refuse_if_closing()
            try:
                self._scheduler.submit_job(steps, self._clock(), ticket=call)
            except QueueFull as error:
                raise Overloaded(f"{self.name}: {error}; retry shortly") from None
            self._wakeup.notify()
        return await call.future

    def expected_seconds(self, items: float) -> float:
        """How long ``items`` images will keep this runner's threads busy."""
        return items * self.seconds_per_item / self._instances

    def observe_batch(self, size: int, seconds: float) -> None:
        """Fold one batch's wall time into :attr:`seconds_per_item`."""
        latest = seconds / size
        known = self.seconds_per_item
        self.seconds_per_item = latest if not known else known + COST_SMOOTHING * (latest - known)

    def close(self) -> None:
        """Refuse new work; queued work still runs, then the thread ends."""
        with self._wakeup:
            self._closing = True
            self._wakeup.notify_all()

    def abort(self, reason: str) -> int:
        """Answer everything still queued with 503 (the drain's grace ran out)."""
        with self._wakeup:
            self._closing = True
            requests, jobs = self._scheduler.drain()
            self._wakeup.notify_all()
        for pending in requests:
            pending.item.call.answer(error=ShuttingDown(reason))
        for job in jobs:
            job.ticket.answer(error=ShuttingDown(reason))
        return len(requests) + len(jobs)

    def join(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _call(self) -> _Call:
        loop = asyncio.get_running_loop()
        return _Call(loop, loop.create_future())

    def _refuse_if_closing(self) -> None:
        if self._closing:
            raise ShuttingDown("the server is shutting down; retry on another replica")

    def _loop(self) -> None:
        _name_os_thread(f"{THREAD_NAME_PREFIX}{self.name}")
        while (decision := self._next()) is not None:
            try:
                if isinstance(decision, Batch):
                    self._run(decision.requests)
                else:
                    self._step(decision.job)
            finally:
                with self._wakeup:
                    self._busy -= 1

    def _next(self) -> Batch[_Item] | Step | None:
        """Wait for work; None once closed and empty."""
        with self._wakeup:
            while True:
                now = self._clock()
                for pending in self._scheduler.expire(now):
                    waited = now - pending.enqueued
                    pending.item.call.answer(error=_queue_timeout(self.name, waited))
                for job in self._scheduler.expire_jobs(now):
                    job.ticket.answer(error=_queue_timeout(self.name, self._scheduler.timeout_s))
                if self._busy >= self._instances:  # run_here holds the last place
                    self._wakeup.wait()
                    continue
                decision = self._scheduler.next(now)
                if not isinstance(decision, Wait):
                    self._busy += 1
                    return decision
                if self._closing and not len(self._scheduler):
                    self._wakeup.notify_all()  # the other instances end too
                    return None
                timeout = None if decision.until is None else max(0.0, decision.until - now)
                self._wakeup.wait(timeout)

    def _run(self, requests: list[Pending[_Item]]) -> None:
        live = [pending.item for pending in requests if not pending.item.call.abandoned]
        if not live:
            return
        metrics.BATCH_SIZE.labels(model=self.name).observe(len(live))
        started = time.perf_counter()
        try:
            outputs = self._run_batch(np.stack([item.pixels for item in live]))
        except Exception as error:
            if len(live) == 1:
                live[0].call.answer(error=error)
                return
            logger.warning(
                "%s: a batch of %d failed (%s); running each alone", self.name, len(live), error
            )
            for item in live:
                self._run([Pending(item, 0.0, 0.0)])
            return
        self.observe_batch(len(live), time.perf_counter() - started)
        for item, output in zip(live, outputs, strict=True):
            item.call.answer(output)

    def _step(self, job: Job) -> None:
        call: _Call = job.ticket
        try:
            if call.abandoned:
                raise StopIteration(None)
            next(job.steps)
        except StopIteration as done:
            self._step_done(job, finished=True)
            call.answer(done.value)
        except Exception as error:
            self._step_done(job, finished=True)
            call.answer(error=error)
        else:
            self._step_done(job, finished=False)

    def _step_done(self, job: Job, *, finished: bool) -> None:
        with self._wakeup:
            self._scheduler.step_done(job, finished=finished)
            self._wakeup.notify()


def _queue_timeout(name: str, waited_s: float) -> QueueTimeout:
    return QueueTimeout(
        f"{name}: the request waited {waited_s * 1000:.0f} ms in the inference queue and "
        "was not run; the server is overloaded, retry shortly"
    )


def _name_os_thread(name: str) -> None:
    """Show the runner thread's name to the OS (``top -H``, per-thread CPU accounting)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/self/task/{threading.get_native_id()}/comm").write_text(name[:15])
