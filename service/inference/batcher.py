"""What the inference runner does next: a deterministic dynamic batcher, modelled on
Triton's, plus fair turns for long detection jobs.

Pure logic with the time passed in, so it is tested with a fake clock. Nothing here is
learned from past batches:

- a single request is queued with a deadline (``timeout_s``); one that waits longer is
  expired and refused, never run late;
- a batch is released as soon as the runner is free and either ``max_batch_size``
  requests wait, or no other request is on its way (``incoming``: admitted, still being
  preprocessed), or the oldest has waited ``max_queue_delay_s`` (0: never wait for
  company); a lone request is never held for company that is not coming;
- a long job (a detection request) is run one bounded step at a time, alternating with
  batches, so it never stalls classification behind it; one job's steps never run at
  once on two runner threads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    """The queue holds ``max_queue_size`` requests already."""


@dataclass(eq=False)
class Pending(Generic[T]):
    """One queued request."""

    item: T
    enqueued: float
    deadline: float


@dataclass(eq=False)
class Job:
    """A long request run in steps: each ``next()`` of ``steps`` is one turn of work, and
    the generator's return value is the job's result."""

    steps: Iterator[Any]
    deadline: float
    ticket: Any = None  # what the runner uses to answer the caller
    started: bool = False
    stepping: bool = False  # a runner thread is running one of its steps


@dataclass(frozen=True)
class Batch(Generic[T]):
    requests: list[Pending[T]]


@dataclass(frozen=True)
class Step:
    job: Job


@dataclass(frozen=True)
class Wait:
    """Nothing to run before ``until`` (None: until something is queued)."""

    until: float | None


Decision = Batch[Any] | Step | Wait


@dataclass
class Scheduler(Generic[T]):
    """The queue of single requests and long jobs of one model's runner."""

    max_batch_size: int
    max_queue_delay_s: float
    max_queue_size: int
    timeout_s: float
    queue: deque[Pending[T]] = field(default_factory=deque)
    jobs: deque[Job] = field(default_factory=deque)
    incoming: int = 0
    """Requests on their way: admitted, not yet submitted; the caller keeps the count."""
    _batch_turn: bool = True

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {self.max_batch_size}")
        if self.max_queue_delay_s < 0 or self.timeout_s <= 0 or self.max_queue_size < 1:
            raise ValueError("delays and sizes must be positive")

    def submit(self, item: T, now: float) -> Pending[T]:
        """Queue one request; raises :class:`QueueFull` when the queue is at its limit."""
        if len(self.queue) + len(self.jobs) >= self.max_queue_size:
            raise QueueFull(f"{self.max_queue_size} requests are queued already")
        pending = Pending(item, now, now + self.timeout_s)
        self.queue.append(pending)
        return pending

    def submit_job(self, steps: Iterator[Any], now: float, ticket: Any = None) -> Job:
        """Queue a long job; raises :class:`QueueFull` when the queue is at its limit."""
        if len(self.queue) + len(self.jobs) >= self.max_queue_size:
            raise QueueFull(f"{self.max_queue_size} requests are queued already")
        job = Job(steps, now + self.timeout_s, ticket)
        self.jobs.append(job)
        return job

    def expire(self, now: float) -> list[Pending[T]]:
        """Remove and return the requests whose deadline passed before they could run."""
        expired = [pending for pending in self.queue if pending.deadline <= now]
        if expired:
            self.queue = deque(pending for pending in self.queue if pending.deadline > now)
        return expired

    def expire_jobs(self, now: float) -> list[Job]:
        """Remove and return the jobs that had not started by their deadline."""
        expired = [job for job in self.jobs if job.deadline <= now and not job.started]
        if expired:
            self.jobs = deque(job for job in self.jobs if job not in expired)
        return expired

    def next(self, now: float) -> Decision:
        """What the free runner should do now."""
        job = next((job for job in self.jobs if not job.stepping), None)
        if self._batch_ready(now) and (self._batch_turn or job is None):
            self._batch_turn = False
            size = min(self.max_batch_size, len(self.queue))
            return Batch([self.queue.popleft() for _ in range(size)])
        if job is not None:
            self._batch_turn = True
            job.started = job.stepping = True
            return Step(job)
        if self.queue:
            return Wait(self.queue[0].enqueued + self.max_queue_delay_s)
        return Wait(None)

    def step_done(self, job: Job, *, finished: bool) -> None:
        """A step of ``job`` ran; a finished (or failed) job leaves the queue."""
        job.stepping = False
        if finished and job in self.jobs:
            self.jobs.remove(job)

    def drain(self) -> tuple[list[Pending[T]], list[Job]]:
        """Remove and return everything still queued."""
        queue, jobs = list(self.queue), list(self.jobs)
        self.queue.clear()
        self.jobs.clear()
        return queue, jobs

    def __len__(self) -> int:
        return len(self.queue) + len(self.jobs)

    def _batch_ready(self, now: float) -> bool:
        """Full, no company on its way, or the oldest request has waited its delay."""
        if not self.queue:
            return False
        full = len(self.queue) >= self.max_batch_size
        waited = now >= self.queue[0].enqueued + self.max_queue_delay_s
        return full or self.incoming <= 0 or waited
