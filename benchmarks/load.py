"""End-to-end load on a running server: closed loop at a fixed concurrency, or open loop
at a fixed arrival rate; latency percentiles and the server's CPU time per request.

The generator is deliberately cheap (threads, ``http.client``, one keep-alive connection
per thread, the raw JPEG as the body) because it shares the machine's cores with the
server; its own CPU time is measured and reported too.
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np
import psutil

from benchmarks.server import CPU_PREFIX

PATH = "/classify"


@dataclass
class Sample:
    started: float  # when the request was due (open loop) or sent (closed loop)
    finished: float
    status: int  # HTTP status; 0 for a connection error

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class Level:
    """What one load level measured over its window."""

    label: str  # "c=8" or "r=45.0/s"
    concurrency: int
    offered_rps: float | None  # open loop only
    window_s: float
    requests: int  # successful (200) responses
    errors: int  # other responses and connection errors
    statuses: dict[int, int]  # replies by HTTP status (0: connection error)
    latencies_ms: np.ndarray = field(repr=False)
    server: dict[str, float]  # increase of each server counter over the window
    loadgen_cpu_s: float
    machine_cpu_s: float  # all busy CPU time of the machine, every process

    @property
    def other_cpu_s(self) -> float:
        """CPU time of processes that are neither the server nor the load generator."""
        return max(0.0, self.machine_cpu_s - self.server_cpu_s - self.loadgen_cpu_s)

    @property
    def server_cpu_s(self) -> float:
        return sum(v for k, v in self.server.items() if k.startswith(CPU_PREFIX))

    def core_ms_per_request(self, role: str) -> float:
        seconds = self.server.get(f"{CPU_PREFIX}{role}", 0.0)
        return 1000 * seconds / self.requests if self.requests else float("nan")

    @property
    def mean_batch_size(self) -> float:
        count = self.server.get("batch_count", 0.0)
        return self.server.get("batch_sum", 0.0) / count if count else float("nan")

    @property
    def rps(self) -> float:
        return self.requests / self.window_s

    def percentile(self, q: float) -> float:
        return (
            float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) else float("nan")
        )

    @property
    def server_core_ms_per_request(self) -> float:
        return 1000 * self.server_cpu_s / self.requests if self.requests else float("nan")

    @property
    def loadgen_core_ms_per_request(self) -> float:
        return 1000 * self.loadgen_cpu_s / self.requests if self.requests else float("nan")

    def as_dict(self) -> dict[str, object]:
        return {
            "label": self.label,
            "concurrency": self.concurrency,
            "offered_rps": self.offered_rps,
            "window_s": self.window_s,
            "requests": self.requests,
            "errors": self.errors,
            "statuses": {str(status): count for status, count in self.statuses.items()},
            "rps": self.rps,
            "p50_ms": self.percentile(50),
            "p95_ms": self.percentile(95),
            "p99_ms": self.percentile(99),
            "mean_ms": float(self.latencies_ms.mean()) if len(self.latencies_ms) else None,
            "server_core_ms_per_request": self.server_core_ms_per_request,
            "loadgen_core_ms_per_request": self.loadgen_core_ms_per_request,
            "other_cpu_s": self.other_cpu_s,
            "mean_batch_size": self.mean_batch_size,
            "server_counters": self.server,
        }


class _Client:
    """One keep-alive connection that reconnects after an error."""

    def __init__(self, url: str, body: bytes, content_type: str) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._body = body
        self._headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        self._connection: http.client.HTTPConnection | None = None

    def post(self) -> tuple[int, float | None]:
        """One request: its status (0 for a connection error) and ``Retry-After`` seconds."""
        try:
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self._host, self._port, timeout=120)
            self._connection.request("POST", PATH, self._body, self._headers)
            response = self._connection.getresponse()
            response.read()
            retry_after = response.getheader("Retry-After")
            if response.will_close:
                self.close()
            return response.status, float(retry_after) if retry_after else None
        except (OSError, http.client.HTTPException):
            self.close()
            return 0, None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


@dataclass(frozen=True)
class _Window:
    samples: list[Sample]
    start: float
    end: float
    server: dict[str, float]
    loadgen_cpu_s: float
    machine_cpu_s: float

    def level(self, label: str, concurrency: int, offered_rps: float | None) -> Level:
        """Requests that finished inside the window; latencies of the successful ones.

        Throughput and CPU per request count successful responses only: a fast error
        must not pass for capacity.
        """
        inside = [s for s in self.samples if self.start <= s.finished <= self.end]
        ok = [s for s in inside if s.ok]
        return Level(
            statuses=dict(Counter(s.status for s in inside)),
            label=label,
            concurrency=concurrency,
            offered_rps=offered_rps,
            window_s=self.end - self.start,
            requests=len(ok),
            errors=len(inside) - len(ok),
            latencies_ms=np.array([1000 * (s.finished - s.started) for s in ok]),
            server=self.server,
            loadgen_cpu_s=self.loadgen_cpu_s,
            machine_cpu_s=self.machine_cpu_s,
        )


def _run(
    workers: int,
    work: Callable[[_Client, threading.Event, list[Sample]], None],
    client: Callable[[], _Client],
    warmup_s: float,
    duration_s: float,
    counters: Callable[[], dict[str, float]],
) -> _Window:
    """Run ``workers`` threads through a warm-up, then measure a window of ``duration_s``."""
    stop = threading.Event()
    samples: list[list[Sample]] = [[] for _ in range(workers)]
    threads = [
        threading.Thread(target=work, args=(client(), stop, samples[i]), daemon=True)
        for i in range(workers)
    ]
    for thread in threads:
        thread.start()
    time.sleep(warmup_s)
    start, before = time.perf_counter(), counters()
    loadgen0, machine0 = time.process_time(), _machine_busy_s()
    time.sleep(duration_s)
    end, after = time.perf_counter(), counters()
    loadgen1, machine1 = time.process_time(), _machine_busy_s()
    stop.set()
    for thread in threads:
        thread.join(timeout=180)
    flat = [sample for per_thread in samples for sample in per_thread]
    delta = {key: after[key] - before[key] for key in after.keys() & before.keys()}
    return _Window(flat, start, end, delta, loadgen1 - loadgen0, machine1 - machine0)


def _machine_busy_s() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def closed_loop(
    url: str,
    body: bytes,
    concurrency: int,
    *,
    warmup_s: float,
    duration_s: float,
    counters: Callable[[], dict[str, float]],
    content_type: str = "image/jpeg",
    honour_retry_after: bool = False,
) -> Level:
    """``concurrency`` clients, each sending its next request as soon as one returns (or,
    with ``honour_retry_after``, after the ``Retry-After`` of a 429 or 503)."""

    def work(client: _Client, stop: threading.Event, out: list[Sample]) -> None:
        while not stop.is_set():
            sent = time.perf_counter()
            status, retry_after = client.post()
            out.append(Sample(sent, time.perf_counter(), status))
            if honour_retry_after and status in (429, 503) and retry_after:
                stop.wait(retry_after)
        client.close()

    window = _run(
        concurrency,
        work,
        lambda: _Client(url, body, content_type),
        warmup_s,
        duration_s,
        counters,
    )
    return window.level(f"c={concurrency}", concurrency, None)


def open_loop(
    url: str,
    body: bytes,
    rate: float,
    *,
    workers: int,
    warmup_s: float,
    duration_s: float,
    counters: Callable[[], dict[str, float]],
    content_type: str = "image/jpeg",
) -> Level:
    """Requests due at a fixed ``rate``; latency counts from when each was due, so a
    server that falls behind is charged for the queueing (no coordinated omission)."""
    schedule = itertools.count()
    lock = threading.Lock()
    origin = time.perf_counter() + 0.05

    def work(client: _Client, stop: threading.Event, out: list[Sample]) -> None:
        while not stop.is_set():
            with lock:
                due = origin + next(schedule) / rate
            if (delay := due - time.perf_counter()) > 0:
                time.sleep(delay)
            if stop.is_set():
                break
            status, _ = client.post()
            out.append(Sample(due, time.perf_counter(), status))
        client.close()

    window = _run(
        workers, work, lambda: _Client(url, body, content_type), warmup_s, duration_s, counters
    )
    return window.level(f"r={rate:.1f}/s", workers, rate)


def burst(
    url: str, body: bytes, *, clients: int, requests_each: int, content_type: str = "image/jpeg"
) -> dict[int, int]:
    """``clients`` threads each send ``requests_each`` requests back to back, all at once;
    returns the replies by status."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def work() -> None:
        client = _Client(url, body, content_type)
        start.wait()
        for _ in range(requests_each):
            status, _ = client.post()
            with lock:
                statuses[status] += 1
        client.close()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return dict(statuses)
