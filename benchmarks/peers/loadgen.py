"""Closed-loop load from one asyncio process: ``clients`` tasks, each sending its next
request as soon as the previous one is answered, whatever the answer (``Retry-After`` is
not honoured, so a server that refuses is asked again at once)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import numpy as np

from benchmarks.peers.proc import machine_busy_seconds

REQUEST_TIMEOUT_S = 60


@dataclass(frozen=True)
class Call:
    """One request as every client sends it."""

    path: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Level:
    """What one concurrency measured over its window. Throughput, latency and CPU per
    request count 200 replies only, so that a fast refusal does not pass for capacity."""

    clients: int
    window_s: float
    statuses: dict[int, int]  # replies finished in the window by status; 0: no reply
    latencies_ms: np.ndarray  # of the 200s
    server_cpu_s: float
    loadgen_cpu_s: float
    machine_busy_s: float

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def errors(self) -> int:
        return sum(self.statuses.values()) - self.ok

    @property
    def rps(self) -> float:
        return self.ok / self.window_s

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.ok else float("nan")

    @property
    def server_core_ms(self) -> float:
        """Server CPU per 200 reply, in core-milliseconds."""
        return 1000 * self.server_cpu_s / self.ok if self.ok else float("nan")

    def other_share(self, cores: int) -> float:
        """CPU used by the rest of the machine, as a share of all its cores."""
        other = self.machine_busy_s - self.server_cpu_s - self.loadgen_cpu_s
        return max(0.0, other) / (cores * self.window_s)


async def closed_loop(
    url: str,
    call: Call,
    clients: int,
    *,
    warmup_s: float,
    duration_s: float,
    server_cpu: Callable[[], float],
) -> Level:
    """Warm up for ``warmup_s``, then measure ``duration_s``: replies that finish inside
    the window, and the server's CPU seconds (``server_cpu``) over the same window."""
    samples: list[tuple[float, float, int]] = []  # (sent, finished, status)
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

        async def client() -> None:
            while not stop.is_set():
                sent = time.perf_counter()
                try:
                    async with session.post(call.path, data=call.body, headers=call.headers) as r:
                        await r.read()
                        status = r.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                samples.append((sent, time.perf_counter(), status))

        tasks = [asyncio.create_task(client()) for _ in range(clients)]
        await asyncio.sleep(warmup_s)
        start, cpu0 = time.perf_counter(), server_cpu()
        own0, machine0 = time.process_time(), machine_busy_seconds()
        await asyncio.sleep(duration_s)
        end, cpu1 = time.perf_counter(), server_cpu()
        own1, machine1 = time.process_time(), machine_busy_seconds()
        stop.set()
        await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_S + 5)
        for task in tasks:
            task.cancel()
    inside = [(sent, done, status) for sent, done, status in samples if start <= done <= end]
    latencies = [1000 * (done - sent) for sent, done, status in inside if status == 200]
    return Level(
        clients=clients,
        window_s=end - start,
        statuses=dict(Counter(status for _, _, status in inside)),
        latencies_ms=np.array(latencies),
        server_cpu_s=cpu1 - cpu0,
        loadgen_cpu_s=own1 - own0,
        machine_busy_s=machine1 - machine0,
    )
