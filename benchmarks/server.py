"""A local Argos server with what the benchmark reads from it: CPU per process, batches."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import psutil

from tools.local_server import local_server

CPU_PREFIX = "cpu:"
BATCH_METRIC = "bentoml_service_adaptive_batch_size"


@dataclass(frozen=True)
class Server:
    url: str
    pid: int

    def processes(self) -> list[psutil.Process]:
        """The ``bentoml serve`` process and all its descendants (API and runner workers)."""
        root = psutil.Process(self.pid)
        return [root, *root.children(recursive=True)]

    def cpu_by_role(self) -> dict[str, float]:
        """User + system CPU seconds so far, summed per role: each BentoML service name
        (its workers), and ``serve`` for the supervising process."""
        totals: dict[str, float] = {}
        for process in self.processes():
            try:
                command, times = process.cmdline(), process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            role = "serve"
            if "--service-name" in command:
                role = command[command.index("--service-name") + 1]
            totals[role] = totals.get(role, 0.0) + times.user + times.system
        return totals

    def batch_sizes(self) -> dict[str, float]:
        """``batch_sum`` and ``batch_count`` of the adaptive batches so far, from
        ``GET /metrics``; empty when the scrape does not have them."""
        totals: dict[str, float] = {}
        for line in httpx.get(f"{self.url}/metrics", timeout=10).text.splitlines():
            for suffix in ("sum", "count"):
                if line.startswith(f"{BATCH_METRIC}_{suffix}{{"):
                    key = f"batch_{suffix}"
                    totals[key] = totals.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
        return totals

    def counters(self) -> dict[str, float]:
        """Everything a load level differences: CPU seconds per role, batch-size totals."""
        cpu = {f"{CPU_PREFIX}{role}": seconds for role, seconds in self.cpu_by_role().items()}
        return cpu | self.batch_sizes()


@contextmanager
def serve(env: dict[str, str] | None = None, *, quiet: bool = True) -> Iterator[Server]:
    """Run the service, with extra environment variables (``ARGOS_*`` settings, BentoML
    options), on a free loopback port until the block ends."""
    with local_server(env, quiet=quiet) as server:
        yield Server(server.url, server.pid)
